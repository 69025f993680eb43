/*
 * wasm-cow native layer: sealed memfd images and page mapping into
 * WebAssembly.Memory objects.
 *
 * This file is deliberately small and paranoid. It knows nothing about
 * modules, pools or slots (those live in TypeScript); it offers a few page
 * operations, and it validates every argument before any system call:
 *
 *   createImage(bytes)                  -> fd   memfd, filled, sealed
 *   closeImage(fd)                              close an image we created
 *   mapImage(memory, fd, offset, length)        MAP_PRIVATE|MAP_FIXED CoW map
 *   mapZero(memory, offset, length)             anonymous MAP_FIXED over a range
 *   discard(memory, offset, length)             madvise(MADV_DONTNEED)
 *   resetRange(memory, length, fd, imageOffset, imageLength, keep)
 *                                               restore dirty pages by hand when few
 *                                               (PAGEMAP_SCAN), else madvise
 *   resetInit(status) / resetBegin(..., cell) / resetWait(cell)
 *                                               the same reset, queued to a
 *                                               background thread (see reset_queue)
 *   touchedPages / residentPages (memory, offset, length)
 *                                               what a range holds (PAGEMAP_SCAN, pagemap)
 *   nonZeroPages(memory, offset, length, out)   which pages hold only zeros now (pages.c)
 *   mapImageAt(memory, fd, offset, length, fileOffset)
 *                                               part of an image, CoW, over zero pages (pages.c)
 *   openImages(), setFault(step, skip)          accounting, fault injection (tests)
 *
 * native/pages.c says what backs each page of a memory (PROCMAP_QUERY,
 * PAGEMAP_SCAN); native/pages.h is what the two files share. A reset first
 * makes a memory's mappings those of a clean slot (pages_normalize: any
 * file mapping but the slot's own image at its own offset is replaced),
 * and only then trusts madvise and takes unwritten file pages as clean.
 *
 * Rules every entry point follows:
 *  - A memory argument must be a genuine WebAssembly.Memory. Its buffer is
 *    read through the original `WebAssembly.Memory.prototype.buffer` getter
 *    captured when the addon loads, so a forged object, a subclass overriding
 *    `buffer`, or a Proxy cannot hand us an arbitrary pointer. The address is
 *    read again on every call, never cached: V8 may move a memory on grow.
 *  - Offsets and lengths must be integral JS numbers, multiples of the host
 *    page size, and the range must lie inside the memory's current byte
 *    length. Nothing is ever mapped beyond it: pages past the length must
 *    stay inaccessible so that out-of-bounds accesses keep trapping.
 *  - An fd must be one this addon created and has not closed; a mapping may
 *    not reach past the image's end (a short file mapping would raise SIGBUS,
 *    which V8's trap handler does not catch). Images are sealed against
 *    grow, shrink and write, so the length checked here stays true. The
 *    table records each image's (st_dev, st_ino), which names its pages in
 *    /proc/self/maps.
 *  - We never munmap inside V8's reservation (another allocation could take
 *    the hole). If a MAP_FIXED mmap fails, the range is re-covered with an
 *    inaccessible anonymous mapping before the error is thrown (mapImageAt,
 *    whose range held zeros, first tries fresh zero pages: see pages.c).
 *  - Every failure throws a JS Error with `code` (errno name or
 *    ERR_WASM_COW_NATIVE_ARG), `errno` and `syscall`.
 *
 * Fault injection (tests only): when WASM_COW_FAULT_INJECTION=1 is set in
 * the environment when the addon loads, `setFault(step, skip)` makes the
 * named step fail once after `skip` successful passes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

#include <node_api.h>

#include "pages.h"

#if !defined(__linux__)
#error "the wasm-cow native backend is Linux-only; the library falls back to the copy backend"
#endif

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif

/* PAGEMAP_SCAN (Linux 6.7); defined here for older headers. */
#ifndef PAGEMAP_SCAN
struct page_region {
  uint64_t start, end, categories;
};
struct pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_FILE (1ULL << 2)
#define PAGE_IS_PRESENT (1ULL << 3)
#define PAGE_IS_SWAPPED (1ULL << 4)
#define PAGE_IS_PFNZERO (1ULL << 5)
#endif
#define SCAN_REGIONS 64

#define REQUIRED_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
/* 2^53: the largest integer a JS number holds exactly. */
#define MAX_SAFE 9007199254740992.0
/* Upper bound on one image; the TypeScript layer enforces its own limit. */
#define MAX_IMAGE_BYTES ((uint64_t)1 << 40)

/* ------------------------------------------------------------------ */
/* The table of images this addon created, indexed by fd.             */
/* Process-wide (worker threads share fds), under a read-write lock:  */
/* lookups and restores (JS threads, reset threads) share it; only    */
/* adding and removing an image take it exclusively.                  */
/*                                                                    */
/* Ownership: an image belongs to the environment (the napi_env of    */
/* the main thread or worker that loaded us; see env_acquire) whose   */
/* createImage made it. Only that environment may map it, reset from  */
/* it or close it: to any other its fd is not an image (a number it   */
/* may have had from anywhere, or an fd the kernel handed out again). */
/* An image is closed (its fd and its view) by its owner's            */
/* closeImage, or at the latest when its owner is torn down           */
/* (free_addon_data), after that environment's reset thread was       */
/* joined: no queued restore can then read it. A queued restore names */
/* its image by (fd, gen), so it never reads another's image either.  */
/* ------------------------------------------------------------------ */

typedef struct {
  uint64_t length; /* sealed file length, a multiple of the page size; 0: no image at this fd */
  /* Unique per createImage (never reused, unlike fd numbers): a queued
     reset names its image by (fd, gen), so a closed fd that the kernel
     hands out again is never mistaken for the image it replaced. */
  uint64_t gen;
  /* A read-only shared view of the whole image, to restore pages from
     without a system call; NULL when it could not be mapped (pread then). */
  const uint8_t *view;
  /* The environment that created the image (its env_acquire id, never 0). */
  uint64_t owner;
  /* The memfd's (st_dev, st_ino): names the image's pages in /proc/self/maps (pages.c). */
  file_id id;
} image_entry;

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static image_entry *table = NULL; /* table[fd], for 0 <= fd < table_cap */
static size_t table_cap = 0;
static size_t table_live = 0;
static uint64_t table_gen = 0;
size_t page_size = 0;

static int table_add(int fd, uint64_t length, const uint8_t *view, uint64_t owner, file_id id) {
  int ok = 1;
  if (fd < 0 || length == 0 || owner == 0) return 0;
  pthread_rwlock_wrlock(&table_lock);
  if ((size_t)fd >= table_cap) {
    size_t cap = table_cap ? table_cap : 64;
    while (cap <= (size_t)fd) cap *= 2;
    image_entry *grown = realloc(table, cap * sizeof(image_entry));
    if (grown == NULL) {
      ok = 0;
    } else {
      memset(grown + table_cap, 0, (cap - table_cap) * sizeof(image_entry));
      table = grown;
      table_cap = cap;
    }
  }
  if (ok) {
    table[fd].length = length;
    table[fd].view = view;
    table[fd].owner = owner;
    table[fd].id = id;
    table[fd].gen = ++table_gen;
    table_live++;
  }
  pthread_rwlock_unlock(&table_lock);
  return ok;
}

/* Returns 1, the image length and generation when fd is a live image that `owner` created. */
static int table_find(int fd, uint64_t owner, uint64_t *length, uint64_t *gen) {
  int found = 0;
  pthread_rwlock_rdlock(&table_lock);
  if (fd >= 0 && (size_t)fd < table_cap && table[fd].length != 0 && table[fd].owner == owner) {
    *length = table[fd].length;
    if (gen != NULL) *gen = table[fd].gen;
    found = 1;
  }
  pthread_rwlock_unlock(&table_lock);
  return found;
}

/*
 * Copies image bytes [off, off+len) of image (fd, gen) to dst, from its
 * shared view, or with pread when it has none. Holds the table lock (shared),
 * so the image cannot be closed (nor its view unmapped, nor its fd number
 * reused) meanwhile. Returns 0, or an errno: EBADF when (fd, gen) is no
 * longer open, EINVAL when the range is not inside the image.
 */
static int table_restore(int fd, uint64_t gen, uint8_t *dst, uint64_t off, uint64_t len) {
  int err = EBADF;
  pthread_rwlock_rdlock(&table_lock);
  const image_entry *e = fd >= 0 && (size_t)fd < table_cap ? &table[fd] : NULL;
  if (e != NULL && e->length != 0 && e->gen == gen) {
    if (off > e->length || len > e->length - off) {
      err = EINVAL;
    } else if (e->view != NULL) {
      memcpy(dst, e->view + off, (size_t)len);
      err = 0;
    } else {
      uint64_t done = 0;
      err = 0;
      while (done < len) {
        ssize_t n = pread(fd, dst + done, (size_t)(len - done), (off_t)(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { /* the file is sealed at `length`: a short read is an I/O error */
          err = n < 0 ? errno : EIO;
          break;
        }
        done += (uint64_t)n;
      }
    }
  }
  pthread_rwlock_unlock(&table_lock);
  return err;
}

int table_file_id(int fd, uint64_t gen, file_id *id) {
  int found = 0;
  pthread_rwlock_rdlock(&table_lock);
  if (fd >= 0 && (size_t)fd < table_cap && table[fd].length != 0 && table[fd].gen == gen) {
    *id = table[fd].id;
    found = 1;
  }
  pthread_rwlock_unlock(&table_lock);
  return found;
}

static void recover_range(uint8_t *addr, size_t length);

int table_map(int fd, uint64_t gen, uint8_t *addr, uint64_t length, uint64_t file_offset, int prot) {
  int err = EBADF;
  pthread_rwlock_rdlock(&table_lock);
  const image_entry *e = fd >= 0 && (size_t)fd < table_cap ? &table[fd] : NULL;
  if (e != NULL && e->length != 0 && e->gen == gen) {
    if (file_offset > e->length || length > e->length - file_offset) {
      err = EINVAL;
    } else if (fault_mmap()) {
      err = ENOMEM;
    } else {
      void *p = mmap(addr, (size_t)length, prot, MAP_PRIVATE | MAP_FIXED, fd, (off_t)file_offset);
      err = p == MAP_FAILED ? errno : p != (void *)addr ? EFAULT : 0;
    }
    if (err != 0 && err != EINVAL) recover_range(addr, (size_t)length);
  }
  pthread_rwlock_unlock(&table_lock);
  return err;
}

static int table_remove(int fd, uint64_t owner, const uint8_t **view, uint64_t *length) {
  int found = 0;
  pthread_rwlock_wrlock(&table_lock);
  if (fd >= 0 && (size_t)fd < table_cap && table[fd].length != 0 && table[fd].owner == owner) {
    *view = table[fd].view;
    *length = table[fd].length;
    table[fd].view = NULL;
    table[fd].length = 0;
    table[fd].owner = 0;
    table_live--;
    found = 1;
  }
  pthread_rwlock_unlock(&table_lock);
  return found;
}

/*
 * Closes every image `owner` still has open, fd and view (its environment
 * is being torn down, and its reset thread was joined). Holds the lock
 * exclusively meanwhile, so no restore of another thread is reading the
 * table, and no fd closed here is handed out again while an entry names it.
 */
static void table_close_owned(uint64_t owner) {
  pthread_rwlock_wrlock(&table_lock);
  for (size_t fd = 0; fd < table_cap; fd++) {
    image_entry *e = &table[fd];
    if (e->length == 0 || e->owner != owner) continue;
    if (e->view != NULL) munmap((void *)e->view, (size_t)e->length);
    close((int)fd);
    memset(e, 0, sizeof *e);
    table_live--;
  }
  pthread_rwlock_unlock(&table_lock);
}

/* ------------------------------------------------------------------ */
/* Fault injection (inert unless enabled by the environment at load). */
/* ------------------------------------------------------------------ */

enum fault_step {
  FAULT_NONE = 0,
  FAULT_MEMFD_CREATE,
  FAULT_FTRUNCATE,
  FAULT_WRITE,
  FAULT_SEAL,
  FAULT_MMAP,
  FAULT_MADVISE,
  FAULT_PAGEMAP_SCAN,
  FAULT_RESTORE,
  FAULT_PUBLISH, /* not a failure: a queued reset's done tag lags its status by 2 ms */
};

static const char *const fault_names[] = {
    "none", "memfd_create", "ftruncate", "write", "seal", "mmap", "madvise", "pagemap_scan", "restore", "publish",
};

static int fault_enabled = 0;
static _Atomic int fault_armed = FAULT_NONE;
static _Atomic long fault_skip = 0;

/* Returns 1 when `step` must fail now (and disarms the fault). */
static int fault_fires(enum fault_step step) {
  if (!fault_enabled || atomic_load(&fault_armed) != (int)step) return 0;
  if (atomic_fetch_sub(&fault_skip, 1) > 0) return 0;
  int expected = (int)step; /* the reset thread may race us: only one caller fails */
  return atomic_compare_exchange_strong(&fault_armed, &expected, FAULT_NONE);
}

int fault_mmap(void) { return fault_fires(FAULT_MMAP); }
int fault_pagemap_scan(void) { return fault_fires(FAULT_PAGEMAP_SCAN); }

/* ------------------------------------------------------------------ */
/* Errors.                                                            */
/* ------------------------------------------------------------------ */

static const char *errno_code(int err) {
  switch (err) {
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOSPC: return "ENOSPC";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case EFAULT: return "EFAULT";
    case EIO: return "EIO";
    case ENOSYS: return "ENOSYS";
    case EFBIG: return "EFBIG";
    default: return "EUNKNOWN";
  }
}

static void set_prop_str(napi_env env, napi_value obj, const char *key, const char *val) {
  napi_value v;
  if (napi_create_string_utf8(env, val, NAPI_AUTO_LENGTH, &v) == napi_ok) {
    napi_set_named_property(env, obj, key, v);
  }
}

/* Throws Error(message) with code = errno name, errno = -err, syscall. */
napi_value throw_errno(napi_env env, const char *syscall, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "wasm-cow native: %s failed: %s (%s)", syscall, strerror(err),
           errno_code(err));
  napi_value text, error, num;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text) != napi_ok) return NULL;
  if (napi_create_error(env, NULL, text, &error) != napi_ok) return NULL;
  set_prop_str(env, error, "code", errno_code(err));
  set_prop_str(env, error, "syscall", syscall);
  if (napi_create_int32(env, -err, &num) == napi_ok) napi_set_named_property(env, error, "errno", num);
  napi_throw(env, error);
  return NULL;
}

/* Throws a TypeError/RangeError for a bad argument. */
napi_value throw_arg(napi_env env, int range, const char *msg) {
  if (range) napi_throw_range_error(env, "ERR_WASM_COW_NATIVE_ARG", msg);
  else napi_throw_type_error(env, "ERR_WASM_COW_NATIVE_ARG", msg);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Argument helpers.                                                  */
/* ------------------------------------------------------------------ */

/* The genuine WebAssembly.Memory.prototype.buffer getter (per env). */
typedef struct reset_queue reset_queue;
static void reap_jobs(napi_env env, reset_queue *q);
typedef struct {
  napi_ref buffer_getter;
  reset_queue *queue; /* made by resetInit, freed with the environment */
  uint64_t id;        /* this environment's env_acquire id: owner of the images it creates */
} addon_data;

/* The calling environment's id (0, which owns nothing, when it has no addon data). */
static uint64_t env_id(napi_env env) {
  addon_data *data;
  if (napi_get_instance_data(env, (void **)&data) != napi_ok || data == NULL) return 0;
  return data->id;
}

/* Reads an integral, non-negative, exactly representable JS number. */
int get_size(napi_env env, napi_value value, const char *what, uint64_t *out) {
  napi_valuetype type;
  double d;
  char msg[160];
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number ||
      napi_get_value_double(env, value, &d) != napi_ok || !isfinite(d) || d < 0 ||
      d > MAX_SAFE || floor(d) != d) {
    snprintf(msg, sizeof msg, "%s must be a non-negative integer", what);
    throw_arg(env, 0, msg);
    return 0;
  }
  *out = (uint64_t)d;
  return 1;
}

int get_page_aligned(napi_env env, napi_value value, const char *what, uint64_t *out) {
  char msg[160];
  if (!get_size(env, value, what, out)) return 0;
  if (*out % page_size != 0) {
    snprintf(msg, sizeof msg, "%s (%llu) must be a multiple of the page size (%zu)", what,
             (unsigned long long)*out, page_size);
    throw_arg(env, 1, msg);
    return 0;
  }
  return 1;
}

/* Reads an fd argument that must name a live image of ours. */
int get_image_fd(napi_env env, napi_value value, int *fd, uint64_t *length, uint64_t *gen) {
  uint64_t raw;
  if (!get_size(env, value, "fd", &raw)) return 0;
  if (raw > INT32_MAX || !table_find((int)raw, env_id(env), length, gen)) {
    throw_arg(env, 1, "fd is not an open wasm-cow image of this thread (closed already, or never created here)");
    return 0;
  }
  *fd = (int)raw;
  return 1;
}

/*
 * Resolves a WebAssembly.Memory to its current base address and byte
 * length, through the genuine getter. Throws (returns 0) for anything else.
 */
static int get_memory(napi_env env, napi_value memory, uint8_t **base, uint64_t *byte_length) {
  addon_data *data;
  napi_value getter, buffer;
  bool is_ab = false, detached = false;
  void *ptr = NULL;
  size_t len = 0;
  napi_valuetype type;

  if (napi_typeof(env, memory, &type) != napi_ok || type != napi_object) {
    throw_arg(env, 0, "memory must be a WebAssembly.Memory");
    return 0;
  }
  if (napi_get_instance_data(env, (void **)&data) != napi_ok || data == NULL ||
      napi_get_reference_value(env, data->buffer_getter, &getter) != napi_ok || getter == NULL) {
    throw_arg(env, 0, "wasm-cow native: WebAssembly.Memory buffer getter unavailable");
    return 0;
  }
  /* Any call on the JS thread lets go of the memories finished resets kept alive. */
  if (data->queue != NULL) reap_jobs(env, data->queue);
  /* The getter's own brand check throws a TypeError for non-memories. */
  if (napi_call_function(env, memory, getter, 0, NULL, &buffer) != napi_ok) return 0;
  if (napi_is_arraybuffer(env, buffer, &is_ab) != napi_ok || !is_ab ||
      napi_is_detached_arraybuffer(env, buffer, &detached) != napi_ok || detached ||
      napi_get_arraybuffer_info(env, buffer, &ptr, &len) != napi_ok) {
    throw_arg(env, 0, "memory.buffer is not a live ArrayBuffer");
    return 0;
  }
  if (len > 0 && (ptr == NULL || ((uintptr_t)ptr % page_size) != 0)) {
    throw_arg(env, 1, "memory base address is not page-aligned");
    return 0;
  }
  *base = (uint8_t *)ptr;
  *byte_length = len;
  return 1;
}

/* Checks that [offset, offset+length) lies inside the memory. */
static int check_range(napi_env env, uint64_t offset, uint64_t length, uint64_t byte_length) {
  char msg[200];
  if (offset > byte_length || length > byte_length - offset) {
    snprintf(msg, sizeof msg,
             "range [%llu, %llu + %llu) is outside the memory's current byte length %llu",
             (unsigned long long)offset, (unsigned long long)offset, (unsigned long long)length,
             (unsigned long long)byte_length);
    throw_arg(env, 1, msg);
    return 0;
  }
  return 1;
}

/* Parses (memory, offset, length) with every check applied. */
int get_memory_range(napi_env env, napi_callback_info info, size_t expected, napi_value *argv,
                            size_t memory_arg, uint8_t **addr, uint64_t *length) {
  size_t argc = expected;
  uint8_t *base;
  uint64_t byte_length, offset;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < expected) {
    throw_arg(env, 0, "missing arguments");
    return 0;
  }
  if (!get_page_aligned(env, argv[expected - 2], "offset", &offset)) return 0;
  if (!get_page_aligned(env, argv[expected - 1], "length", length)) return 0;
  if (!get_memory(env, argv[memory_arg], &base, &byte_length)) return 0;
  if (!check_range(env, offset, *length, byte_length)) return 0;
  *addr = base + offset;
  return 1;
}

/* ------------------------------------------------------------------ */
/* Entry points.                                                      */
/* ------------------------------------------------------------------ */

static int page_is_zero(const uint8_t *p, size_t n) {
  const uint64_t *w = (const uint64_t *)p;
  for (size_t i = 0; i < n / 8; i++)
    if (w[i] != 0) return 0;
  return 1;
}

/* createImage(bytes: Uint8Array) -> fd. bytes.length: multiple of the page size. */
static napi_value create_image(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  bool is_typed = false;
  napi_typedarray_type ta_type;
  size_t length = 0, byte_offset = 0;
  void *data = NULL;
  napi_value ab;
  int fd, err;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_is_typedarray(env, argv[0], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[0], &ta_type, &length, &data, &ab, &byte_offset) != napi_ok ||
      ta_type != napi_uint8_array) {
    return throw_arg(env, 0, "bytes must be a Uint8Array");
  }
  if (length == 0 || length % page_size != 0 || (uint64_t)length > MAX_IMAGE_BYTES) {
    return throw_arg(env, 1, "image length must be a non-zero multiple of the page size");
  }
  if (data == NULL) return throw_arg(env, 0, "bytes is detached");

  if (fault_fires(FAULT_MEMFD_CREATE)) return throw_errno(env, "memfd_create", EMFILE);
  fd = memfd_create("wasm-cow-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return throw_errno(env, "memfd_create", errno);

  if (fault_fires(FAULT_FTRUNCATE)) {
    err = ENOSPC;
    goto fail_ftruncate;
  }
  if (ftruncate(fd, (off_t)length) != 0) {
    err = errno;
    goto fail_ftruncate;
  }
  /* Write only non-zero pages: zero pages stay holes in the file. */
  for (size_t off = 0; off < length; off += page_size) {
    const uint8_t *page = (const uint8_t *)data + off;
    if (page_is_zero(page, page_size)) continue;
    size_t done = 0;
    while (done < page_size) {
      ssize_t n;
      if (fault_fires(FAULT_WRITE)) {
        err = ENOSPC;
        goto fail_write;
      }
      n = pwrite(fd, page + done, page_size - done, (off_t)(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        err = n < 0 ? errno : EIO;
        goto fail_write;
      }
      done += (size_t)n;
    }
  }
  if (fault_fires(FAULT_SEAL)) {
    err = EPERM;
    goto fail_seal;
  }
  if (fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS) != 0) {
    err = errno;
    goto fail_seal;
  }
  if (fcntl(fd, F_GET_SEALS) != REQUIRED_SEALS) {
    err = EPERM;
    goto fail_seal;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    err = errno;
    close(fd);
    return throw_errno(env, "fstat", err);
  }
  {
    void *v = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
    const uint8_t *view = v == MAP_FAILED ? NULL : (const uint8_t *)v;
    if (!table_add(fd, length, view, env_id(env), (file_id){st.st_dev, st.st_ino})) {
      if (view != NULL) munmap((void *)view, length);
      close(fd);
      return throw_errno(env, "malloc", ENOMEM);
    }
  }
  if (napi_create_int32(env, fd, &result) != napi_ok) return NULL;
  return result;

fail_ftruncate:
  close(fd);
  return throw_errno(env, "ftruncate", err);
fail_write:
  close(fd);
  return throw_errno(env, "pwrite", err);
fail_seal:
  close(fd);
  return throw_errno(env, "fcntl(F_ADD_SEALS)", err);
}

/*
 * closeImage(fd) -> undefined. Existing mappings keep the file alive. Only
 * the environment that created the image may close it: an fd of another
 * thread's image (or one its teardown closed and the kernel reused) is
 * refused like any fd that is not an image.
 */
static napi_value close_image(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  uint64_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) return throw_arg(env, 0, "missing fd");
  if (!get_image_fd(env, argv[0], &fd, &length, NULL)) return NULL;
  const uint8_t *view = NULL;
  if (!table_remove(fd, env_id(env), &view, &length)) return throw_arg(env, 1, "fd is not an open wasm-cow image");
  if (view != NULL) munmap((void *)view, length);
  close(fd);
  return NULL;
}

/* Re-covers a range whose MAP_FIXED mapping failed, so no hole is left. */
static void recover_range(uint8_t *addr, size_t length) {
  mmap(addr, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

/* mapImage(memory, fd, offset, length): CoW-map the first `length` bytes of the image. */
static napi_value map_image(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *addr;
  uint64_t length, image_length;
  int fd;
  if (!get_memory_range(env, info, 4, argv, 0, &addr, &length)) return NULL;
  if (!get_image_fd(env, argv[1], &fd, &image_length, NULL)) return NULL;
  if (length > image_length) return throw_arg(env, 1, "length exceeds the image's length");
  if (length == 0) return NULL;
  if (fault_fires(FAULT_MMAP)) return throw_errno(env, "mmap", ENOMEM);
  void *p = mmap(addr, (size_t)length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED || p != (void *)addr) {
    int err = p == MAP_FAILED ? errno : EFAULT;
    recover_range(addr, (size_t)length);
    return throw_errno(env, "mmap", err);
  }
  return NULL;
}

/* mapZero(memory, offset, length): fresh anonymous zero pages over a range. */
static napi_value map_zero(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint8_t *addr;
  uint64_t length;
  if (!get_memory_range(env, info, 3, argv, 0, &addr, &length)) return NULL;
  if (length == 0) return NULL;
  if (fault_fires(FAULT_MMAP)) return throw_errno(env, "mmap", ENOMEM);
  void *p = mmap(addr, (size_t)length, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED || p != (void *)addr) {
    int err = p == MAP_FAILED ? errno : EFAULT;
    recover_range(addr, (size_t)length);
    return throw_errno(env, "mmap", err);
  }
  return NULL;
}

/* discard(memory, offset, length): drop private pages; they read the image or zero again. */
static napi_value discard(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint8_t *addr;
  uint64_t length;
  if (!get_memory_range(env, info, 3, argv, 0, &addr, &length)) return NULL;
  if (length == 0) return NULL;
  if (fault_fires(FAULT_MADVISE)) return throw_errno(env, "madvise", EAGAIN);
  if (madvise(addr, (size_t)length, MADV_DONTNEED) != 0) return throw_errno(env, "madvise", errno);
  return NULL;
}

/*
 * /proc/self/pagemap, opened at first use; -1 when unavailable, -2 before
 * the first try. Process-wide, shared by every environment and reset thread;
 * closed with the last environment (env_release), when none can use it.
 */
static _Atomic int pagemap_fd = -2;
/* Cleared when the kernel does not know PAGEMAP_SCAN. */
static _Atomic int pagemap_scan_ok = 1;

int get_pagemap_fd(void) {
  int fd = pagemap_fd;
  if (fd != -2) return fd;
  fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  int expected = -2;
  if (!atomic_compare_exchange_strong(&pagemap_fd, &expected, fd < 0 ? -1 : fd)) {
    if (fd >= 0) close(fd); /* another thread won */
  }
  return pagemap_fd;
}

/*
 * Finds the pages of [addr, addr+length) that hold data: present or
 * swapped, but not the shared zero page, nor (when `file_pages_clean`) a
 * file page, i.e. a page of our own image not written since it was mapped.
 * Returns the number of such pages (filling `regions`, `*count`), or -1
 * when there are more than `max_pages`, too many regions, or no scan.
 */
static int64_t scan_dirty(uint8_t *addr, uint64_t length, uint64_t max_pages, struct page_region *regions,
                          int *count, int file_pages_clean) {
  int fd = get_pagemap_fd();
  if (fd < 0 || !pagemap_scan_ok || fault_fires(FAULT_PAGEMAP_SCAN)) return -1;
  struct pm_scan_arg arg;
  memset(&arg, 0, sizeof arg);
  arg.size = sizeof arg;
  arg.start = (uintptr_t)addr;
  arg.end = (uintptr_t)addr + length;
  arg.vec = (uintptr_t)regions;
  arg.vec_len = SCAN_REGIONS;
  arg.max_pages = max_pages + 1;
  uint64_t clean = PAGE_IS_PFNZERO | (file_pages_clean ? PAGE_IS_FILE : 0);
  arg.category_inverted = clean;
  arg.category_mask = clean;
  arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
  arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
  int n = ioctl(fd, PAGEMAP_SCAN, &arg);
  if (n < 0) {
    if (errno == ENOTTY || errno == EINVAL) pagemap_scan_ok = 0;
    return -1;
  }
  if (n == SCAN_REGIONS && arg.walk_end < arg.end) return -1;
  uint64_t pages = 0;
  for (int i = 0; i < n; i++) pages += (regions[i].end - regions[i].start) / page_size;
  if (pages > max_pages) return -1;
  *count = n;
  return (int64_t)pages;
}

/* ------------------------------------------------------------------ */
/* Resetting a memory: the same work inline (resetRange) or queued to  */
/* this environment's reset thread (resetBegin).                       */
/* ------------------------------------------------------------------ */

/* One reset, fully validated: every field was checked on the JS thread. */
typedef struct {
  uint8_t *base;         /* the memory's base address, page-aligned */
  uint64_t length;       /* bytes to reset: the memory's byte length when checked */
  int fd;                /* image fd, -1 for none */
  uint64_t gen;          /* the image's generation (with fd names it exactly) */
  uint64_t image_offset; /* [image_offset, +image_length) lies inside [0, length) */
  uint64_t image_length; /* <= the image's sealed length; 0 without an image */
  uint64_t keep;         /* dirty bytes that may be rewritten in place */
} reset_args;

/*
 * Returns [0, length) to its clean state: the image at [image_offset,
 * +image_length), zero elsewhere. When the tenant dirtied at most `keep`
 * bytes (found with PAGEMAP_SCAN) they are rewritten in place (memset, or a
 * copy from the image) and stay resident, so the next tenant does not fault
 * them in again; *restored = bytes so rewritten. Otherwise, or without the
 * scan, madvise(MADV_DONTNEED) over the range; *restored = -1.
 * Returns 0, or an errno when the range's contents are no longer known (the
 * caller must not reuse the memory).
 */
static int reset_pages(const reset_args *a, double *restored) {
  *restored = -1;
  if (a->length == 0) {
    *restored = 0;
    return 0;
  }
  /* First the mappings: another image mapped into this memory (it was
     imported by another module) goes, and only then may file pages be
     taken as clean and madvise be trusted to bring back the image. */
  int normalized = pages_normalize(a->base, a->length, a->fd, a->gen, a->image_offset, a->image_length);
  if (normalized != 0) return normalized;
  if (a->keep > 0) {
    struct page_region regions[SCAN_REGIONS];
    int count = 0;
    int64_t pages = scan_dirty(a->base, a->length, a->keep / page_size, regions, &count, 1);
    for (int i = 0; pages >= 0 && i < count; i++) {
      /* Never outside the range (the kernel would not say so): madvise instead. */
      if (regions[i].start < (uintptr_t)a->base || regions[i].end > (uintptr_t)a->base + a->length ||
          regions[i].start >= regions[i].end)
        pages = -1;
    }
    if (pages >= 0) {
      uint64_t is = a->image_offset, ie = a->image_offset + a->image_length;
      for (int i = 0; i < count; i++) {
        uint64_t s = regions[i].start - (uintptr_t)a->base, e = regions[i].end - (uintptr_t)a->base;
        if (s < is) memset(a->base + s, 0, (size_t)((e < is ? e : is) - s)); /* before the image */
        uint64_t from = s > is ? s : is, to = e < ie ? e : ie;               /* inside it */
        if (from < to) {
          if (fault_fires(FAULT_RESTORE)) return EIO;
          int err = table_restore(a->fd, a->gen, a->base + from, from - is, to - from);
          if (err != 0) return err;
        }
        from = s > ie ? s : ie; /* after the image */
        if (from < e) memset(a->base + from, 0, (size_t)(e - from));
      }
      *restored = (double)pages * (double)page_size;
      return 0;
    }
  }
  if (fault_fires(FAULT_MADVISE)) return EAGAIN;
  if (madvise(a->base, (size_t)a->length, MADV_DONTNEED) != 0) return errno;
  return 0;
}

/*
 * Reads (memory, length, fd, imageOffset, imageLength, keep) from argv[0..5]
 * into *a. Returns 1, with *grown set when the memory's byte length is not
 * `length` (then nothing may be done to it); 0 with an exception pending.
 */
static int get_reset_args(napi_env env, napi_value *argv, reset_args *a, int *grown) {
  napi_valuetype type;
  uint64_t byte_length, fd_length = 0;
  memset(a, 0, sizeof *a);
  a->fd = -1;
  *grown = 0;
  if (!get_page_aligned(env, argv[1], "length", &a->length)) return 0;
  if (napi_typeof(env, argv[2], &type) != napi_ok) return 0;
  if (type != napi_number) {
    throw_arg(env, 0, "fd must be an image fd or -1");
    return 0;
  }
  double d;
  if (napi_get_value_double(env, argv[2], &d) != napi_ok) return 0;
  if (d != -1 && !get_image_fd(env, argv[2], &a->fd, &fd_length, &a->gen)) return 0;
  if (!get_page_aligned(env, argv[3], "imageOffset", &a->image_offset)) return 0;
  if (!get_page_aligned(env, argv[4], "imageLength", &a->image_length)) return 0;
  if (!get_page_aligned(env, argv[5], "keep", &a->keep)) return 0;
  if (a->fd >= 0 && a->image_length > fd_length) {
    throw_arg(env, 1, "imageLength exceeds the image's length");
    return 0;
  }
  if (a->fd < 0 && a->image_length != 0) {
    throw_arg(env, 1, "imageLength must be 0 without an image fd");
    return 0;
  }
  if (a->image_offset > a->length || a->image_length > a->length - a->image_offset) {
    throw_arg(env, 1, "the image range lies outside [0, length)");
    return 0;
  }
  if (!get_memory(env, argv[0], &a->base, &byte_length)) return 0;
  *grown = byte_length != a->length;
  return 1;
}

/*
 * resetRange(memory, length, fd, imageOffset, imageLength, keep) -> number
 *
 * Resets [0, length) of a memory now (see reset_pages): fd is the image's
 * fd (-1 for none), at [imageOffset, +imageLength). Returns the bytes
 * rewritten in place, or -1 when madvise was used. When the memory's byte
 * length is not `length` (it grew), touches nothing and returns -2: the
 * caller must not reuse the memory.
 */
static napi_value reset_range(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], result;
  reset_args a;
  int grown;
  double restored = -2;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 6) return throw_arg(env, 0, "missing arguments");
  if (!get_reset_args(env, argv, &a, &grown)) return NULL;
  if (!grown) {
    int err = reset_pages(&a, &restored);
    if (err != 0) return throw_errno(env, err == EAGAIN ? "madvise" : "restore from image", err);
  }
  if (napi_create_double(env, restored, &result) != napi_ok) return NULL;
  return result;
}

/*
 * The reset queue of one Node.js environment (the main thread, or one
 * worker thread), and the thread that drains it.
 *
 * A released memory's reset is queued here so that the JS thread can go on
 * at once; the next tenant of that memory is served only after the reset
 * finished, which JS learns from a status cell it owns:
 *
 *   status[cell]:  0 free (JS's)  --resetBegin-->  1 pending
 *                  1 pending      --reset done-->  2 done (3: by resetWait, on
 *                                                  the JS thread), or -errno failed
 *                  2, 3 / -errno  --JS reads it, writes 0-->  0 free
 *
 * The status cells are an Int32Array over a SharedArrayBuffer given once by
 * resetInit: it cannot be detached, so the thread may write it; we hold a
 * reference to it until the environment ends.
 *
 * Jobs live in a ring; the counters only grow (an index is counter %
 * QUEUE_CAP), and  reaped <= tail <= reaped + QUEUE_CAP :
 *
 *   [reaped, tail)  queued, running or done; each job's `tag` says which,
 *                   and which job (its counter) the ring slot holds:
 *
 *     (i, QUEUED) --reset thread or resetWait claims it (CAS)--> (i, RUNNING)
 *     (i, RUNNING) --the claimer finished, status written-----> (i, DONE)
 *     (i, DONE) --reaped in order on the JS thread (its memory reference
 *                 deleted: Node-API is not thread-safe); the slot is then
 *                 free for job i + QUEUE_CAP (the tag stays until then)
 *
 * A claim names the job's counter, so a thread that fell behind can never
 * claim a newer job that reused the slot (whose fields it may not see yet):
 * the CAS that wins also acquires the fields published with the tag.
 *
 * The reset thread takes jobs in order, skipping those the JS thread
 * claimed: a JS thread that needs a memory back and finds its reset not
 * started does it itself, so it never waits on a thread that is not
 * running. The reset thread runs at SCHED_IDLE priority: it uses cores
 * that would otherwise idle and never takes one from JS (when all cores
 * are busy, JS ends up resetting inline, as without the queue).
 *
 * Only the JS thread writes `tail` and `reaped`. A queued job holds a
 * strong reference to its memory, so V8 cannot free the pages while they
 * are written. The reset writes only inside [base, base + length) as
 * checked on the JS thread, and only memories whose whole 4 GiB range is
 * reserved are queued (see memory_is_stable): such a memory never moves,
 * even if someone grows it meanwhile. JS hands out a memory again only
 * after its cell left pending.
 */
#define QUEUE_CAP 256
#define STATUS_FREE 0
#define STATUS_PENDING 1
#define STATUS_DONE 2
#define STATUS_DONE_HERE 3 /* done, by the JS thread in resetWait: the reset thread had not started it */
#define JOB_QUEUED 1
#define JOB_RUNNING 2
#define JOB_DONE 3
#define TAG(i, state) (((i) << 2) | (uint64_t)(state))
/* After its last job the thread polls this long before it sleeps (a wake-up costs the JS thread a system call). */
#define SPIN_NS 50000

/* Two cache lines: what one thread writes never shares a line (nor the
   neighbour the prefetcher pairs it with) with what the other writes. */
#define LINE 128

typedef struct {
  _Atomic uint64_t tag; /* TAG(counter, JOB_*); 0 when the slot is free */
  reset_args args;
  uint32_t cell;
  napi_ref memory; /* keeps the memory alive until deleted on the JS thread */
} __attribute__((aligned(LINE))) reset_job;

struct reset_queue {
  /* Written by the JS thread. */
  _Atomic uint64_t tail __attribute__((aligned(LINE)));
  _Atomic uint64_t reaped;
  int started;
  /* Written by the reset thread. */
  _Atomic int sleeping __attribute__((aligned(LINE))); /* it is (about to be) waiting on `work` */
  /* Rarely written. */
  _Atomic int stopping __attribute__((aligned(LINE)));
  _Atomic int waiters;     /* JS threads in resetWait */
  pthread_mutex_t lock;    /* for the two condition variables */
  pthread_cond_t work;     /* the thread sleeps here when the queue is empty */
  pthread_cond_t finished; /* resetWait sleeps here */
  pthread_t thread;
  _Atomic int32_t *status; /* the cells */
  uint32_t cells;
  napi_ref status_ref;
  reset_job jobs[QUEUE_CAP];
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Runs job number i, which its caller claimed, then publishes the outcome. */
static void run_job(reset_queue *q, reset_job *job, uint64_t i, int here) {
  double restored;
  int err = reset_pages(&job->args, &restored);
  int32_t done = here ? STATUS_DONE_HERE : STATUS_DONE;
  atomic_store_explicit(&q->status[job->cell], err != 0 ? -err : done, memory_order_release);
  if (fault_fires(FAULT_PUBLISH)) {
    struct timespec two_ms = {0, 2000000};
    nanosleep(&two_ms, NULL);
  }
  atomic_store(&job->tag, TAG(i, JOB_DONE)); /* seq_cst, then read waiters: resetWait does the reverse */
  if (atomic_load(&q->waiters) > 0) {
    pthread_mutex_lock(&q->lock);
    pthread_cond_broadcast(&q->finished);
    pthread_mutex_unlock(&q->lock);
  }
}

/* Claims job number i if it is still queued (and still in its slot). */
static int claim(reset_job *job, uint64_t i) {
  uint64_t expected = TAG(i, JOB_QUEUED);
  return atomic_compare_exchange_strong(&job->tag, &expected, TAG(i, JOB_RUNNING));
}

static void *reset_thread(void *arg) {
  reset_queue *q = arg;
  struct sched_param idle = {0};
  pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle); /* best effort */
  pthread_setname_np(pthread_self(), "wasm-cow-reset");
  uint64_t next = 0; /* the next job to look at (the ring starts at 0) */
  for (;;) {
    if (atomic_load_explicit(&q->stopping, memory_order_relaxed)) return NULL;
    /* Job `next`'s slot says whether it was published: its tag names it (or
       a later job, once it was done and the slot reused), not an earlier one. */
    reset_job *job = &q->jobs[next % QUEUE_CAP];
    uint64_t tag = atomic_load_explicit(&job->tag, memory_order_acquire);
    if ((tag >> 2) > next || tag == TAG(next, JOB_RUNNING) || tag == TAG(next, JOB_DONE)) {
      next++; /* done or taken by the JS thread, maybe reused already */
      continue;
    }
    if (tag == TAG(next, JOB_QUEUED)) {
      if (claim(job, next)) run_job(q, job, next, 0);
      next++;
      continue;
    }
    /* Not published yet: poll a while, then sleep (with a timeout, so a
       wake-up lost to the unfenced handshake costs at most a millisecond). */
    uint64_t until = now_ns() + SPIN_NS;
    for (unsigned i = 1; atomic_load_explicit(&job->tag, memory_order_acquire) == tag; i++) {
      cpu_relax();
      if ((i & 63) == 0 && now_ns() > until) break;
    }
    if (atomic_load_explicit(&job->tag, memory_order_acquire) != tag) continue;
    pthread_mutex_lock(&q->lock);
    atomic_store(&q->sleeping, 1);
    if (atomic_load(&job->tag) == tag && !atomic_load(&q->stopping)) {
      struct timespec deadline;
      clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_nsec += 1000000;
      if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&q->work, &q->lock, &deadline);
    }
    atomic_store_explicit(&q->sleeping, 0, memory_order_relaxed);
    pthread_mutex_unlock(&q->lock);
  }
}

/* Deletes the memory references of finished jobs, oldest first (JS thread). */
static void reap_jobs(napi_env env, reset_queue *q) {
  uint64_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
  for (uint64_t i = q->reaped; i < tail; i = q->reaped) {
    reset_job *job = &q->jobs[i % QUEUE_CAP];
    if (atomic_load_explicit(&job->tag, memory_order_acquire) != TAG(i, JOB_DONE)) break;
    napi_delete_reference(env, job->memory);
    job->memory = NULL;
    /* The tag stays (i, DONE) until job i + QUEUE_CAP takes the slot: the
       reset thread, if behind, then knows job i needs nothing from it. */
    atomic_store_explicit(&q->reaped, i + 1, memory_order_relaxed);
  }
}

/* Stops the thread and drops every reference (environment teardown). */
static void reset_queue_free(napi_env env, reset_queue *q) {
  if (q == NULL) return;
  if (q->started) {
    pthread_mutex_lock(&q->lock);
    atomic_store(&q->stopping, 1);
    pthread_cond_broadcast(&q->work);
    pthread_cond_broadcast(&q->finished);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
  }
  /* Jobs that never ran simply leave their memory as it is. */
  for (uint64_t i = q->reaped; i < atomic_load(&q->tail); i++) {
    if (q->jobs[i % QUEUE_CAP].memory != NULL) napi_delete_reference(env, q->jobs[i % QUEUE_CAP].memory);
  }
  if (q->status_ref != NULL) napi_delete_reference(env, q->status_ref);
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->work);
  pthread_cond_destroy(&q->finished);
  free(q);
}

static reset_queue *get_queue(napi_env env) {
  addon_data *data;
  if (napi_get_instance_data(env, (void **)&data) != napi_ok || data == NULL || data->queue == NULL) {
    throw_arg(env, 0, "resetInit() was not called in this thread");
    return NULL;
  }
  return data->queue;
}

/* resetInit(status: Int32Array over a SharedArrayBuffer): once per environment. */
static napi_value reset_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ab;
  bool is_typed = false, is_ab = true;
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void *cells = NULL;
  addon_data *data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (napi_get_instance_data(env, (void **)&data) != napi_ok || data == NULL) return throw_arg(env, 0, "no addon data");
  if (data->queue != NULL) return throw_arg(env, 0, "resetInit() was already called in this thread");
  if (argc < 1 || napi_is_typedarray(env, argv[0], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &cells, &ab, &offset) != napi_ok ||
      type != napi_int32_array || napi_is_arraybuffer(env, ab, &is_ab) != napi_ok) {
    return throw_arg(env, 0, "status must be an Int32Array");
  }
  /* A typed array's buffer is an ArrayBuffer (detachable: refused) or a SharedArrayBuffer. */
  if (is_ab) return throw_arg(env, 0, "status must be backed by a SharedArrayBuffer");
  if (length == 0 || length > (1u << 20) || cells == NULL || ((uintptr_t)cells % sizeof(int32_t)) != 0) {
    return throw_arg(env, 1, "status must hold 1 to 2^20 aligned cells");
  }
  reset_queue *q = aligned_alloc(LINE, (sizeof *q + LINE - 1) / LINE * LINE);
  if (q == NULL) return throw_errno(env, "malloc", ENOMEM);
  memset(q, 0, sizeof *q);
  if (pthread_mutex_init(&q->lock, NULL) != 0 || pthread_cond_init(&q->work, NULL) != 0 ||
      pthread_cond_init(&q->finished, NULL) != 0 || napi_create_reference(env, argv[0], 1, &q->status_ref) != napi_ok) {
    free(q); /* (a failed init leaves nothing to destroy worth the trouble) */
    return throw_errno(env, "pthread init", ENOMEM);
  }
  q->status = (_Atomic int32_t *)cells;
  q->cells = (uint32_t)length;
  data->queue = q;
  return NULL;
}

/*
 * Whether the memory at base can never move: its whole 4 GiB range (the
 * most a 32-bit memory can grow to) is mapped, i.e. V8 reserved it with
 * guard regions and grows it in place. msync(MS_ASYNC) does nothing but
 * fail with ENOMEM when part of the range is unmapped.
 */
static int memory_is_stable(uint8_t *base) {
  return msync(base, (size_t)1 << 32, MS_ASYNC) == 0;
}

static const napi_type_tag stable_memory_tag = {0x7761736d2d636f77ULL, 0x737461626c650001ULL};

/*
 * resetBegin(memory, length, fd, imageOffset, imageLength, keep, cell) -> number
 *
 * Queues the reset resetRange would do. Returns 0 when queued (status[cell]
 * is then pending until the reset thread is done); -2 when the memory's
 * byte length is not `length` (nothing queued; do not reuse it); -3 when it
 * cannot be queued now (queue full, no thread) and -4 when this memory can
 * never be (its address is not stable): reset it with resetRange instead.
 */
static napi_value reset_begin(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], result;
  reset_args a;
  int grown;
  uint64_t cell;
  double ret = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 7) return throw_arg(env, 0, "missing arguments");
  reset_queue *q = get_queue(env);
  if (q == NULL) return NULL;
  if (!get_size(env, argv[6], "cell", &cell)) return NULL;
  if (cell >= q->cells) return throw_arg(env, 1, "cell is outside the status array");
  if (atomic_load(&q->status[cell]) != STATUS_FREE) return throw_arg(env, 1, "cell is not free");
  if (!get_reset_args(env, argv, &a, &grown)) return NULL;
  bool tagged = false;
  if (grown) {
    ret = -2;
  } else if (napi_check_object_type_tag(env, argv[0], &stable_memory_tag, &tagged) != napi_ok) {
    return NULL;
  } else if (!tagged && a.length > 0 &&
             (!memory_is_stable(a.base) || napi_type_tag_object(env, argv[0], &stable_memory_tag) != napi_ok)) {
    ret = -4;
  } else if (atomic_load(&q->tail) - q->reaped >= QUEUE_CAP) {
    ret = -3; /* full */
  } else if (!q->started && pthread_create(&q->thread, NULL, reset_thread, q) != 0) {
    ret = -3; /* no thread (yet): try again next time */
  } else {
    q->started = 1;
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    reset_job *job = &q->jobs[t % QUEUE_CAP];
    if (napi_create_reference(env, argv[0], 1, &job->memory) != napi_ok) return NULL;
    job->args = a;
    job->cell = (uint32_t)cell;
    atomic_store_explicit(&q->status[cell], STATUS_PENDING, memory_order_relaxed);
    atomic_store_explicit(&q->tail, t + 1, memory_order_relaxed);
    /* Publishes the job (and its fields) to the reset thread, which polls this tag. */
    atomic_store_explicit(&job->tag, TAG(t, JOB_QUEUED), memory_order_release);
    if (atomic_load_explicit(&q->sleeping, memory_order_relaxed)) {
      pthread_mutex_lock(&q->lock);
      pthread_cond_signal(&q->work);
      pthread_mutex_unlock(&q->lock);
    }
  }
  if (napi_create_double(env, ret, &result) != napi_ok) return NULL;
  return result;
}

/*
 * resetWait(cell) -> number: returns status[cell] once it is no longer
 * pending (2 done, 3 done here, -errno failed). A reset the thread has not started is
 * done here and now. Returns 1 at once if the cell is pending but no job
 * names it (a caller's mistake, not a reason to hang). A job's status is
 * written before its tag says done, so once the newest job naming the
 * cell is done, the status is final.
 */
static napi_value reset_wait(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  uint64_t cell;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  reset_queue *q = get_queue(env);
  if (q == NULL) return NULL;
  if (argc < 1 || !get_size(env, argv[0], "cell", &cell)) return NULL;
  if (cell >= q->cells) return throw_arg(env, 1, "cell is outside the status array");
  _Atomic int32_t *s = &q->status[cell];
  reset_job *job = NULL;
  uint64_t index = 0;
  if (atomic_load_explicit(s, memory_order_acquire) == STATUS_PENDING) {
    /* The newest job naming this cell (this thread wrote every job's cell).
       Not the oldest: JS may free a cell as soon as its status says done,
       a moment before that job's tag does, and queue another job on it. */
    uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    for (uint64_t i = tail; i-- > q->reaped;) {
      if (q->jobs[i % QUEUE_CAP].cell == cell) {
        job = &q->jobs[i % QUEUE_CAP];
        index = i;
        break;
      }
    }
  }
  if (job != NULL && claim(job, index)) {
    run_job(q, job, index, 1); /* not started: do it here */
  } else if (job != NULL) {
    /* Running on the reset thread: it will not be long, unless that
       thread lost its core (it runs at idle priority), so spin briefly,
       then sleep and leave the core to it. */
#define RUNNING() (atomic_load_explicit(&job->tag, memory_order_acquire) != TAG(index, JOB_DONE))
    for (unsigned i = 0; i < 2000 && RUNNING(); i++) cpu_relax();
    if (RUNNING()) {
      pthread_mutex_lock(&q->lock);
      atomic_fetch_add(&q->waiters, 1);
      while (RUNNING() && !atomic_load(&q->stopping)) pthread_cond_wait(&q->finished, &q->lock);
      atomic_fetch_sub(&q->waiters, 1);
      pthread_mutex_unlock(&q->lock);
    }
#undef RUNNING
  }
  reap_jobs(env, q);
  if (napi_create_int32(env, atomic_load_explicit(s, memory_order_acquire), &result) != napi_ok) return NULL;
  return result;
}

/*
 * touchedPages(memory, offset, length) -> 0 when no page of the range holds
 * anything (never written, or only read: the zero page), a positive number
 * when some does, -1 when the kernel cannot tell (no PAGEMAP_SCAN).
 */
static napi_value touched_pages(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  uint8_t *addr;
  uint64_t length;
  struct page_region regions[SCAN_REGIONS];
  int count = 0;
  if (!get_memory_range(env, info, 3, argv, 0, &addr, &length)) return NULL;
  int64_t pages = 0;
  if (length > 0) {
    pages = scan_dirty(addr, length, 0, regions, &count, 0);
    /* -1 from the scan means "more than 0" or "unknown": tell them apart. */
    if (pages < 0) pages = (pagemap_fd >= 0 && pagemap_scan_ok) ? 1 : -1;
  }
  if (napi_create_double(env, (double)pages, &result) != napi_ok) return NULL;
  return result;
}

/*
 * residentPages(memory, offset, length) -> number of pages in the range
 * that are present or swapped, from /proc/self/pagemap. 0 means the range
 * was never touched (or was discarded) and reads as zero.
 */
static napi_value resident_pages(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  uint8_t *addr;
  uint64_t length, count = 0;
  uint64_t entries[512];
  if (!get_memory_range(env, info, 3, argv, 0, &addr, &length)) return NULL;
  if (length > 0) {
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return throw_errno(env, "open(/proc/self/pagemap)", errno);
    uint64_t first = (uintptr_t)addr / page_size, pages = length / page_size;
    for (uint64_t done = 0; done < pages;) {
      uint64_t want = pages - done > 512 ? 512 : pages - done;
      ssize_t n = pread(fd, entries, want * 8, (off_t)((first + done) * 8));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || n % 8 != 0) {
        int err = n < 0 ? errno : EIO;
        close(fd);
        return throw_errno(env, "pread(/proc/self/pagemap)", err);
      }
      for (ssize_t i = 0; i < n / 8; i++)
        if (entries[i] & (3ULL << 62)) count++; /* bit 63 present, bit 62 swapped */
      done += (uint64_t)n / 8;
    }
    close(fd);
  }
  if (napi_create_double(env, (double)count, &result) != napi_ok) return NULL;
  return result;
}

/* openImages() -> number of images created and not yet closed. */
static napi_value open_images(napi_env env, napi_callback_info info) {
  napi_value result;
  size_t live;
  (void)info;
  pthread_rwlock_rdlock(&table_lock);
  live = table_live;
  pthread_rwlock_unlock(&table_lock);
  if (napi_create_double(env, (double)live, &result) != napi_ok) return NULL;
  return result;
}

/* setFault(step: string | null, skip = 0). Throws unless enabled at load. */
static napi_value set_fault(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_valuetype type;
  char name[32];
  size_t len = 0;
  uint64_t skip = 0;
  if (!fault_enabled) {
    return throw_arg(env, 0, "fault injection is off; set WASM_COW_FAULT_INJECTION=1 before loading");
  }
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok) return throw_arg(env, 0, "missing step");
  if (type == napi_null || type == napi_undefined) {
    fault_armed = FAULT_NONE;
    return NULL;
  }
  if (type != napi_string ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    return throw_arg(env, 0, "step must be a string");
  }
  if (argc >= 2 && !get_size(env, argv[1], "skip", &skip)) return NULL;
  for (int i = 1; i < (int)(sizeof fault_names / sizeof fault_names[0]); i++) {
    if (strcmp(name, fault_names[i]) == 0) {
      fault_skip = (long)skip;
      fault_armed = i;
      return NULL;
    }
  }
  return throw_arg(env, 1, "unknown fault step");
}

/* ------------------------------------------------------------------ */
/* Environments (the main thread and each worker) that loaded us.     */
/*                                                                    */
/* Process-wide state (the image table's array, the pagemap fd) lives */
/* while at least one environment does, and is let go by the last:    */
/* Node unloads this shared object when the last environment that     */
/* loaded it ends (every static starts again at its initial value at  */
/* the next load), so anything still open then would be lost to the   */
/* process for good. Ids are unique while the object stays loaded,    */
/* which is as long as any image or environment that could name one   */
/* exists.                                                            */
/* ------------------------------------------------------------------ */

static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t env_live = 0;   /* environments set up and not yet torn down */
static uint64_t env_serial = 0; /* the last id given out */

/* Counts one more environment; returns its id (> 0). */
static uint64_t env_acquire(void) {
  pthread_mutex_lock(&env_lock);
  env_live++;
  uint64_t id = ++env_serial;
  pthread_mutex_unlock(&env_lock);
  return id;
}

/*
 * Counts one environment less; the last one closes the pagemap and maps fds and frees
 * the empty table. Called after that environment's reset thread was joined
 * and its images closed, so no thread can be using either.
 */
static void env_release(void) {
  pthread_mutex_lock(&env_lock);
  if (env_live > 0 && --env_live == 0) {
    int fd = atomic_exchange(&pagemap_fd, -2);
    if (fd >= 0) close(fd);
    pages_release();
    pthread_rwlock_wrlock(&table_lock);
    if (table_live == 0) { /* always, as every environment closed its own */
      free(table);
      table = NULL;
      table_cap = 0;
    }
    pthread_rwlock_unlock(&table_lock);
  }
  pthread_mutex_unlock(&env_lock);
}

/*
 * Environment teardown (Node calls this once no JS runs in it any more):
 * stops and joins its reset thread first, so that no queued restore reads
 * an image closed next; then closes every image it created and did not
 * close (a worker that ended without engine.close(), or was terminated).
 */
static void free_addon_data(napi_env env, void *data, void *hint) {
  (void)hint;
  addon_data *d = data;
  if (d != NULL) {
    reset_queue_free(env, d->queue);
    if (d->id != 0) table_close_owned(d->id);
    napi_delete_reference(env, d->buffer_getter);
    int counted = d->id != 0;
    free(d);
    if (counted) env_release();
  }
}

/* Looks up Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, 'buffer').get */
static napi_value find_buffer_getter(napi_env env) {
  napi_value global, wasm, memory_ctor, proto, object_ctor, gopd, args[2], desc, getter;
  napi_valuetype type;
  if (napi_get_global(env, &global) != napi_ok) return NULL;
  if (napi_get_named_property(env, global, "WebAssembly", &wasm) != napi_ok) return NULL;
  if (napi_get_named_property(env, wasm, "Memory", &memory_ctor) != napi_ok) return NULL;
  if (napi_get_named_property(env, memory_ctor, "prototype", &proto) != napi_ok) return NULL;
  if (napi_get_named_property(env, global, "Object", &object_ctor) != napi_ok) return NULL;
  if (napi_get_named_property(env, object_ctor, "getOwnPropertyDescriptor", &gopd) != napi_ok) return NULL;
  args[0] = proto;
  if (napi_create_string_utf8(env, "buffer", NAPI_AUTO_LENGTH, &args[1]) != napi_ok) return NULL;
  if (napi_call_function(env, object_ctor, gopd, 2, args, &desc) != napi_ok) return NULL;
  if (napi_typeof(env, desc, &type) != napi_ok || type != napi_object) return NULL;
  if (napi_get_named_property(env, desc, "get", &getter) != napi_ok) return NULL;
  if (napi_typeof(env, getter, &type) != napi_ok || type != napi_function) return NULL;
  return getter;
}

NAPI_MODULE_INIT() {
  napi_value getter, fn, num;
  addon_data *data;
  long ps = sysconf(_SC_PAGESIZE);
  const char *inject = getenv("WASM_COW_FAULT_INJECTION");

  if (ps <= 0 || (ps & (ps - 1)) != 0) {
    napi_throw_error(env, NULL, "wasm-cow native: cannot determine the page size");
    return NULL;
  }
  page_size = (size_t)ps;
  if (inject != NULL && strcmp(inject, "1") == 0) fault_enabled = 1;
  pages_init();

  getter = find_buffer_getter(env);
  if (getter == NULL) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, NULL, "wasm-cow native: WebAssembly.Memory.prototype.buffer not found");
    return NULL;
  }
  data = calloc(1, sizeof *data);
  if (data == NULL || napi_create_reference(env, getter, 1, &data->buffer_getter) != napi_ok) {
    free(data);
    napi_throw_error(env, NULL, "wasm-cow native: out of memory");
    return NULL;
  }
  /* Each load gets its own napi_env (a second process.dlopen of this file in
     the same thread too): its own id, released by free_addon_data. */
  data->id = env_acquire();
  if (napi_set_instance_data(env, data, free_addon_data, NULL) != napi_ok) {
    free_addon_data(env, data, NULL);
    return NULL;
  }

  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {
      {"createImage", create_image}, {"closeImage", close_image},
      {"mapImage", map_image},       {"mapZero", map_zero},
      {"discard", discard},          {"residentPages", resident_pages},
      {"resetRange", reset_range},   {"touchedPages", touched_pages},
      {"openImages", open_images},   {"setFault", set_fault},
      {"resetInit", reset_init},     {"resetBegin", reset_begin},
      {"resetWait", reset_wait},     {"nonZeroPages", non_zero_pages},
      {"mapImageAt", map_image_at},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok)
      return NULL;
  }
  if (napi_create_double(env, (double)page_size, &num) != napi_ok ||
      napi_set_named_property(env, exports, "pageSize", num) != napi_ok)
    return NULL;
  if (napi_get_boolean(env, fault_enabled, &num) != napi_ok ||
      napi_set_named_property(env, exports, "faultInjection", num) != napi_ok)
    return NULL;
  return exports;
}
