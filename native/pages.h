/*
 * What native/wasm_cow.c and native/pages.c share. Not an API: both files
 * are one addon; this header only lets pages.c reuse wasm_cow.c's argument
 * checks and image table, and wasm_cow.c call pages.c's reset step.
 */
#ifndef WASM_COW_PAGES_H
#define WASM_COW_PAGES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <node_api.h>

/* Internal to the addon: never exported (a name like `page_size` would
   otherwise bind to any symbol of that name the process already has). */
#pragma GCC visibility push(hidden)

/* ---- defined in wasm_cow.c ---- */

/* Host page size (set once when the addon loads). */
extern size_t page_size;

/* Argument checks, exactly as every entry point applies them (see wasm_cow.c). */
int get_size(napi_env env, napi_value value, const char *what, uint64_t *out);
int get_page_aligned(napi_env env, napi_value value, const char *what, uint64_t *out);
int get_image_fd(napi_env env, napi_value value, int *fd, uint64_t *length, uint64_t *gen);
int get_memory_range(napi_env env, napi_callback_info info, size_t expected, napi_value *argv, size_t memory_arg,
                     uint8_t **addr, uint64_t *length);
napi_value throw_arg(napi_env env, int range, const char *msg);
napi_value throw_errno(napi_env env, const char *syscall, int err);

/* /proc/self/pagemap, opened once (-1 when unavailable). */
int get_pagemap_fd(void);

/* Fault injection (tests): whether the named step must fail now. */
int fault_mmap(void);
int fault_pagemap_scan(void);

/* The file an image was made from: (st_dev, st_ino) of its memfd. */
typedef struct {
  dev_t dev;
  ino_t ino;
} file_id;

/* 1 and the image's file id when (fd, gen) names a live image. */
int table_file_id(int fd, uint64_t gen, file_id *id);
/*
 * Maps image (fd, gen)'s bytes [file_offset, +length) MAP_PRIVATE|MAP_FIXED
 * at addr with `prot`, holding the table lock so the fd stays the image's.
 * Returns 0 or an errno (EBADF: the image is closed; nothing was mapped).
 * When the mmap itself fails the range is covered with an inaccessible
 * anonymous mapping.
 */
int table_map(int fd, uint64_t gen, uint8_t *addr, uint64_t length, uint64_t file_offset, int prot);

/* ---- defined in pages.c ---- */

/*
 * The reset's first step: makes [base, base+length) backed as a clean slot
 * must be: the slot's own image (fd, gen) at the right file offsets over
 * [image_offset, +image_length), anonymous memory elsewhere. Any other
 * mapping there is replaced. Returns 0 or an errno (the caller must then
 * not reuse the memory).
 */
int pages_normalize(uint8_t *base, uint64_t length, int fd, uint64_t gen, uint64_t image_offset, uint64_t image_length);

/* Opens /proc/self/maps and /proc/self/pagemap (once per process; kept open): at load. */
void pages_init(void);
void pages_release(void);

/* Entry points (registered by wasm_cow.c). */
napi_value non_zero_pages(napi_env env, napi_callback_info info);
napi_value map_image_at(napi_env env, napi_callback_info info);

#pragma GCC visibility pop

#endif
