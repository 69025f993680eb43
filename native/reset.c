/*
 * Mapping into a memory and resetting it: mapImage, mapZero, discard, the
 * dirty-page scan (PAGEMAP_SCAN) with touchedPages and residentPages, and
 * reset_pages, the reset itself, done inline by resetRange or on an
 * environment's reset thread (reset_queue.c). The reset's mapping walk,
 * pages_normalize, is in pages.c. Every entry point follows the rules at
 * the top of wasm_cow.c.
 *
 * Invariants: nothing here maps or writes outside a range checked on the JS
 * thread (a reset: reset_args, whose fields say theirs), and nothing is ever
 * unmapped: a failed MAP_FIXED leaves the range covered (recover_range).
 * pagemap_fd and scan_ok say their own below.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wasm_cow.h"

/* Re-covers a range whose MAP_FIXED mapping failed, so no hole is left. */
void recover_range(uint8_t *addr, size_t length) {
  mmap(addr, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

/*
 * mmap(addr, length, read-write, flags, fd, 0) over a validated range of a
 * memory (length > 0). If it fails, the range is re-covered (recover_range)
 * and a JS error is thrown; returns NULL either way.
 */
static napi_value map_fixed(napi_env env, uint8_t *addr, uint64_t length, int flags, int fd) {
  if (fault_fires(FAULT_MMAP)) return throw_errno(env, "mmap", ENOMEM);
  void *p = mmap(addr, (size_t)length, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED || p != (void *)addr) {
    int err = p == MAP_FAILED ? errno : EFAULT;
    recover_range(addr, (size_t)length);
    return throw_errno(env, "mmap", err);
  }
  return NULL;
}

/* mapImage(memory, fd, offset, length): CoW-map the first `length` bytes of the image. */
napi_value map_image(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint8_t *addr;
  uint64_t length, image_length, gen;
  int fd;
  if (!get_memory_range(env, info, 4, argv, 0, &addr, &length)) return NULL;
  if (!get_image_fd(env, argv[1], &fd, &image_length, &gen)) return NULL;
  if (length > image_length) return throw_arg(env, 1, "length exceeds the image's length");
  if (length == 0) return NULL;
  /* Through the table: under its lock, and only while fd still names the image (else WC_EREPLACED, nothing mapped). */
  int err = table_map(fd, gen, addr, length, 0, PROT_READ | PROT_WRITE);
  return err == 0 ? NULL : throw_errno(env, "mmap", err);
}

/* mapZero(memory, offset, length): fresh anonymous zero pages over a range. */
napi_value map_zero(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint8_t *addr;
  uint64_t length;
  if (!get_memory_range(env, info, 3, argv, 0, &addr, &length)) return NULL;
  if (length == 0) return NULL;
  return map_fixed(env, addr, length, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1);
}

/* discard(memory, offset, length): drop private pages; they read the image or zero again. */
napi_value discard(napi_env env, napi_callback_info info) {
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
 * /proc/self/pagemap, opened at load (pagemap_init) or else at first use;
 * -1 when unavailable, -2 before the first try. Process-wide, shared by
 * every environment and reset thread; closed with the last environment
 * (env_release), when none can use it.
 */
static _Atomic int pagemap_fd = -2;
/*
 * 1 while PAGEMAP_SCAN may be used, by every thread of the process; cleared
 * for good when the kernel lacks it: the probe at open fails with ENOTTY or
 * EINVAL, or a scan with ENOTTY. Never set again once cleared.
 */
static _Atomic int scan_ok = 1;

/*
 * Whether the kernel takes our scans: one page of this thread's stack (a
 * mapped, page-aligned range), with the categories and masks the scans use.
 * 0 only when it says it lacks the scan (ENOTTY) or refuses these arguments,
 * which cannot be wrong (EINVAL); any other error says nothing of the kernel.
 */
static int scan_probe(int fd) {
  struct wc_page_region regions[WC_SCAN_REGIONS];
  struct wc_pm_scan_arg arg;
  uint64_t page = (uintptr_t)regions & ~(uint64_t)(page_size - 1);
  scan_query(&arg, page, page + page_size, regions, WC_PAGE_IS_PFNZERO | WC_PAGE_IS_FILE);
  arg.max_pages = 1;
  if (scan_pages(fd, &arg) >= 0) return 1;
  return errno != EINVAL && errno != ENOTTY;
}

static int get_pagemap_fd(void) {
  int fd = pagemap_fd;
  if (fd != -2) return fd;
  fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  /* Probed before the descriptor is published: no scan runs before the kernel was asked. */
  if (fd >= 0 && !scan_probe(fd)) scan_ok = 0;
  int expected = -2;
  if (!atomic_compare_exchange_strong(&pagemap_fd, &expected, fd < 0 ? -1 : fd)) {
    if (fd >= 0) close(fd); /* another thread won */
  }
  return pagemap_fd;
}

void pagemap_init(void) { get_pagemap_fd(); }

/* Closes /proc/self/pagemap; called with the last environment (env_release), when no thread can use it. */
void pagemap_release(void) {
  int fd = atomic_exchange(&pagemap_fd, -2);
  if (fd >= 0) close(fd);
}

int scan_fd(void) {
  int fd = get_pagemap_fd();
  if (fd < 0 || !scan_ok || fault_fires(FAULT_PAGEMAP_SCAN)) return -1;
  return fd;
}

void scan_query(struct wc_pm_scan_arg *arg, uint64_t start, uint64_t end, struct wc_page_region *regions,
                uint64_t clean) {
  memset(arg, 0, sizeof *arg);
  arg->size = sizeof *arg;
  arg->start = start;
  arg->end = end;
  arg->vec = (uintptr_t)regions;
  arg->vec_len = WC_SCAN_REGIONS;
  arg->category_inverted = clean;
  arg->category_mask = clean;
  arg->category_anyof_mask = WC_PAGE_IS_PRESENT | WC_PAGE_IS_SWAPPED;
  arg->return_mask = WC_PAGE_IS_PRESENT | WC_PAGE_IS_SWAPPED;
}

int scan_pages(int fd, struct wc_pm_scan_arg *arg) {
  for (;;) {
    int n = ioctl(fd, WC_PAGEMAP_SCAN, arg);
    if (n >= 0) return n;
    int err = errno;
    if (err == EINTR) continue; /* the arguments are unchanged: ask again */
    if (err == ENOTTY) scan_ok = 0;
    errno = err;
    return -1;
  }
}

/* scan_dirty's answers other than a page count. */
#define SCAN_TOO_MANY (-1) /* more than max_pages, or more regions than one call returns */
#define SCAN_UNKNOWN (-2)  /* no scan (none, or an injected fault), or it failed */

/*
 * Finds the pages of [addr, addr+length) that hold data: present or
 * swapped, but not the shared zero page, nor (when `file_pages_clean`) a
 * file page, i.e. a page of our own image not written since it was mapped.
 * Returns the number of such pages (filling `regions`, `*count`),
 * SCAN_TOO_MANY, or SCAN_UNKNOWN.
 */
static int64_t scan_dirty(uint8_t *addr, uint64_t length, uint64_t max_pages, struct wc_page_region *regions,
                          int *count, int file_pages_clean) {
  int fd = scan_fd();
  if (fd < 0) return SCAN_UNKNOWN;
  struct wc_pm_scan_arg arg;
  scan_query(&arg, (uintptr_t)addr, (uintptr_t)addr + length, regions,
             WC_PAGE_IS_PFNZERO | (file_pages_clean ? WC_PAGE_IS_FILE : 0));
  arg.max_pages = max_pages + 1;
  int n = scan_pages(fd, &arg);
  if (n < 0) return SCAN_UNKNOWN;
  if (n == WC_SCAN_REGIONS && arg.walk_end < arg.end) return SCAN_TOO_MANY;
  uint64_t pages = 0;
  for (int i = 0; i < n; i++) pages += (regions[i].end - regions[i].start) / page_size;
  if (pages > max_pages) return SCAN_TOO_MANY;
  *count = n;
  return (int64_t)pages;
}

/*
 * touchedPages(memory, offset, length) -> 0 when no page of the range holds
 * anything (never written, or only read: the zero page), a positive number
 * when some does, -1 when the kernel cannot tell (no PAGEMAP_SCAN, or the
 * scan failed).
 */
napi_value touched_pages(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  uint8_t *addr;
  uint64_t length;
  struct wc_page_region regions[WC_SCAN_REGIONS];
  int count = 0;
  if (!get_memory_range(env, info, 3, argv, 0, &addr, &length)) return NULL;
  int64_t pages = 0;
  if (length > 0) {
    pages = scan_dirty(addr, length, 0, regions, &count, 0);
    if (pages == SCAN_TOO_MANY) pages = 1; /* more than 0 */
    else if (pages < 0) pages = -1;
  }
  if (napi_create_double(env, (double)pages, &result) != napi_ok) return NULL;
  return result;
}

/*
 * residentPages(memory, offset, length) -> number of pages in the range
 * that are present or swapped, from /proc/self/pagemap. 0 means the range
 * was never touched (or was discarded) and reads as zero.
 */
napi_value resident_pages(napi_env env, napi_callback_info info) {
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

/* ------------------------------------------------------------------ */
/* Resetting a memory: the same work inline (resetRange) or queued to  */
/* this environment's reset thread (resetBegin).                       */
/* ------------------------------------------------------------------ */

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
int reset_pages(const reset_args *a, double *restored) {
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
    struct wc_page_region regions[WC_SCAN_REGIONS];
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
int get_reset_args(napi_env env, napi_value *argv, reset_args *a, int *grown) {
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
napi_value reset_range(napi_env env, napi_callback_info info) {
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
