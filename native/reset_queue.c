/*
 * Each environment's background reset queue and its thread: resetInit,
 * resetBegin, resetWait (every entry point follows the rules at the top of
 * wasm_cow.c). The reset a job runs is reset_pages (reset.c); the queue is
 * made by resetInit and freed with its environment (free_addon_data in
 * wasm_cow.c, which calls reset_queue_free before it closes the
 * environment's images).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "wasm_cow.h"

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
 * are written, and a pin on its image (table_pin, undone when the job is
 * reaped), so the image stays open for it even if every holder closes it
 * meanwhile. The reset writes only inside [base, base + length) as
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
  reset_args args; /* checked on the JS thread; read by the claimer once the tag said QUEUED */
  uint32_t cell;   /* < cells: the status cell this job writes */
  napi_ref memory; /* keeps the memory alive until deleted on the JS thread */
} __attribute__((aligned(LINE))) reset_job;

struct reset_queue {
  /* Written by the JS thread. */
  _Atomic uint64_t tail __attribute__((aligned(LINE)));
  _Atomic uint64_t reaped;
  int started; /* the thread was created (it is joined at teardown iff so) */
  /* Written by the reset thread. */
  _Atomic int sleeping __attribute__((aligned(LINE))); /* it is (about to be) waiting on `work` */
  /* Rarely written. */
  _Atomic int stopping __attribute__((aligned(LINE))); /* set once, at teardown: the thread returns */
  _Atomic int waiters;     /* JS threads in resetWait */
  pthread_mutex_t lock;    /* for the two condition variables */
  pthread_cond_t work;     /* the thread sleeps here when the queue is empty */
  pthread_cond_t finished; /* resetWait sleeps here */
  pthread_t thread;        /* valid iff started */
  _Atomic int32_t *status; /* the cells */
  uint32_t cells;          /* 1 to 2^20 */
  napi_ref status_ref;     /* keeps the status array (and so `status`) alive until teardown */
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

/*
 * Lets go of what finished jobs hold: deletes their memory references and
 * undoes their image pins (JS thread: Node-API is not thread-safe), oldest
 * first. `reaped` advances over the finished jobs at the head of the ring.
 * With `all`, finished jobs behind one still running are let go of too
 * (each at most once: its memory and fd are cleared), so that a close
 * leaves nothing open for jobs already done; their slots are reaped later,
 * in order. Without it (every call that takes a memory) it stops at the
 * first job not done, which costs nothing when there is none.
 */
void reap_jobs(napi_env env, reset_queue *q, int all) {
  uint64_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
  int head = 1; /* every job before i is reaped or done */
  for (uint64_t i = q->reaped; i < tail; i++) {
    reset_job *job = &q->jobs[i % QUEUE_CAP];
    if (atomic_load_explicit(&job->tag, memory_order_acquire) != TAG(i, JOB_DONE)) {
      if (!all) break;
      head = 0;
      continue;
    }
    if (job->memory != NULL) napi_delete_reference(env, job->memory);
    job->memory = NULL;
    if (job->args.fd >= 0) table_unpin(job->args.fd, job->args.gen); /* pinned by reset_begin */
    job->args.fd = -1;
    /* The tag stays (i, DONE) until job i + QUEUE_CAP takes the slot: the
       reset thread, if behind, then knows job i needs nothing from it. */
    if (head) atomic_store_explicit(&q->reaped, i + 1, memory_order_relaxed);
  }
}

/*
 * resetReap() -> undefined: lets go of the memories and image pins of every
 * finished reset of this thread (reap_jobs with all), e.g. when an engine
 * closes, so that no image stays open nor memory alive for a job that ended.
 * Nothing to do (and no error) before resetInit.
 */
napi_value reset_reap(napi_env env, napi_callback_info info) {
  addon_data *data;
  (void)info;
  if (napi_get_instance_data(env, (void **)&data) == napi_ok && data != NULL && data->queue != NULL) {
    reap_jobs(env, data->queue, 1);
  }
  return NULL;
}

/* Stops the thread and drops every reference (environment teardown). */
void reset_queue_free(napi_env env, reset_queue *q) {
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
    reset_job *job = &q->jobs[i % QUEUE_CAP];
    if (job->memory != NULL) napi_delete_reference(env, job->memory);
    if (job->args.fd >= 0) table_unpin(job->args.fd, job->args.gen);
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
napi_value reset_init(napi_env env, napi_callback_info info) {
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
napi_value reset_begin(napi_env env, napi_callback_info info) {
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
  } else if (a.fd >= 0 && !table_pin(a.fd, a.gen)) {
    ret = -3; /* cannot happen: this thread holds the image (get_reset_args checked) */
  } else {
    q->started = 1;
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    reset_job *job = &q->jobs[t % QUEUE_CAP];
    if (napi_create_reference(env, argv[0], 1, &job->memory) != napi_ok) {
      if (a.fd >= 0) table_unpin(a.fd, a.gen);
      return NULL;
    }
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
napi_value reset_wait(napi_env env, napi_callback_info info) {
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
  reap_jobs(env, q, 0);
  if (napi_create_int32(env, atomic_load_explicit(s, memory_order_acquire), &result) != napi_ok) return NULL;
  return result;
}
