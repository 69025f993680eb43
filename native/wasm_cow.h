/*
 * What the addon's files share. Not an API: the files are one addon
 * (binding.gyp builds them into wasm_cow.node), split by concern so that a
 * reader finds each by name; this header only lets each use what another
 * defines. Each section below lists what one file defines:
 *
 *   wasm_cow.c     Node-API glue: the rules every entry point follows (at its
 *                  top), argument checks and errors, createImage, closeImage,
 *                  openImages, environments, module init
 *   image_table.c  the process-wide table of images, by fd
 *   reset.c        mapping into a memory, the dirty-page scan, the reset
 *   reset_queue.c  each environment's reset queue and its thread
 *   pages.c        what backs each page (PROCMAP_QUERY, PAGEMAP_SCAN), and
 *                  the reset's mapping walk
 *   fault.c        fault injection (tests)
 *
 * Entry points (napi_value f(napi_env, napi_callback_info)) are registered
 * by wasm_cow.c's module init, whichever file defines them.
 */
#ifndef WASM_COW_H
#define WASM_COW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/types.h>

#include <node_api.h>

/* Internal to the addon: never exported (a name like `page_size` would
   otherwise bind to any symbol of that name the process already has). */
#pragma GCC visibility push(hidden)

/* ---- defined in wasm_cow.c ---- */

/* Host page size (set once when the addon loads). */
extern size_t page_size;
/* Whether the page_size bytes at p (any alignment) hold only zero bytes. */
int page_is_zero(const uint8_t *p);

/* Argument checks, exactly as every entry point applies them (see wasm_cow.c). */
int get_size(napi_env env, napi_value value, const char *what, uint64_t *out);
int get_page_aligned(napi_env env, napi_value value, const char *what, uint64_t *out);
int get_image_fd(napi_env env, napi_value value, int *fd, uint64_t *length, uint64_t *gen);
/*
 * Resolves a WebAssembly.Memory to its current base address and byte
 * length, through the genuine getter. Throws (returns 0) for anything else.
 */
int get_memory(napi_env env, napi_value memory, uint8_t **base, uint64_t *byte_length);
int get_memory_range(napi_env env, napi_callback_info info, size_t expected, napi_value *argv, size_t memory_arg,
                     uint8_t **addr, uint64_t *length);
napi_value throw_arg(napi_env env, int range, const char *msg);
napi_value throw_errno(napi_env env, const char *syscall, int err);

typedef struct reset_queue reset_queue;

/* Per environment (napi instance data), from module init to free_addon_data. */
typedef struct {
  /* The genuine WebAssembly.Memory.prototype.buffer getter (per env). */
  napi_ref buffer_getter;
  reset_queue *queue; /* made by resetInit, freed with the environment */
  uint64_t id;        /* this environment's env_acquire id: owner of the images it creates */
} addon_data;

/* ---- defined in image_table.c ---- */

/*
 * Not an errno (those stay below 4096): the image's fd number no longer
 * names its memfd (other code in the process closed it, and the number may
 * name another file now). Nothing was mapped or read; throw_errno reports it
 * with code ERR_WASM_COW_IMAGE_FD_REPLACED.
 */
#define WC_EREPLACED 0x10000

/* The file an image was made from: (st_dev, st_ino) of its memfd. */
typedef struct {
  dev_t dev;
  ino_t ino;
} file_id;

/* A hash of `length` bytes (a multiple of 32): a filter for images of equal content. */
uint64_t content_hash(const uint8_t *p, uint64_t length);
/*
 * The fd of a live image holding exactly `bytes` (`length` of them, hash
 * `hash`), with one more hold counted for `owner`; -1 when there is none.
 */
int table_share(uint64_t length, uint64_t hash, const uint8_t *bytes, uint64_t owner);
/*
 * Adds image fd (held once by `owner`, never 0) with a new generation: 1.
 * 2 when a live image of the same `bytes` appeared meanwhile: a hold on it
 * is counted and *shared is its fd (the caller closes its own fd and view).
 * 0 when out of memory.
 */
int table_add(int fd, uint64_t length, const uint8_t *view, uint64_t owner, file_id id, uint64_t hash, const uint8_t *bytes,
              int *shared);
/* Returns 1, the image length and generation when fd is a live image that `owner` holds. */
int table_find(int fd, uint64_t owner, uint64_t *length, uint64_t *gen);
/* Copies image bytes [off, off+len) of image (fd, gen) to dst (see image_table.c). */
int table_restore(int fd, uint64_t gen, uint8_t *dst, uint64_t off, uint64_t len);
/* 1 and the image's file id when (fd, gen) names a live image. */
int table_file_id(int fd, uint64_t gen, file_id *id);
/*
 * Maps image (fd, gen)'s bytes [file_offset, +length) MAP_PRIVATE|MAP_FIXED
 * at addr with `prot`, holding the table lock so the fd stays the image's.
 * Returns 0 or an errno (EBADF: the image is closed; nothing was mapped),
 * or WC_EREPLACED (the fd no longer names the image; nothing was mapped).
 * When the mmap itself fails the range is covered with an inaccessible
 * anonymous mapping.
 */
int table_map(int fd, uint64_t gen, uint8_t *addr, uint64_t length, uint64_t file_offset, int prot);
/* Drops one hold of `owner` on image fd, closing it with its last: 0 none held, 1 dropped, 2 dropped and closed. */
int table_remove(int fd, uint64_t owner);
/* Drops every hold `owner` has, closing the images it held last (its environment's teardown). */
void table_close_owned(uint64_t owner);
/* Pins image (fd, gen) open for a queued reset: 1, or 0 when it is not open. */
int table_pin(int fd, uint64_t gen);
/* Undoes one table_pin; closes the image when nothing holds or pins it any more. */
void table_unpin(int fd, uint64_t gen);
/* The number of images created and not yet closed. */
size_t table_open_count(void);
/* Frees the table's array when it holds no image (the last environment ended). */
void table_release(void);

/* ---- defined in reset.c ---- */

/* Re-covers a range whose MAP_FIXED mapping failed, so no hole is left. */
void recover_range(uint8_t *addr, size_t length);

/*
 * PAGEMAP_SCAN (Linux 6.7, linux/fs.h), under our own names: the system
 * headers may lack it, and these never clash with theirs.
 */
struct wc_page_region {
  uint64_t start, end, categories;
};
struct wc_pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
_Static_assert(sizeof(struct wc_page_region) == 24, "struct page_region is 24 bytes");
_Static_assert(sizeof(struct wc_pm_scan_arg) == 96, "struct pm_scan_arg is 96 bytes");
#define WC_PAGEMAP_SCAN _IOWR('f', 16, struct wc_pm_scan_arg)
#define WC_PAGE_IS_FILE (1ULL << 2)
#define WC_PAGE_IS_PRESENT (1ULL << 3)
#define WC_PAGE_IS_SWAPPED (1ULL << 4)
#define WC_PAGE_IS_PFNZERO (1ULL << 5)
/* The regions one scan call fills at most: every scan's `regions` holds this many. */
#define WC_SCAN_REGIONS 64

/*
 * The scan, process-wide (see reset.c): /proc/self/pagemap opened once, and
 * one flag that turns the scan off for every thread when the kernel lacks it.
 *
 * scan_fd: the descriptor to scan with when the scan may be used now, else
 * -1 (no /proc/self/pagemap, the kernel lacks the scan, or the injected
 * fault FAULT_PAGEMAP_SCAN fires, which this consumes). Call it once per
 * scan, before its first scan_pages.
 */
int scan_fd(void);
/*
 * Fills *arg to find the pages of [start, end) that hold a frame (present or
 * swapped) and are in none of the categories `clean`, into `regions`
 * (WC_SCAN_REGIONS of them); no limit on pages (max_pages 0).
 */
void scan_query(struct wc_pm_scan_arg *arg, uint64_t start, uint64_t end, struct wc_page_region *regions,
                uint64_t clean);
/*
 * PAGEMAP_SCAN of *arg on fd (from scan_fd), retried on EINTR. Returns the
 * regions filled, or -1 with errno set: ENOTTY (the kernel lacks the scan)
 * turns the scan off for the process; any other error, EINVAL included
 * (the probe at open found the kernel takes our arguments), fails this
 * call only.
 */
int scan_pages(int fd, struct wc_pm_scan_arg *arg);
/* Opens /proc/self/pagemap and probes the scan, at load (again at the first use after pagemap_release). */
void pagemap_init(void);
/* Closes it; called with the last environment (env_release), when no thread can use it. */
void pagemap_release(void);

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

/* Returns [0, length) to its clean state (see reset.c); 0 or an errno. */
int reset_pages(const reset_args *a, double *restored);
/* Reads (memory, length, fd, imageOffset, imageLength, keep) from argv[0..5] (see reset.c). */
int get_reset_args(napi_env env, napi_value *argv, reset_args *a, int *grown);

/* Entry points. */
napi_value map_image(napi_env env, napi_callback_info info);
napi_value map_zero(napi_env env, napi_callback_info info);
napi_value discard(napi_env env, napi_callback_info info);
napi_value reset_range(napi_env env, napi_callback_info info);
napi_value touched_pages(napi_env env, napi_callback_info info);
napi_value resident_pages(napi_env env, napi_callback_info info);

/* ---- defined in reset_queue.c ---- */

/* Deletes the memory references and image pins of finished jobs, oldest first; with `all`, also those behind a running one (JS thread). */
void reap_jobs(napi_env env, reset_queue *q, int all);
/* Stops the thread and drops every reference (environment teardown). */
void reset_queue_free(napi_env env, reset_queue *q);

/* Entry points. */
napi_value reset_init(napi_env env, napi_callback_info info);
napi_value reset_begin(napi_env env, napi_callback_info info);
napi_value reset_wait(napi_env env, napi_callback_info info);
napi_value reset_reap(napi_env env, napi_callback_info info);

/* ---- defined in pages.c ---- */

/*
 * The reset's first step: makes [base, base+length) backed as a clean slot
 * must be: the slot's own image (fd, gen) at the right file offsets over
 * [image_offset, +image_length), anonymous memory elsewhere. Any other
 * mapping there is replaced. Returns 0 or an errno (the caller must then
 * not reuse the memory).
 */
int pages_normalize(uint8_t *base, uint64_t length, int fd, uint64_t gen, uint64_t image_offset, uint64_t image_length);

/* Opens /proc/self/maps and /proc/self/pagemap (once per process; kept open) and probes the scan: at load. */
void pages_init(void);
void pages_release(void);

/* Entry points. */
napi_value non_zero_pages(napi_env env, napi_callback_info info);
napi_value map_image_at(napi_env env, napi_callback_info info);
napi_value present_pages(napi_env env, napi_callback_info info);
napi_value mapping_count(napi_env env, napi_callback_info info);
napi_value process_mappings(napi_env env, napi_callback_info info);

/* ---- defined in fault.c ---- */

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

/*
 * 0, or 1 once any load of the addon in this process (the main thread or
 * any worker: module init runs per environment) saw
 * WASM_COW_FAULT_INJECTION=1. Never back to 0 while the addon is loaded, so
 * from then on fault injection is on for every environment, including ones
 * that loaded without the variable. Atomic: module init writes it on any
 * JS thread while reset threads read it.
 */
extern _Atomic int fault_enabled;

/* Returns 1 when `step` must fail now (and disarms the fault). */
int fault_fires(enum fault_step step);

/* Entry point. */
napi_value set_fault(napi_env env, napi_callback_info info);

#pragma GCC visibility pop

#endif
