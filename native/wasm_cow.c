/*
 * wasm-cow native layer: sealed memfd images and page mapping into
 * WebAssembly.Memory objects.
 *
 * The addon is deliberately small and paranoid. It knows nothing about
 * modules, pools or slots (those live in TypeScript); it offers a few page
 * operations, and it validates every argument before any system call:
 *
 *   createImage(bytes)                  -> fd   memfd, filled, sealed (or the open
 *                                               image of the same bytes, shared)
 *   closeImage(fd)                              drop a hold (the last closes it)
 *   mapImage(memory, fd, offset, length)        MAP_PRIVATE|MAP_FIXED CoW map
 *   mapZero(memory, offset, length)             anonymous MAP_FIXED over a range
 *   discard(memory, offset, length)             madvise(MADV_DONTNEED)
 *   resetRange(memory, length, fd, imageOffset, imageLength, keep)
 *                                               restore dirty pages by hand when few
 *                                               (PAGEMAP_SCAN), else madvise
 *   resetInit(status) / resetBegin(..., cell) / resetWait(cell) / resetReap()
 *                                               the same reset, queued to a
 *                                               background thread (reset_queue.c)
 *   touchedPages / residentPages (memory, offset, length)
 *                                               what a range holds (PAGEMAP_SCAN, pagemap)
 *   nonZeroPages(memory, offset, length, out)   which pages hold only zeros now (pages.c)
 *   mapImageAt(memory, fd, offset, length, fileOffset)
 *   mappingCount(memory, limit), processMappings(limit)   mappings (VMAs) now (pages.c)
 *                                               part of an image, CoW, over zero pages (pages.c)
 *   openImages(), setFault(step, skip)          accounting, fault injection (tests)
 *
 * This file is the Node-API glue: argument checks and errors, createImage,
 * closeImage, openImages, environments and module init. The rest is split
 * by concern (native/wasm_cow.h is what the files share, and says which
 * file defines what):
 *   native/image_table.c  the process-wide table of images, by fd
 *   native/reset.c        mapImage, mapZero, discard, touchedPages,
 *                         residentPages, resetRange: mapping, the dirty-page
 *                         scan, the reset itself (reset_pages)
 *   native/reset_queue.c  resetInit, resetBegin, resetWait, resetReap: each
 *                         environment's reset queue and its thread
 *   native/pages.c        nonZeroPages, mapImageAt: what backs each page of a
 *                         memory (PROCMAP_QUERY, PAGEMAP_SCAN), and the
 *                         reset's mapping walk (pages_normalize)
 *   native/fault.c        setFault: fault injection (tests)
 *
 * A reset first makes a memory's mappings those of a clean slot
 * (pages_normalize: any file mapping but the slot's own image at its own
 * offset is replaced), and only then trusts madvise and takes unwritten
 * file pages as clean.
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <node_api.h>

#include "wasm_cow.h"

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

#define REQUIRED_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
/* 2^53: the largest integer a JS number holds exactly. */
#define MAX_SAFE 9007199254740992.0
/* Upper bound on one image; the TypeScript layer enforces its own limit. */
#define MAX_IMAGE_BYTES ((uint64_t)1 << 40)

/* Host page size, a power of two: set, to the same value, by every module init. */
size_t page_size = 0;

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
  if (err == WC_EREPLACED) {
    snprintf(msg, sizeof msg,
             "wasm-cow native: %s refused: the image's fd was closed or replaced by other code in this process "
             "(its number no longer names the image's memfd); nothing was mapped or read from it, and it will not be closed",
             syscall);
    napi_value text, error;
    if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text) != napi_ok) return NULL;
    if (napi_create_error(env, NULL, text, &error) != napi_ok) return NULL;
    set_prop_str(env, error, "code", "ERR_WASM_COW_IMAGE_FD_REPLACED");
    set_prop_str(env, error, "syscall", syscall);
    napi_throw(env, error);
    return NULL;
  }
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
int get_memory(napi_env env, napi_value memory, uint8_t **base, uint64_t *byte_length) {
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
  if (data->queue != NULL) reap_jobs(env, data->queue, 0);
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

/* Whether the page_size bytes at p hold only zero bytes (p need not be aligned: a Uint8Array may start anywhere). */
int page_is_zero(const uint8_t *p) {
  for (size_t i = 0; i < page_size; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, sizeof w); /* an unaligned load where the CPU has one, never a misaligned dereference */
    if (w != 0) return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------ */
/* Entry points.                                                      */
/* ------------------------------------------------------------------ */

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

  /* One image per content, process-wide: an open image of these very bytes
     (made by this thread or any other) is shared, with one more hold. */
  uint64_t hash = content_hash((const uint8_t *)data, (uint64_t)length);
  int shared = table_share((uint64_t)length, hash, (const uint8_t *)data, env_id(env));
  if (shared >= 0) {
    if (napi_create_int32(env, shared, &result) != napi_ok) return NULL;
    return result;
  }

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
    if (page_is_zero(page)) continue;
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
    int added = table_add(fd, length, view, env_id(env), (file_id){st.st_dev, st.st_ino}, hash, (const uint8_t *)data, &shared);
    if (added != 1) { /* 2: another thread added these bytes meanwhile, and we hold that image */
      if (view != NULL) munmap((void *)view, length);
      close(fd);
      if (added == 0) return throw_errno(env, "malloc", ENOMEM);
      fd = shared;
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
 * closeImage(fd) -> undefined. Drops one of this environment's holds on
 * the image (one per createImage that returned fd); the image itself (fd
 * and view) closes with its last hold, in any environment. Existing
 * mappings keep the file alive. An fd this environment holds no image at
 * (another thread's image, or one closed already and reused by the kernel)
 * is refused like any fd that is not an image.
 */
static napi_value close_image(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  uint64_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) return throw_arg(env, 0, "missing fd");
  if (!get_image_fd(env, argv[0], &fd, &length, NULL)) return NULL;
  /* Finished resets pin their images until reaped: let them go first, so that this close is the last one's. */
  addon_data *data;
  if (napi_get_instance_data(env, (void **)&data) == napi_ok && data != NULL && data->queue != NULL) reap_jobs(env, data->queue, 1);
  if (table_remove(fd, env_id(env)) == 0) return throw_arg(env, 1, "fd is not an open wasm-cow image");
  return NULL;
}

/* openImages() -> number of images created and not yet closed. */
static napi_value open_images(napi_env env, napi_callback_info info) {
  napi_value result;
  size_t live;
  (void)info;
  live = table_open_count();
  if (napi_create_double(env, (double)live, &result) != napi_ok) return NULL;
  return result;
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
    pagemap_release();
    pages_release();
    table_release(); /* frees the empty table */
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
  if (inject != NULL && strcmp(inject, "1") == 0) atomic_store(&fault_enabled, 1);
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
      {"mapImageAt", map_image_at},     {"mappingCount", mapping_count},
      {"processMappings", process_mappings}, {"resetReap", reset_reap},
      {"presentPages", present_pages},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok)
      return NULL;
  }
  if (napi_create_double(env, (double)page_size, &num) != napi_ok ||
      napi_set_named_property(env, exports, "pageSize", num) != napi_ok)
    return NULL;
  if (napi_get_boolean(env, atomic_load(&fault_enabled), &num) != napi_ok ||
      napi_set_named_property(env, exports, "faultInjection", num) != napi_ok)
    return NULL;
  return exports;
}
