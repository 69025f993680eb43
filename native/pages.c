/*
 * What backs a memory's pages, now.
 *
 * PROCMAP_QUERY (an ioctl on /proc/self/maps, Linux 6.11) names the mapping
 * (VMA) over an address: anonymous, or which file at which offset.
 * PAGEMAP_SCAN (Linux 6.7) tells which pages of an anonymous mapping hold a
 * frame of their own. Together they say, without reading a page that holds
 * nothing, which pages of a range hold only zero bytes:
 *
 *   anonymous, no frame (never written, or only read: the zero page)  zero
 *   anonymous, a frame (written, or swapped out)        zero iff every byte is
 *   in a file mapping (one of our images or anyone's)   never taken as zero
 *
 * Entry points (same rules as every entry point in wasm_cow.c):
 *
 *   nonZeroPages(memory, offset, length, out: Uint8Array) -> number
 *       out[i] = 1 when page i of the range may hold a non-zero byte, 0 when it
 *       holds only zeros; returns how many are 1, or -1 when the kernel cannot
 *       tell (no PROCMAP_QUERY or PAGEMAP_SCAN): then nothing may be taken as
 *       zero, and the caller leaves the range to V8.
 *   mapImageAt(memory, fd, offset, length, fileOffset)
 *       maps image bytes [fileOffset, +length) copy-on-write at `offset`: for
 *       ranges nonZeroPages just found zero. If the mmap fails the range is
 *       covered with fresh anonymous zero pages (what it held), and the error
 *       says so (`zeroed: true`); only if that fails too is it left
 *       inaccessible (`zeroed: false`).
 *   presentPages(memory, offset, length) -> number
 *       how many pages of the range hold an anonymous frame of their own
 *       (written, or zero-filled by the program), without reading them; -1
 *       when the kernel cannot tell. A cost signal only (V8's copy onto such
 *       pages takes no page faults), never a statement about their bytes.
 *   mappingCount(memory, limit) -> number
 *       how many mappings (VMAs) cover the memory's bytes now, counted up to
 *       `limit` (the walk stops there: at most `limit` queries, ~0.3 us each);
 *       -1 when the kernel cannot tell. Each image placed into a memory splits
 *       its VMAs; the engine bounds how many one memory may hold.
 *   processMappings(limit) -> number
 *       the same for the whole process (every VMA, up to `limit`), -1 when
 *       unknown: the engine keeps its own mappings far from vm.max_map_count.
 *
 * And the reset's first step, pages_normalize (see wasm_cow.h), which makes a
 * pooled memory's mappings those of a clean slot whatever was mapped into it
 * meanwhile: madvise(MADV_DONTNEED) on a private file mapping brings back the
 * file's bytes, so a file mapping other than the slot's own image at the
 * right offset must go before a reset may trust madvise or take unwritten
 * file pages as clean.
 *
 * /proc/self/maps is opened once for the process, as /proc/self/pagemap is,
 * and shared by every thread: PROCMAP_QUERY keeps no state in the open file
 * (it reads only the file's mm; its locking context lives on the caller's
 * stack), so concurrent queries on one fd are safe, and no thread waits for
 * another. (Not a descriptor per thread: a thread-exit destructor would
 * outlive the addon, which Node unloads with the last worker using it.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "wasm_cow.h"

/* PROCMAP_QUERY (Linux 6.11, linux/fs.h); the system headers may lack it. */
struct wc_procmap_query {
  uint64_t size;
  uint64_t query_flags;
  uint64_t query_addr;
  uint64_t vma_start;
  uint64_t vma_end;
  uint64_t vma_flags;
  uint64_t vma_page_size;
  uint64_t vma_offset;
  uint64_t inode;
  uint32_t dev_major;
  uint32_t dev_minor;
  uint32_t vma_name_size;
  uint32_t build_id_size;
  uint64_t vma_name_addr;
  uint64_t build_id_addr;
};
_Static_assert(sizeof(struct wc_procmap_query) == 104, "struct procmap_query is 104 bytes");
#define WC_PROCMAP_QUERY _IOWR('f', 17, struct wc_procmap_query)
#define WC_VMA_READABLE 0x01
#define WC_VMA_WRITABLE 0x02
#define WC_VMA_EXECUTABLE 0x04
#define WC_VMA_SHARED 0x08
#define WC_COVERING_OR_NEXT_VMA 0x10

/* Whether PROCMAP_QUERY works: 0 not known yet, 1 yes, -1 no (the kernel lacks it). Never -1 once 1. */
static _Atomic int procmap_state = 0;

/* /proc/self/maps, opened once; -1 when unavailable, -2 before the first try. */
static _Atomic int maps_fd = -2;

static int get_maps_fd(void) {
  int fd = atomic_load(&maps_fd);
  if (fd != -2) return fd;
  fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  int expected = -2;
  if (!atomic_compare_exchange_strong(&maps_fd, &expected, fd < 0 ? -1 : fd)) {
    if (fd >= 0) close(fd); /* another thread won */
  }
  return atomic_load(&maps_fd);
}

void pages_init(void) {
  get_maps_fd();
  pagemap_init();
}

/* Closes /proc/self/maps; called with the last environment (env_release), when no thread can use it. */
void pages_release(void) {
  int fd = atomic_exchange(&maps_fd, -2);
  if (fd >= 0) close(fd);
}

/*
 * The VMA covering addr, or the next one above it, into *q. Returns 0, or
 * an errno: ENOENT when there is none, ENOTTY when PROCMAP_QUERY is missing.
 */
static int query_vma(uint64_t addr, struct wc_procmap_query *q) {
  if (atomic_load(&procmap_state) < 0) return ENOTTY;
  int fd = get_maps_fd();
  if (fd < 0) {
    /* No /proc/self/maps: as if the kernel lacked PROCMAP_QUERY (the descriptor, once open, is kept for good). */
    int unknown = 0;
    atomic_compare_exchange_strong(&procmap_state, &unknown, -1);
    return ENOTTY;
  }
  for (;;) {
    memset(q, 0, sizeof *q);
    q->size = sizeof *q;
    q->query_flags = WC_COVERING_OR_NEXT_VMA;
    q->query_addr = addr;
    if (ioctl(fd, WC_PROCMAP_QUERY, q) == 0) {
      if (atomic_load_explicit(&procmap_state, memory_order_relaxed) != 1) atomic_store(&procmap_state, 1);
      return 0;
    }
    int err = errno;
    if (err == EINTR) continue;
    if (err == ENOTTY) {
      int unknown = 0; /* only a kernel that never answered lacks it */
      atomic_compare_exchange_strong(&procmap_state, &unknown, -1);
    }
    return err;
  }
}

static int is_file_vma(const struct wc_procmap_query *q) {
  return q->inode != 0 || q->dev_major != 0 || q->dev_minor != 0;
}

static int vma_prot(const struct wc_procmap_query *q) {
  return ((q->vma_flags & WC_VMA_READABLE) ? PROT_READ : 0) | ((q->vma_flags & WC_VMA_WRITABLE) ? PROT_WRITE : 0) |
         ((q->vma_flags & WC_VMA_EXECUTABLE) ? PROT_EXEC : 0);
}

/*
 * Walks the pages of [start, end) that PAGEMAP_SCAN reports holding a frame
 * (present or swapped) and none of the `clean` categories, calling
 * visit(from, to, ctx) for each run of them, in order. The kernel's answer
 * is believed only as it should be: at most the regions asked for, in order,
 * disjoint, inside the range, and the walk making progress. Returns 0, or -1
 * (no scan, it failed, an answer not believed, or visit returned nonzero).
 */
static int walk_frames(uint64_t start, uint64_t end, uint64_t clean, int (*visit)(uint64_t from, uint64_t to, void *ctx), void *ctx) {
  int pm = scan_fd();
  if (pm < 0) return -1;
  struct wc_page_region regions[WC_SCAN_REGIONS];
  struct wc_pm_scan_arg arg;
  scan_query(&arg, start, end, regions, clean);
  uint64_t last = start;
  for (;;) {
    int n = scan_pages(pm, &arg);
    if (n < 0 || n > WC_SCAN_REGIONS) return -1;
    for (int i = 0; i < n; i++) {
      if (regions[i].start < last || regions[i].end > end || regions[i].start >= regions[i].end) return -1;
      if (visit(regions[i].start, regions[i].end, ctx) != 0) return -1;
      last = regions[i].end;
    }
    if (n < WC_SCAN_REGIONS || arg.walk_end >= end) return 0;
    if (arg.walk_end <= arg.start) return -1; /* no progress: never loop */
    arg.start = arg.walk_end;
  }
}

struct classify_ctx {
  uint64_t range_start;
  uint8_t *out;
  int64_t found;
};

/* Reads each page of a run with a frame: one holding a non-zero byte is marked. */
static int classify_run(uint64_t from, uint64_t to, void *ctx) {
  struct classify_ctx *c = ctx;
  for (uint64_t p = from; p < to; p += page_size) {
    if (!page_is_zero((const uint8_t *)(uintptr_t)p)) {
      c->out[(p - c->range_start) / page_size] = 1;
      c->found++;
    }
  }
  return 0;
}

/*
 * Classifies [start, end) of one anonymous read-write mapping: pages with a
 * frame (present or swapped, but not the zero page) are read; the others
 * hold zeros. Returns the non-zero pages found, or -1 (no scan, or it failed).
 */
static int64_t classify_anonymous(uint64_t start, uint64_t end, uint64_t range_start, uint8_t *out) {
  struct classify_ctx c = {range_start, out, 0};
  return walk_frames(start, end, WC_PAGE_IS_PFNZERO, classify_run, &c) < 0 ? -1 : c.found;
}

/* Classifies [addr, addr+length); see nonZeroPages. */
static int64_t classify(uint8_t *addr, uint64_t length, uint8_t *out) {
  uint64_t start = (uintptr_t)addr, end = start + length, cur = start;
  int64_t nonzero = 0;
  memset(out, 0, (size_t)(length / page_size));
  while (cur < end) {
    struct wc_procmap_query q;
    if (query_vma(cur, &q) != 0) return -1;
    if (q.vma_start > cur || q.vma_end <= cur) return -1; /* a hole inside a live memory: cannot be */
    uint64_t e = q.vma_end < end ? q.vma_end : end;
    int anonymous_rw = !is_file_vma(&q) && !(q.vma_flags & WC_VMA_SHARED) &&
                       (q.vma_flags & (WC_VMA_READABLE | WC_VMA_WRITABLE)) == (WC_VMA_READABLE | WC_VMA_WRITABLE);
    if (anonymous_rw) {
      int64_t n = classify_anonymous(cur, e, start, out);
      if (n < 0) return -1;
      nonzero += n;
    } else {
      /* A file mapping (ours or anyone's), or memory we may not read: never zero. */
      memset(out + (cur - start) / page_size, 1, (size_t)((e - cur) / page_size));
      nonzero += (int64_t)((e - cur) / page_size);
    }
    cur = e;
  }
  return nonzero;
}

/* nonZeroPages(memory, offset, length, out: Uint8Array) -> number (see the top). */
napi_value non_zero_pages(napi_env env, napi_callback_info info) {
  napi_value argv[4], result;
  uint8_t *addr;
  uint64_t length;
  size_t argc = 4;
  if (!get_memory_range(env, info, 3, argv, 0, &addr, &length)) return NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  bool is_typed = false;
  napi_typedarray_type type;
  size_t out_length = 0, byte_offset = 0;
  void *out = NULL;
  napi_value ab;
  if (argc < 4 || napi_is_typedarray(env, argv[3], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[3], &type, &out_length, &out, &ab, &byte_offset) != napi_ok ||
      type != napi_uint8_array) {
    return throw_arg(env, 0, "out must be a Uint8Array");
  }
  if (out_length < length / page_size) return throw_arg(env, 1, "out must hold one byte per page of the range");
  /* The memory was resolved before `out` was read: reading `out` runs no JS, so the memory cannot have moved. */
  double count = 0;
  if (length > 0) {
    if (out == NULL) return throw_arg(env, 0, "out is detached");
    int64_t n = classify(addr, length, (uint8_t *)out);
    count = n < 0 ? -1 : (double)n;
  }
  if (napi_create_double(env, count, &result) != napi_ok) return NULL;
  return result;
}

/* Adds a run's pages to the count. */
static int count_run(uint64_t from, uint64_t to, void *ctx) {
  *(int64_t *)ctx += (int64_t)((to - from) / page_size);
  return 0;
}

/*
 * Pages of [start, end) that hold an anonymous frame of their own (present
 * or swapped: written, or filled with zeros by the program), without reading
 * them; neither the shared zero page nor file pages count. -1 when the scan
 * cannot be used or fails.
 */
static int64_t count_present(uint64_t start, uint64_t end) {
  int64_t pages = 0;
  return walk_frames(start, end, WC_PAGE_IS_PFNZERO | WC_PAGE_IS_FILE, count_run, &pages) < 0 ? -1 : pages;
}

/* presentPages(memory, offset, length) -> number (see count_present), -1 when unknown. */
napi_value present_pages(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  uint8_t *addr;
  uint64_t length;
  if (!get_memory_range(env, info, 3, argv, 0, &addr, &length)) return NULL;
  int64_t n = length > 0 ? count_present((uintptr_t)addr, (uintptr_t)addr + length) : 0;
  if (napi_create_double(env, n < 0 ? -1 : (double)n, &result) != napi_ok) return NULL;
  return result;
}

/* Throws Error(message) with code, errno, syscall, and whether the range holds zero pages again. */
static napi_value throw_map_error(napi_env env, int err, int zeroed) {
  napi_value error, v;
  bool pending = false;
  throw_errno(env, "mmap", err);
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return NULL;
  if (napi_get_and_clear_last_exception(env, &error) != napi_ok) return NULL;
  if (napi_get_boolean(env, zeroed, &v) == napi_ok) napi_set_named_property(env, error, "zeroed", v);
  napi_throw(env, error);
  return NULL;
}

/* mapImageAt(memory, fd, offset, length, fileOffset): see the top. */
napi_value map_image_at(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc = 5;
  uint8_t *addr;
  uint64_t length, image_length, file_offset, gen;
  int fd;
  if (!get_memory_range(env, info, 4, argv, 0, &addr, &length)) return NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 5) return throw_arg(env, 0, "missing arguments");
  if (!get_image_fd(env, argv[1], &fd, &image_length, &gen)) return NULL;
  if (!get_page_aligned(env, argv[4], "fileOffset", &file_offset)) return NULL;
  if (file_offset > image_length || length > image_length - file_offset) {
    return throw_arg(env, 1, "[fileOffset, fileOffset + length) exceeds the image's length");
  }
  if (length == 0) return NULL;
  int err = 0;
  if (fault_fires(FAULT_MMAP)) {
    err = ENOMEM;
  } else {
    /* Through the table: only while fd still names the image (else WC_EREPLACED, nothing mapped). */
    err = table_map(fd, gen, addr, length, file_offset, PROT_READ | PROT_WRITE);
  }
  if (err == 0) return NULL;
  /* The range held zeros (the caller checked): fresh anonymous pages restore exactly that. */
  void *z = mmap(addr, (size_t)length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  int zeroed = z == (void *)addr;
  if (!zeroed) mmap(addr, (size_t)length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  return throw_map_error(env, err, zeroed);
}

/*
 * See wasm_cow.h. Walks the VMAs over [base, base+length) (three for a clean
 * slot with an image inside the memory: anonymous, the image, anonymous)
 * and replaces what is not as a clean slot has it, keeping each VMA's
 * protection and never unmapping:
 *   inside [image_offset, +image_length): anything but the slot's image
 *     (same file, private, at the matching file offset) -> the slot's image;
 *   elsewhere: any file or shared mapping -> anonymous zero pages.
 */
int pages_normalize(uint8_t *base, uint64_t length, int fd, uint64_t gen, uint64_t image_offset, uint64_t image_length) {
  /*
   * Without PROCMAP_QUERY, nonZeroPages answers -1 and the engine never maps
   * an image into a memory but a pooled slot's own at its own offset: no
   * other file mapping can be in a memory, and there is nothing to do.
   */
  if (atomic_load(&procmap_state) < 0) return 0;
  file_id own = {0, 0};
  int have_own = fd >= 0 && image_length > 0 && table_file_id(fd, gen, &own);
  uint64_t start = (uintptr_t)base, end = start + length, cur = start;
  uint64_t is = start + image_offset, ie = is + image_length;
  while (cur < end) {
    struct wc_procmap_query q;
    int err = query_vma(cur, &q);
    if (err == ENOTTY && atomic_load(&procmap_state) < 0) return 0; /* the kernel lacks it (see above) */
    if (err != 0) return err;
    if (q.vma_start > cur || q.vma_end <= cur) return EFAULT; /* a hole inside a live memory: cannot be */
    uint64_t e = q.vma_end < end ? q.vma_end : end;
    int file = is_file_vma(&q), shared = (q.vma_flags & WC_VMA_SHARED) != 0, prot = vma_prot(&q);
    /* Cut [cur, e) at the image's bounds: each part lies wholly inside it or wholly outside. */
    uint64_t cuts[4] = {cur, e, e, e};
    int n = 1;
    if (is > cur && is < e) cuts[n++] = is;
    if (ie > cur && ie < e) cuts[n++] = ie;
    cuts[n] = e;
    for (int i = 0; i < n; i++) {
      uint64_t s = cuts[i], t = cuts[i + 1];
      if (s >= t) continue;
      int inside = s >= is && t <= ie;
      if (inside) {
        int ok = file && !shared && have_own && makedev(q.dev_major, q.dev_minor) == own.dev && q.inode == own.ino &&
                 q.vma_offset + (s - q.vma_start) == s - is;
        if (!ok) {
          err = table_map(fd, gen, (uint8_t *)(uintptr_t)s, t - s, s - is, prot);
          if (err != 0) return err;
        }
      } else if (file || shared) {
        if (fault_fires(FAULT_MMAP)) return ENOMEM;
        void *p = mmap((void *)(uintptr_t)s, (size_t)(t - s), prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        if (p != (void *)(uintptr_t)s) {
          err = p == MAP_FAILED ? errno : EFAULT;
          mmap((void *)(uintptr_t)s, (size_t)(t - s), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
          return err;
        }
      }
    }
    cur = e;
  }
  return 0;
}

/* Counts the VMAs over [start, end), up to limit; -1 when unknown. */
static int64_t count_vmas(uint64_t start, uint64_t end, int64_t limit) {
  int64_t n = 0;
  uint64_t cur = start;
  while (cur < end && n < limit) {
    struct wc_procmap_query q;
    int err = query_vma(cur, &q);
    if (err == ENOENT) break;
    if (err != 0) return -1;
    if (q.vma_start >= end) break;
    if (q.vma_end <= cur) return -1; /* no progress: never loop */
    n++;
    cur = q.vma_end;
  }
  return n;
}

static int get_limit(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 1e9) {
    throw_arg(env, 1, "limit must be a number in [0, 1e9]");
    return 0;
  }
  *out = (int64_t)d;
  return 1;
}

/* mappingCount(memory, limit) -> number (see the top). */
napi_value mapping_count(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  size_t argc = 2;
  uint8_t *base;
  uint64_t byte_length;
  int64_t limit;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) return throw_arg(env, 0, "missing arguments");
  if (!get_limit(env, argv[1], &limit)) return NULL;
  if (!get_memory(env, argv[0], &base, &byte_length)) return NULL;
  int64_t n = byte_length == 0 ? 0 : count_vmas((uintptr_t)base, (uintptr_t)base + byte_length, limit);
  if (napi_create_double(env, (double)n, &result) != napi_ok) return NULL;
  return result;
}

/* processMappings(limit) -> number (see the top). */
napi_value process_mappings(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  size_t argc = 1;
  int64_t limit;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) return throw_arg(env, 0, "missing arguments");
  if (!get_limit(env, argv[0], &limit)) return NULL;
  int64_t n = count_vmas(0, UINT64_MAX, limit);
  if (napi_create_double(env, (double)n, &result) != napi_ok) return NULL;
  return result;
}
