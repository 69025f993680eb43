/**
 * The engine's internals, shared by Engine, PreparedModule and Lease: the
 * backend, the pool, the counters and the live-lease accounting. Not part
 * of the public API.
 */
import type { Backend } from './backend/backend.js';
import { EngineClosedError, PoolExhaustedError } from './errors.js';
import type { MemoryImage } from './image/image.js';
import { MemoryPool, type SlotRequest } from './pool.js';
import { type LeaseTicket, Slot } from './slot.js';
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

/** Leases without pooled memory listed before they are registered (EngineCore.watch). */
const UNWATCHED_MAX = 64;

/** The ticket of a lease without slots: where it is on EngineCore's list of leases to watch. */
interface ListedTicket extends LeaseTicket {
  readonly at: number;
}

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
   * Unpooled slots (one-shot instantiation): dropped with their instance.
   * Each is an idle memory taken out of the pool (a spare made in idle time
   * for an earlier one-shot instantiation, or a reset memory), else a new
   * one; either way a spare is asked for the next (MemoryPool.wantSpare).
   */
  fresh(requests: readonly SlotRequest[]): Slot[] {
    return requests.map((r) => {
      let slot = this.pool.takeIdle(r);
      if (slot === null) {
        slot = new Slot(this.backend, r);
        this.counters.memoriesCreated++;
        slot.acquire(r.image);
        if (r.image) this.counters.bytesMapped += r.image.length;
      }
      this.pool.wantSpare(r);
      return slot;
    });
  }

  releaseSlots(slots: readonly Slot[]): void {
    for (const s of slots) this.pool.release(s, !this.closed);
  }

  /**
   * A new lease holds these slots: returns its ticket. A lease without
   * slots (a module that defines no memory, or whose memories V8 made) is
   * watched itself: dropped without release(), it stops counting as live
   * when V8 collects it (#collected cannot see it: no slot).
   */
  watch(slots: readonly Slot[], lease: object): LeaseTicket {
    if (slots.length !== 0) {
      const ticket = { open: true };
      for (let i = 0; i < slots.length; i++) slots[i]!.tenancy.lease = ticket;
      return ticket;
    }
    // Registered with #dropped in a batch, once the code that made it has
    // run (a microtask) or UNWATCHED_MAX more came: most such leases are
    // released by then and are never registered (a registration costs
    // about 1.5 µs after a large instantiation, and its weak cell GC work).
    // Until then the list holds the lease, which therefore cannot be
    // collected; release() takes it off the list (leaseReleased), so that
    // a released lease does not keep its instance alive through it.
    const list = this.#unwatched;
    const listed: ListedTicket = { open: true, at: list.length };
    list.push(lease, listed);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushSoon);
    } else if (list.length >= 2 * UNWATCHED_MAX) {
      this.#flushUnwatched();
    }
    return listed;
  }

  /** Leases without slots not yet registered with #dropped: lease, ticket, lease, ticket, ... (a released lease's entry null). */
  readonly #unwatched: (object | null | ListedTicket)[] = [];
  #flushQueued = false;
  readonly #flushSoon = (): void => {
    this.#flushQueued = false;
    this.#flushUnwatched();
  };

  /** Registers the listed leases that are still open. */
  #flushUnwatched(): void {
    const list = this.#unwatched;
    for (let i = 0; i < list.length; i += 2) {
      const ticket = list[i + 1] as ListedTicket;
      if (ticket.open) this.#dropped.register(list[i] as object, ticket);
    }
    list.length = 0;
  }

  /** Leases without slots, watched by watch(): a ticket still open when its lease is collected was never released. */
  readonly #dropped = new FinalizationRegistry<LeaseTicket>((ticket) => {
    if (!ticket.open) return;
    ticket.open = false;
    this.live--;
  });

  /** A lease was released: return its memories. */
  leaseReleased(ticket: LeaseTicket, slots: readonly Slot[]): void {
    ticket.open = false;
    this.live--;
    if (slots.length === 0) {
      // Run as V8 would: nothing pooled. Off the list of leases to watch, if it is still there.
      const at = (ticket as Partial<ListedTicket>).at;
      if (at !== undefined && this.#unwatched[at + 1] === ticket) this.#unwatched[at] = null;
      return;
    }
    for (const s of slots) s.tenancy.lease = null;
    this.releaseSlots(slots);
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
