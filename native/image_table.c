/*
 * The process-wide table of the images this addon created (sealed memfds),
 * indexed by fd, under one read-write lock: ownership by environment
 * (shared, counted), content lookup, generations, file ids, the restore and
 * map helpers the reset uses (reset.c, pages.c), and closing an
 * environment's images at its teardown. The entry points that create,
 * close and count images are in wasm_cow.c.
 *
 * Invariants (each variable below says its own): an entry is live iff its
 * length is non-zero, and all zero (gen, file id, holds too) when not; a
 * live entry's fd is open, sealed at that length, and held by at least one
 * environment (each with a count of at least 1) or pinned by a queued reset; no two images ever share a
 * generation, nor their bytes. Every read of an
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
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "wasm_cow.h"

/* ------------------------------------------------------------------ */
/* The table of images this addon created, indexed by fd.             */
/* Process-wide (worker threads share fds), under a read-write lock:  */
/* lookups and restores (JS threads, reset threads) share it; only    */
/* adding and removing an image take it exclusively.                  */
/*                                                                    */
/* Ownership: an image is held by the environments (the napi_env of  */
/* the main thread or a worker that loaded us; see env_acquire) whose */
/* createImage returned its fd, each as many times as it did. One     */
/* image per content: createImage of bytes equal to a live image's    */
/* (same length and hash, then compared byte for byte with its file)  */
/* returns that image's fd and counts one more hold, in whichever     */
/* environment made it. Only a holder may map it, reset from it or    */
/* close it: to any other its fd is not an image (a number it may     */
/* have had from anywhere, or an fd the kernel handed out again).     */
/* closeImage drops one hold of the calling environment; a teardown   */
/* (free_addon_data, after that environment's reset thread was        */
/* joined) drops all of its holds. The image (fd and view) is closed  */
/* with its last hold, unless a queued reset still names it: each     */
/* queued reset pins its image (fd, gen) until it is reaped, so the   */
/* image stays open for it (table_pin). Every restore also names its  */
/* image by (fd, gen): a closed one is found nowhere (EBADF), never   */
/* confused with another image that got the same fd number.          */
/* Trusting the number alone is not enough: other code in the process may */
/* close our fd by mistake (a double close) and the kernel then hands    */
/* the number to the next file it opens. Every use of an image's fd     */
/* itself (mmap, pread, close) first checks that the number still names */
/* the image's memfd: the (st_dev, st_ino) recorded at creation (fstat, */
/* fd_is_image). When it does not, the fd is not ours any more: nothing */
/* is mapped or read from it (WC_EREPLACED), and it is never closed (the */
/* entry forgets it when its last hold goes). Restores read the view, a */
/* mapping of the memfd itself, and stay exact. Pooled reuse touches no */
/* fd, so the check (one fstat) is paid only where an fd is used.       */
/* ------------------------------------------------------------------ */

/* One environment's holds on an image. */
typedef struct {
  uint64_t env;   /* its env_acquire id, never 0 */
  uint64_t count; /* createImage results not yet closed, >= 1 */
} image_hold;

typedef struct {
  uint64_t length; /* sealed file length, a multiple of the page size; 0: no image at this fd */
  /* Unique per createImage (never reused, unlike fd numbers): a queued
     reset names its image by (fd, gen), so a closed fd that the kernel
     hands out again is never mistaken for the image it replaced. */
  uint64_t gen;
  /* A read-only shared view of the whole image, to restore pages from
     without a system call; NULL when it could not be mapped (pread then). */
  const uint8_t *view;
  /* The holders: holds[0, n_holds), distinct environments. */
  image_hold *holds;
  uint32_t n_holds, cap_holds;
  /* Queued resets naming this image (table_pin): they keep it open. Live iff n_holds + pins > 0. */
  uint64_t pins;
  /* content_hash() of the image's bytes: candidates for sharing (then compared byte for byte). */
  uint64_t hash;
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

/*
 * A hash of `length` bytes (a multiple of 32): four 64-bit lanes, so that
 * it runs at memory speed. Only a filter: sharing always compares the
 * bytes themselves.
 */
uint64_t content_hash(const uint8_t *p, uint64_t length) {
  uint64_t h[4] = {0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL, 0x165667b19e3779f9ULL, 0x27d4eb2f165667c5ULL};
  for (uint64_t i = 0; i + 32 <= length; i += 32) {
    for (int k = 0; k < 4; k++) {
      uint64_t w;
      memcpy(&w, p + i + 8 * k, sizeof w);
      h[k] = (h[k] ^ w) * 0x100000001b3ULL;
      h[k] ^= h[k] >> 29;
    }
  }
  uint64_t out = length;
  for (int k = 0; k < 4; k++) out = (out ^ h[k]) * 0xff51afd7ed558ccdULL, out ^= out >> 33;
  return out;
}

/* The index of `env`'s holds in e, or -1. Lock held. */
static int64_t hold_index(const image_entry *e, uint64_t env) {
  for (uint32_t i = 0; i < e->n_holds; i++)
    if (e->holds[i].env == env) return i;
  return -1;
}

/* Counts one more hold of `env` on live entry e; 0 when out of memory (nothing changed). Lock held exclusively. */
static int hold_add(image_entry *e, uint64_t env) {
  int64_t i = hold_index(e, env);
  if (i >= 0) {
    if (e->holds[i].count == UINT64_MAX) return 0;
    e->holds[i].count++;
    return 1;
  }
  if (e->n_holds == e->cap_holds) {
    uint32_t cap = e->cap_holds ? e->cap_holds * 2 : 4;
    if (cap <= e->cap_holds) return 0; /* cannot happen below 2^31 environments */
    image_hold *grown = realloc(e->holds, (size_t)cap * sizeof *grown);
    if (grown == NULL) return 0;
    e->holds = grown;
    e->cap_holds = cap;
  }
  e->holds[e->n_holds++] = (image_hold){env, 1};
  return 1;
}

/*
 * Whether fd still names the memfd of entry e (its recorded (st_dev,
 * st_ino)): 0 when other code closed our fd and the number went to another
 * file (or to nothing). Lock held (shared at least).
 */
static int fd_is_image(int fd, const image_entry *e) {
  struct stat st;
  return fstat(fd, &st) == 0 && st.st_dev == e->id.dev && st.st_ino == e->id.ino;
}

/*
 * Whether live entry `fd` holds exactly `bytes` (`length` of them, hash
 * `hash`). The file is read with pread, not through the view: reading the
 * view would map the whole image into this process (counted in its RSS)
 * for a comparison. Lock held (shared at least), so the fd is the image's.
 */
static int same_bytes(int fd, uint64_t length, uint64_t hash, const uint8_t *bytes) {
  const image_entry *e = &table[fd];
  if (e->length == 0 || e->length != length || e->hash != hash) return 0;
  if (!fd_is_image(fd, e)) return 0; /* the number names another file now: never read it, never share */
  uint8_t chunk[16384];
  for (uint64_t off = 0; off < length;) {
    size_t want = length - off < sizeof chunk ? (size_t)(length - off) : sizeof chunk;
    ssize_t n = pread(fd, chunk, want, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0; /* an I/O error: not shared */
    if (memcmp(chunk, bytes + off, (size_t)n) != 0) return 0;
    off += (uint64_t)n;
  }
  return 1;
}

/*
 * Closes live entry `fd` (its last hold is gone) and leaves it all zero.
 * The fd is closed only if it still names the image: a number other code
 * closed and the kernel gave to another file is forgotten, never closed.
 * Lock held exclusively.
 */
static void entry_close(int fd) {
  image_entry *e = &table[fd];
  if (e->view != NULL) munmap((void *)e->view, (size_t)e->length);
  if (fd_is_image(fd, e)) close(fd);
  free(e->holds);
  memset(e, 0, sizeof *e);
  table_live--;
}

/*
 * Looks for a live image holding exactly `bytes` (`length` of them, with
 * content_hash `hash`); when one exists, counts one more hold of `owner`
 * on it and returns its fd. -1 when none (or out of memory): the caller
 * makes its own image. The bytes are compared under the shared lock (the
 * image cannot close meanwhile); the hold is then added under the
 * exclusive lock, if the image (same fd and generation) is still open.
 */
int table_share(uint64_t length, uint64_t hash, const uint8_t *bytes, uint64_t owner) {
  int found = -1;
  uint64_t gen = 0;
  if (length == 0 || owner == 0 || bytes == NULL) return -1;
  pthread_rwlock_rdlock(&table_lock);
  for (size_t fd = 0; fd < table_cap && found < 0; fd++) {
    if (same_bytes((int)fd, length, hash, bytes)) {
      found = (int)fd;
      gen = table[fd].gen;
    }
  }
  pthread_rwlock_unlock(&table_lock);
  if (found < 0) return -1;
  pthread_rwlock_wrlock(&table_lock);
  image_entry *e = &table[found]; /* the array only grows: found < table_cap still */
  if (e->length == 0 || e->gen != gen || !hold_add(e, owner)) found = -1;
  pthread_rwlock_unlock(&table_lock);
  return found;
}

/*
 * Adds image fd (held once by `owner`, never 0) with a new generation.
 * When another thread added an image of the same bytes meanwhile, adds
 * nothing: counts a hold on that one and returns 2 with *shared its fd
 * (the caller closes fd and unmaps view). 1 when added; 0 when out of memory.
 */
int table_add(int fd, uint64_t length, const uint8_t *view, uint64_t owner, file_id id, uint64_t hash, const uint8_t *bytes,
              int *shared) {
  int ok = 1;
  if (fd < 0 || length == 0 || owner == 0) return 0;
  image_hold *holds = malloc(4 * sizeof *holds);
  if (holds == NULL) return 0;
  pthread_rwlock_wrlock(&table_lock);
  if (bytes != NULL) {
    for (size_t i = 0; i < table_cap; i++) {
      if ((int)i != fd && same_bytes((int)i, length, hash, bytes) && hold_add(&table[i], owner)) {
        *shared = (int)i;
        pthread_rwlock_unlock(&table_lock);
        free(holds);
        return 2;
      }
    }
  }
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
  if (ok && table[fd].length != 0) ok = 0; /* cannot happen: the fd was just opened */
  if (ok) {
    table[fd].length = length;
    table[fd].view = view;
    holds[0] = (image_hold){owner, 1};
    table[fd].holds = holds;
    table[fd].n_holds = 1;
    table[fd].cap_holds = 4;
    table[fd].hash = hash;
    table[fd].id = id;
    table[fd].gen = ++table_gen;
    table_live++;
  }
  pthread_rwlock_unlock(&table_lock);
  if (!ok) free(holds);
  return ok;
}

/* Returns 1, the image length and generation when fd is a live image that `owner` holds. */
int table_find(int fd, uint64_t owner, uint64_t *length, uint64_t *gen) {
  int found = 0;
  pthread_rwlock_rdlock(&table_lock);
  if (fd >= 0 && (size_t)fd < table_cap && table[fd].length != 0 && owner != 0 && hold_index(&table[fd], owner) >= 0) {
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
    } else if (!fd_is_image(fd, e)) {
      err = WC_EREPLACED;
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
    } else if (!fd_is_image(fd, e)) {
      err = WC_EREPLACED; /* nothing mapped: the range is as it was */
    } else if (fault_fires(FAULT_MMAP)) {
      err = ENOMEM;
    } else {
      void *p = mmap(addr, (size_t)length, prot, MAP_PRIVATE | MAP_FIXED, fd, (off_t)file_offset);
      err = p == MAP_FAILED ? errno : p != (void *)addr ? EFAULT : 0;
    }
    if (err != 0 && err != EINVAL && err != WC_EREPLACED) recover_range(addr, (size_t)length);
  }
  pthread_rwlock_unlock(&table_lock);
  return err;
}

/*
 * Drops one hold of `owner` on image fd; closes the image (fd and view)
 * with its last hold, unless a queued reset pins it (table_unpin closes it
 * then). Returns 0 when `owner` holds no image at fd, 1
 * when a hold was dropped and the image stays open, 2 when no hold is left (closed, or kept for a pin).
 */
int table_remove(int fd, uint64_t owner) {
  int result = 0;
  pthread_rwlock_wrlock(&table_lock);
  int64_t i = fd >= 0 && (size_t)fd < table_cap && table[fd].length != 0 && owner != 0 ? hold_index(&table[fd], owner) : -1;
  if (i >= 0) {
    image_entry *e = &table[fd];
    result = 1;
    if (--e->holds[i].count == 0) e->holds[i] = e->holds[--e->n_holds];
    if (e->n_holds == 0 && e->pins == 0) {
      entry_close(fd);
      result = 2;
    }
  }
  pthread_rwlock_unlock(&table_lock);
  return result;
}

/*
 * Drops every hold `owner` still has (its environment is being torn down,
 * and its reset thread was joined), closing each image (fd and view) whose
 * last hold that was. Holds the lock exclusively meanwhile, so no restore
 * of another thread is reading the table, and no fd closed here is handed
 * out again while an entry names it.
 */
void table_close_owned(uint64_t owner) {
  if (owner == 0) return;
  pthread_rwlock_wrlock(&table_lock);
  for (size_t fd = 0; fd < table_cap; fd++) {
    image_entry *e = &table[fd];
    int64_t i = e->length != 0 ? hold_index(e, owner) : -1;
    if (i < 0) continue;
    e->holds[i] = e->holds[--e->n_holds];
    if (e->n_holds == 0 && e->pins == 0) entry_close((int)fd);
  }
  pthread_rwlock_unlock(&table_lock);
}

/*
 * A queued reset names image (fd, gen): pin it, so that it stays open
 * (fd, view and generation) until the job is reaped, even if every holder
 * closes it meanwhile. Returns 1 when pinned, 0 when (fd, gen) is not open.
 */
int table_pin(int fd, uint64_t gen) {
  int ok = 0;
  pthread_rwlock_wrlock(&table_lock);
  if (fd >= 0 && (size_t)fd < table_cap && table[fd].length != 0 && table[fd].gen == gen && table[fd].pins < UINT64_MAX) {
    table[fd].pins++;
    ok = 1;
  }
  pthread_rwlock_unlock(&table_lock);
  return ok;
}

/* Undoes one table_pin(fd, gen); closes the image when nothing holds or pins it any more. */
void table_unpin(int fd, uint64_t gen) {
  pthread_rwlock_wrlock(&table_lock);
  if (fd >= 0 && (size_t)fd < table_cap && table[fd].length != 0 && table[fd].gen == gen && table[fd].pins > 0) {
    if (--table[fd].pins == 0 && table[fd].n_holds == 0) entry_close(fd);
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
