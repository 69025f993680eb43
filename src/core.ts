/**
 * The engine's internals, shared by Engine, PreparedModule and Lease: the
 * backend, the pool, the counters and the live-lease accounting. Not part
 * of the public API.
 */
import type { Backend } from './backend/backend.js';
import { EngineClosedError, PoolExhaustedError } from './errors.js';
import type { MemoryImage } from './image/image.js';
import { MemoryPool, type SlotRequest } from './pool.js';
import type { LeaseTicket, Slot } from './slot.js';
import { countFallback, type EngineStats, type FallbackReason, newCounters, type StatsCounters } from './stats.js';

export interface CoreOptions {
  readonly maxInstances: number;
  readonly maxIdle: number;
  readonly imageSizeLimit: number;
  readonly memoryReuseLimit: number;
  /** Run a module as V8 would where the cost model says imaging cannot win (EngineOptions.nativeWhenFaster). */
  readonly nativeWhenFaster: boolean;
  /** Replace memories retired at release with spares made in idle time (EngineOptions.spareMemories). */
  readonly spareMemories?: boolean;
}

/** An idle instance of a module prepared with `{ reuse: true }`, as the engine-wide idle bound sees it. */
export interface IdleInstance {
  /** Memories it holds. */
  readonly memories: number;
  /** Drops it (its pool removes it and retires its memories). */
  evict(): void;
}

/** Leases without pooled memory waiting to be registered, at most (EngineCore.watchUnpooled). */
const UNWATCHED_MAX = 64;

/**
 * A lease without pooled memory as EngineCore watches it (the lease's own
 * state: EngineCore.watchUnpooled). Its ticket is null until it is
 * registered with the FinalizationRegistry; until then it is on the list
 * of waiting leases, linked by prev / next (null at the ends, and off it).
 */
export interface UnpooledLease {
  ticket: LeaseTicket | null;
  prev: UnpooledLease | null;
  next: UnpooledLease | null;
}

/** The ticket closed for a lease without slots released before it was registered (EngineCore.unwatchUnpooled): never registered, so never read. */
const NEVER_REGISTERED: LeaseTicket = { open: false };

export class EngineCore {
  readonly backend: Backend;
  readonly options: CoreOptions;
  readonly counters: StatsCounters = newCounters();
  readonly pool: MemoryPool;
  live = 0;
  closed = false;
  /** Images built by this engine's prepared modules, for close(). */
  readonly #images = new Set<WeakRef<MemoryImage>>();
  /**
   * Watches every pooled slot (registered once, when the pool makes it).
   * A slot V8 collects while a lease still holds it belonged to a lease
   * dropped without release(): that lease no longer counts as live. Such a
   * slot is unreachable, instance and memory included, so nothing of it can
   * still run; V8 frees its pages.
   */
  readonly #collected = new FinalizationRegistry<Slot['tenancy']>((t) => this.#collect(t));

  /**
   * Idle instances of every instance pool (src/reuse/pool.ts), least
   * recently released first, with their release stamps. Their memories
   * count against maxIdle with the memory pool's idle memories.
   */
  readonly #idleInstances = new Map<IdleInstance, number>();
  #idleInstanceMemories = 0;

  constructor(backend: Backend, options: CoreOptions) {
    this.backend = backend;
    this.options = options;
    this.pool = new MemoryPool(
      backend,
      options.maxIdle,
      this.counters,
      options.memoryReuseLimit,
      (slot) => this.#collected.register(slot, slot.tenancy),
      options.spareMemories ?? true,
    );
    const idle = this.#idleInstances;
    const memories = (): number => this.#idleInstanceMemories;
    this.pool.shareWith({
      get memories() {
        return memories();
      },
      oldest: () => {
        for (const stamp of idle.values()) return stamp;
        return Infinity;
      },
      evictOldest: () => {
        for (const i of idle.keys()) {
          this.unkeepIdle(i);
          i.evict();
          return;
        }
      },
    });
  }

  /**
   * An instance pool keeps `i` idle: it counts against maxIdle from now, the
   * most recently released; past the bound, the least recently released
   * idle memory or instance (engine-wide) is dropped, maybe `i` itself.
   */
  keepIdle(i: IdleInstance): void {
    this.#idleInstances.set(i, this.pool.stamp());
    this.#idleInstanceMemories += i.memories;
    this.pool.trim();
  }

  /** `i` left the idle set (taken by a tenant, or dropped by its pool). */
  unkeepIdle(i: IdleInstance): void {
    if (this.#idleInstances.delete(i)) this.#idleInstanceMemories -= i.memories;
  }


  /** Counts one fallback to V8, by reason. */
  fallback(reason: FallbackReason): void {
    countFallback(this.counters, reason);
  }

  checkOpen(what: string): void {
    if (this.closed) throw new EngineClosedError(what);
  }

  /** Reserves one live lease; throws PoolExhaustedError at the limit. */
  reserve(): void {
    this.checkOpen('instantiate()');
    if (this.live >= this.options.maxInstances) throw new PoolExhaustedError(this.options.maxInstances);
    this.live++;
  }

  /** Undoes reserve() for an instantiation that failed. */
  unreserve(): void {
    this.live--;
  }

  /**
   * Pooled slots for one instance; on failure, those taken are released.
   * With `create` false, null (and nothing taken) when some request would
   * need a new memory.
   */
  acquire(requests: readonly SlotRequest[], create = true): Slot[] | null {
    const slots: Slot[] = [];
    try {
      for (const r of requests) {
        const slot = this.pool.acquire(r, create);
        if (slot === null) {
          this.releaseSlots(slots);
          return null;
        }
        slots.push(slot);
      }
    } catch (e) {
      this.releaseSlots(slots);
      throw e;
    }
    return slots;
  }

  /**
   * Unpooled slots (one-shot instantiation): dropped with their instance
   * (MemoryPool.oneShot). With `spare`, each asks for a spare for the next:
   * the module's one-shot instantiations repeat.
   */
  fresh(requests: readonly SlotRequest[], spare: boolean): Slot[] {
    return requests.map((r) => this.pool.oneShot(r, spare));
  }

  releaseSlots(slots: readonly Slot[]): void {
    for (const s of slots) this.pool.release(s, !this.closed);
  }

  /** A new lease holds these slots (at least one; a lease without: watchUnpooled): returns its ticket. */
  watch(slots: readonly Slot[]): LeaseTicket {
    const ticket = { open: true };
    for (let i = 0; i < slots.length; i++) slots[i]!.tenancy.lease = ticket;
    return ticket;
  }

  /**
   * A new lease without pooled memory (a module that defines none, or whose
   * memories V8 made): watched itself, so that dropped without release() it
   * stops counting as live when V8 collects it (#collected cannot see it:
   * no slot). It is registered with #dropped in a batch, once the code that
   * made it has run (a microtask) or UNWATCHED_MAX such leases are waiting:
   * most are released by then and are never registered (a registration
   * costs about 1.5 µs after a large instantiation, and its weak cell GC
   * work). Until then it is on a list linked through the leases themselves
   * (no allocation, and nothing but the core and the lease touched: this
   * runs right after V8 instantiated a module, when little of the engine is
   * in the CPU caches); the list holds it, so it cannot be collected, and
   * unwatchUnpooled() takes it off at release, so that a released lease
   * does not keep its instance alive through the list. A reused instance's
   * lease without slots is watched the same way.
   */
  watchUnpooled(w: UnpooledLease): void {
    const head = this.#waiting;
    if (head !== null) {
      w.next = head;
      head.prev = w;
    }
    this.#waiting = w;
    this.#waitingCount++;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushSoon);
    } else if (this.#waitingCount >= UNWATCHED_MAX) {
      this.#flushUnwatched();
    }
  }

  /** The newest lease waiting to be registered (watchUnpooled), or null. */
  #waiting: UnpooledLease | null = null;
  #waitingCount = 0;
  #flushQueued = false;
  readonly #flushSoon = (): void => {
    this.#flushQueued = false;
    this.#flushUnwatched();
  };

  /** Registers the waiting leases (every one on the list is unreleased) and empties the list. */
  #flushUnwatched(): void {
    let w = this.#waiting;
    this.#waiting = null;
    this.#waitingCount = 0;
    while (w !== null) {
      const next = w.next;
      w.next = null;
      w.prev = null;
      const ticket = { open: true };
      w.ticket = ticket;
      this.#dropped.register(w, ticket);
      w = next;
    }
  }

  /** Leases without slots (watchUnpooled): a ticket still open when its lease is collected was never released. */
  readonly #dropped = new FinalizationRegistry<LeaseTicket>((ticket) => {
    if (!ticket.open) return;
    ticket.open = false;
    this.live--;
  });

  /** A lease was released: return its memories. */
  leaseReleased(ticket: LeaseTicket, slots: readonly Slot[]): void {
    ticket.open = false;
    this.live--;
    if (slots.length === 0) return;
    for (const s of slots) s.tenancy.lease = null;
    this.releaseSlots(slots);
  }

  /**
   * A lease watched by watchUnpooled() is being released: takes it off the
   * list if it is still waiting there, and returns the ticket to close
   * (leaseReleased, or a reused instance's completion): its registration's,
   * or, for one never registered, a shared ticket nothing reads.
   */
  unwatchUnpooled(w: UnpooledLease): LeaseTicket {
    const ticket = w.ticket;
    if (ticket !== null) return ticket;
    const prev = w.prev;
    const next = w.next;
    if (prev === null) this.#waiting = next;
    else {
      prev.next = next;
      w.prev = null;
    }
    if (next !== null) {
      next.prev = prev;
      w.next = null;
    }
    this.#waitingCount--;
    return NEVER_REGISTERED;
  }

  /** A slot was collected; if a lease still held it, that lease was dropped unreleased. */
  #collect(tenancy: Slot['tenancy']): void {
    const lease = tenancy.lease;
    if (lease === null) return;
    this.counters.retiredMemories++;
    if (!lease.open) return; // another slot of the same lease came first
    lease.open = false;
    this.live--;
  }

  trackImage(image: MemoryImage): void {
    this.#images.add(new WeakRef(image));
    // Drop references to images already disposed or collected, now and then.
    if (this.#images.size >= this.#pruneAt) {
      for (const ref of this.#images) {
        const i = ref.deref();
        if (!i || i.disposed) this.#images.delete(ref);
      }
      this.#pruneAt = Math.max(64, this.#images.size * 2);
    }
  }
  #pruneAt = 64;

  disposeImage(image: MemoryImage): void {
    this.pool.dropImage(image);
    image.dispose();
  }

  stats(): EngineStats {
    this.pool.drain();
    return {
      ...this.counters,
      fallbacks: { ...this.counters.fallbacks },
      reuseDeclined: { ...this.counters.reuseDeclined },
      nativeInstantiations: { ...this.counters.nativeInstantiations },
      liveLeases: this.live,
      idleMemories: this.pool.idle + this.#idleInstanceMemories,
      idleInstances: this.#idleInstances.size,
    };
  }

  /** Called at close (instance pools drop their idle instances: src/reuse/pool.ts). */
  readonly onClose = new Set<WeakRef<{ dispose(): void }>>();

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ref of this.onClose) ref.deref()?.dispose();
    this.onClose.clear();
    this.pool.clear();
    for (const ref of this.#images) {
      const image = ref.deref();
      if (image) image.dispose();
    }
    this.#images.clear();
  }
}
