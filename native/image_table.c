/*
 * The process-wide table of the images this addon created (sealed memfds),
 * indexed by fd, under one read-write lock: ownership by environment,
 * generations, file ids, the restore and map helpers the reset uses
 * (reset.c, pages.c), and closing an environment's images at its teardown.
 * The entry points that create, close and count images are in wasm_cow.c.
 *
 * Invariants (each variable below says its own): an entry is live iff its
 * length is non-zero, and all zero (gen and file id too) when not; a live
 * entry's fd is open, sealed at that length, and owned by a non-zero
 * environment id; no two images ever share a generation. Every read of an
 * entry holds the lock (shared), every write holds it exclusively, so an
 * image cannot be closed, nor its view unmapped, nor its fd number reused,
 * while any thread uses it through this table.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "wasm_cow.h"

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

/* Guards every variable below (and the entries table points to). */
static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;
static image_entry *table = NULL; /* table[fd], for 0 <= fd < table_cap */
/* 0 (table NULL), or 64 times a power of two, above every fd in the table. */
static size_t table_cap = 0;
/* The number of live entries (length != 0). */
static size_t table_live = 0;
/* The last generation given out; only grows while the addon is loaded. */
static uint64_t table_gen = 0;

int table_add(int fd, uint64_t length, const uint8_t *view, uint64_t owner, file_id id) {
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
int table_find(int fd, uint64_t owner, uint64_t *length, uint64_t *gen) {
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
int table_restore(int fd, uint64_t gen, uint8_t *dst, uint64_t off, uint64_t len) {
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

int table_map(int fd, uint64_t gen, uint8_t *addr, uint64_t length, uint64_t file_offset, int prot) {
  int err = EBADF;
  pthread_rwlock_rdlock(&table_lock);
  const image_entry *e = fd >= 0 && (size_t)fd < table_cap ? &table[fd] : NULL;
  if (e != NULL && e->length != 0 && e->gen == gen) {
    if (file_offset > e->length || length > e->length - file_offset) {
      err = EINVAL;
    } else if (fault_fires(FAULT_MMAP)) {
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

int table_remove(int fd, uint64_t owner, const uint8_t **view, uint64_t *length) {
  int found = 0;
  pthread_rwlock_wrlock(&table_lock);
  if (fd >= 0 && (size_t)fd < table_cap && table[fd].length != 0 && table[fd].owner == owner) {
    *view = table[fd].view;
    *length = table[fd].length;
    memset(&table[fd], 0, sizeof table[fd]); /* as table_close_owned: a freed entry is all zero */
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
void table_close_owned(uint64_t owner) {
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

/* The number of images created and not yet closed (openImages). */
size_t table_open_count(void) {
  size_t live;
  pthread_rwlock_rdlock(&table_lock);
  live = table_live;
  pthread_rwlock_unlock(&table_lock);
  return live;
}

/* Frees the table's array; called with the last environment (env_release). */
void table_release(void) {
  pthread_rwlock_wrlock(&table_lock);
  if (table_live == 0) { /* always, as every environment closed its own */
    free(table);
    table = NULL;
    table_cap = 0;
  }
  pthread_rwlock_unlock(&table_lock);
}
