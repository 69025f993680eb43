/**
 * The pool of idle slots.
 *
 * An idle slot is clean and belongs to exactly one size class (initial and
 * maximum pages) and one image (or none). To serve a request the pool takes,
 * in order:
 *   1. an idle slot of the same size holding the same image: the fast path,
 *      no system call at all;
 *   2. the least recently used idle slot of the same size: one mmap to undo
 *      its old image and one to place the new one;
 *   3. a new slot (a new WebAssembly.Memory).
 * Released slots are reset and become idle; past `maxIdle` idle slots the
 * least recently used one is retired, and so is a slot that has served
 * `maxUses` tenants when its reset would have to detach buffers (see
 * Slot.uses for why). A slot whose tenant was handed something release
 * cannot revoke (Slot.exposed) is retired at release, never reset.
 *
 * With background resets (native backend), a released slot's reset is
 * queued to the addon's reset thread and the slot waits in `#resetting`
 * until it is done; each acquire and release first settles the resets that
 * ended (a read of a status cell each, no system call). Resets mostly end
 * in order, so settling stops at the first still running. When a request
 * finds no idle slot but its own memory is still being reset, the pool
 * makes one more memory rather than wait, so a module instantiated in a
 * loop alternates between two memories, one in use while the other is
 * reset; with two of them still resetting it waits for the older one
 * (the addon then does that reset on this thread if the reset thread has
 * not started it). Resetting slots count against `maxIdle` too.
 *
 * A slot retired at release (it grew, its tenant was handed it, or its
 * reset failed) is replaced by a spare made in idle time: a new memory of
 * the same size holding the same image, idle in the pool like any other
 * (src/spares.ts).
 *
 * `maxIdle` is engine-wide: idle instances of modules prepared with
 * `{ reuse: true }` (src/reuse/pool.ts) hold memories too, and count
 * against it with the pool's own (`IdleInstances`). Past the bound, the
 * least recently released goes first, whether a pool slot or an idle
 * instance (with all its memories).
 *
 * Invariants: every slot in the indexes is clean and appears in all three
 * (`#all`, its size set, its image set) or in none of them. Every slot in
 * `#resetting` is in state 'resetting' and in no index, oldest first.
 */
import type { Backend } from './backend/backend.js';
import type { MemoryImage } from './image/image.js';
import { Slot, type SlotSize, sizeKey } from './slot.js';
import { SPARES_PER_KEY, SpareQueue, type SpareRequest } from './spares.js';
import type { StatsCounters } from './stats.js';

export interface SlotRequest extends SlotSize {
  readonly image: MemoryImage | null;
  /** sizeKey() of this request, when precomputed (it is on the hot path). */
  readonly key?: string;
}

type ImageKey = MemoryImage | string;

/** The idle instances that share `maxIdle` with the pool (EngineCore keeps them). */
export interface IdleInstances {
  /** Memories held by idle instances. */
  readonly memories: number;
  /** The release stamp of the least recently released idle instance, or Infinity. */
  oldest(): number;
  /** Drops the least recently released idle instance. */
  evictOldest(): void;
}

/** Release stamps, shared by pool slots and idle instances (one engine's ordering). */
export class IdleClock {
  #t = 0;
  next(): number {
    return ++this.#t;
  }
}

/** Queued resets per review of the reset thread's keeping up, and inline resets when it did not. */
const QUEUE_WINDOW = 256;
const INLINE_SPELL = 1024;

/**
 * Slots by the image they hold: a WeakMap for images (an entry, even an
 * empty set, dies with its image), a Map keyed by size for zero memories.
 * Empty sets are kept: a key in use empties and fills at every instantiation.
 */
class ImageIndex {
  readonly #images = new WeakMap<MemoryImage, Set<Slot>>();
  readonly #zero = new Map<string, Set<Slot>>();

  get(key: ImageKey): Set<Slot> | undefined {
    return typeof key === 'string' ? this.#zero.get(key) : this.#images.get(key);
  }

  add(key: ImageKey, slot: Slot): void {
    const set = this.get(key);
    if (set) set.add(slot);
    else if (typeof key === 'string') this.#zero.set(key, new Set([slot]));
    else this.#images.set(key, new Set([slot]));
  }

  remove(key: ImageKey, slot: Slot): void {
    this.get(key)?.delete(slot);
  }
}

export class MemoryPool {
  readonly #backend: Backend;
  readonly #maxIdle: number;
  readonly #stats: StatsCounters;
  /** All idle slots, least recently used first (Map keeps insertion order), with their release stamps. */
  readonly #all = new Map<Slot, number>();
  /** Idle instances counted against maxIdle with the pool's slots, and the stamps both share. */
  #instances: IdleInstances = NO_INSTANCES;
  readonly #clock = new IdleClock();
  readonly #bySize = new Map<string, Set<Slot>>();
  readonly #byImage = new ImageIndex();

  /** Released slots whose reset runs on the backend's thread, oldest first. */
  readonly #resetting: Slot[] = [];

  readonly #maxUses: number;
  /** Whether releases queue their reset to the backend's thread (the backend says). */
  readonly #background: boolean;
  /** Resets queued, and those the calling thread then did itself, in the current window (see #review). */
  #queued = 0;
  #stolen = 0;
  /** Releases left to reset inline before queueing is tried again. */
  #inlineFor = 0;

  /** Called with each slot the pool creates. */
  readonly #onCreate: ((slot: Slot) => void) | undefined;
  /** Replacements asked for retired slots, made in idle time (when #sparesOn). */
  readonly #spares: SpareQueue;
  readonly #sparesOn: boolean;

  constructor(
    backend: Backend,
    maxIdle: number,
    stats: StatsCounters,
    maxUses = Infinity,
    onCreate?: (slot: Slot) => void,
    spares = true,
  ) {
    this.#sparesOn = spares;
    this.#onCreate = onCreate;
    this.#backend = backend;
    this.#maxIdle = maxIdle;
    this.#stats = stats;
    this.#maxUses = maxUses;
    this.#background = backend.backgroundReset === true;
    this.#spares = new SpareQueue(
      (r) => this.#makeSpare(r),
      () => this.#maxIdle,
    );
  }

  /** Idle slots, counting those still being reset. */
  get idle(): number {
    return this.#all.size + this.#resetting.length;
  }

  /** Idle instances to count against maxIdle (set once, by EngineCore). */
  shareWith(instances: IdleInstances): void {
    this.#instances = instances;
  }

  /** A release stamp (idle instances take theirs here too). */
  stamp(): number {
    return this.#clock.next();
  }

  /**
   * Holds maxIdle over idle slots and idle instances' memories together:
   * drops the least recently released, slot or instance, until within it.
   */
  trim(): void {
    const inst = this.#instances;
    while (this.#all.size + inst.memories > this.#maxIdle) {
      const slot = firstKey(this.#all);
      if (slot === undefined || inst.oldest() < this.#all.get(slot)!) {
        if (inst.memories === 0) return;
        inst.evictOldest();
        continue;
      }
      this.#unindex(slot);
      this.#retire(slot);
    }
  }

  /**
   * A leased slot holding `request.image`, clean. Throws what V8 or the
   * backend throws. With `create` false, returns null rather than make a
   * new memory.
   */
  acquire(request: SlotRequest): Slot;
  acquire(request: SlotRequest, create: boolean): Slot | null;
  acquire(request: SlotRequest, create = true): Slot | null {
    const key = request.key ?? sizeKey(request);
    const ikey = imageKey(request.image, key);
    if (this.#resetting.length > 0) this.#settle(false);
    let slot = first(this.#byImage.get(ikey));
    if (slot === undefined && this.#resetting.length > 1 && this.#waitForOwn(ikey)) slot = first(this.#byImage.get(ikey));
    if (slot === undefined) slot = first(this.#bySize.get(key));
    const reused = slot !== undefined;
    if (slot === undefined && !create) return null;
    if (slot === undefined) {
      slot = new Slot(this.#backend, request);
      this.#stats.memoriesCreated++;
      this.#onCreate?.(slot);
    } else {
      this.#unindex(slot);
    }
    const spare = slot.spare;
    let fast: boolean;
    try {
      fast = slot.acquire(request.image);
    } catch (e) {
      // The slot retired itself.
      this.#stats.retiredMemories++;
      throw e;
    }
    if (reused) this.#stats.pooledReuses++;
    if (spare) this.#stats.sparesUsed++;
    if (reused && fast) this.#stats.fastPathHits++;
    if (!fast && request.image) this.#stats.bytesMapped += request.image.length;
    return slot;
  }

  /**
   * A clean slot for a one-shot tenant (core.fresh(): the register hook's
   * and the drop-in's instantiations, whose memories live and die with
   * their instance), as acquire() gives it: an idle one when there is one (a
   * spare made in idle time, or a reset memory: what a new memory would
   * give, without making one on the tenant's path), which leaves the pool
   * for good, else a new one. No lease owns it. With `spare`, a spare is
   * asked for the next one-shot tenant (wantSpare).
   */
  oneShot(request: SlotRequest, spare: boolean): Slot {
    const slot = this.acquire(request);
    slot.tenancy.lease = null;
    if (spare) this.wantSpare(request);
    return slot;
  }

  /** Asks for a spare like `request`, made in idle time (src/spares.ts). */
  wantSpare(request: SlotRequest): void {
    if (this.#maxIdle === 0 || !this.#sparesOn) return;
    this.#spares.want({ initialPages: request.initialPages, maximumPages: request.maximumPages, image: request.image, key: request.key ?? sizeKey(request) });
  }

  /**
   * Resets a leased slot and keeps it idle, or retires it (when its tenant
   * was handed what release cannot revoke (`slot.exposed`), `keep` is
   * false, the slot has served `maxUses` tenants and must detach buffers,
   * the pool keeps no idle slots, or the reset fails).
   */
  release(slot: Slot, keep = true): void {
    if (slot.state !== 'leased') return;
    if (slot.exposed) {
      // Never reset, never reused: left as its tenant left it, for whatever
      // still holds it; V8 frees it when that is gone.
      slot.retire(true);
      this.#stats.retiredMemories++;
      this.#stats.retiredExposed++;
      if (keep) this.#replace(slot);
      return;
    }
    const worn = slot.uses >= this.#maxUses && slot.needsDetach;
    if (!keep || worn || this.#maxIdle === 0) {
      this.#retire(slot);
      if (keep && worn) this.#replace(slot);
      return;
    }
    if (this.#resetting.length > 0) this.#settle(false);
    // Resets waiting count as idle memories: past the bound, finish the
    // oldest here (the reset thread only gets idle cores, maybe none).
    if (this.#resetting.length > 0 && this.#resetting.length >= this.#maxIdle) this.#finish(0);
    // A memory whose buffers must be detached is reset inline: V8's
    // instantiation slows down threefold (measured: sql.js 58 -> 157 µs)
    // when tenants alternate between memories that are detached each time,
    // which is what a background reset would make them do.
    let background = this.#background && !slot.needsDetach;
    if (background && this.#inlineFor > 0) {
      this.#inlineFor--;
      background = false;
    }
    const state = slot.release(background);
    if (state === 'resetting') {
      this.#resetting.push(slot);
      if (++this.#queued === QUEUE_WINDOW) this.#review();
    } else {
      this.#adopt(slot, false);
    }
  }

  /**
   * Background resets pay only while the reset thread gets a core. When the
   * calling thread had to do more than half of the last QUEUE_WINDOW queued
   * resets itself (it needed the memory back and the reset had not even
   * started: no core was idle, e.g. every core runs a busy JS thread),
   * queueing only adds its own cost: the next INLINE_SPELL resets are done
   * inline, then queueing is tried again. Waiting for a reset the thread is
   * running does not count: that thread still works in parallel.
   */
  #review(): void {
    if (this.#stolen * 2 > this.#queued) this.#inlineFor = INLINE_SPELL;
    this.#queued = 0;
    this.#stolen = 0;
  }

  /**
   * Settles the resets that ended (all of them, waiting, with `wait`).
   * The reset thread works in order: stop at the first still running.
   */
  #settle(wait: boolean): void {
    const list = this.#resetting;
    let n = 0;
    while (n < list.length && list[n]!.settle(wait)) n++;
    if (n === 0) return;
    for (let i = 0; i < n; i++) this.#adopt(list[i]!, true);
    list.copyWithin(0, n);
    list.length -= n;
  }

  /**
   * No idle slot holds this image: if two or more of those being reset do,
   * the reset thread is behind; wait for the oldest of them (and all queued
   * before it) rather than make yet another memory. Returns whether it waited.
   */
  #waitForOwn(ikey: ImageKey): boolean {
    let oldest = -1;
    let count = 0;
    for (let i = 0; i < this.#resetting.length; i++) {
      const s = this.#resetting[i]!;
      if (imageKey(s.image, s.key) !== ikey) continue;
      if (oldest < 0) oldest = i;
      count++;
    }
    if (count < 2) return false;
    this.#finish(oldest);
    return true;
  }

  /** Waits for the reset of #resetting[i] (the addon does it here if not started), then settles all that ended. */
  #finish(i: number): void {
    const slot = this.#resetting[i]!;
    slot.settle(true);
    if (slot.resetHere) this.#stolen++;
    this.#settle(false); // everything queued before it has ended too
  }

  /** A released slot whose reset ended: idle if clean, else counted as retired. */
  #adopt(slot: Slot, background: boolean): void {
    if (slot.state !== 'clean') {
      // It grew (a memory cannot shrink), or its reset failed.
      this.#stats.retiredMemories++;
      this.#replace(slot);
      return;
    }
    this.#stats.resets++;
    if (background) this.#stats.backgroundResets++;
    this.#index(slot);
    this.trim();
  }

  /** Waits for every queued reset and settles it (so counts are exact). */
  drain(): void {
    if (this.#resetting.length > 0) this.#settle(true);
  }

  /** A disposed image: its idle slots go back to zero (or are retired). */
  dropImage(image: MemoryImage): void {
    this.#spares.drop(image);
    this.drain(); // a queued reset may be restoring from this image
    const slots = this.#byImage.get(image);
    if (!slots) return;
    for (const slot of [...slots]) {
      this.#unindex(slot);
      try {
        this.#backend.remove(slot.memory, image);
        slot.image = null;
        this.#index(slot);
      } catch {
        this.#retire(slot);
      }
    }
  }

  /**
   * Retires every idle slot (waiting for queued resets first), and lets go
   * of what the finished resets still hold (their memories, their images'
   * pins), which nothing else would do until a later native call.
   */
  clear(): void {
    this.#spares.clear();
    this.drain();
    for (const slot of [...this.#all.keys()]) {
      this.#unindex(slot);
      this.#retire(slot);
    }
    this.#backend.reapResets?.();
  }

  /** Asks for a spare to replace a slot retired at release (src/spares.ts). */
  #replace(slot: Slot): void {
    this.wantSpare({ ...slot.size, image: slot.tenantImage, key: slot.key });
  }

  /**
   * Makes one spare (in idle time), unless the pool already holds
   * SPARES_PER_KEY idle memories of its size and image; past `maxIdle` in
   * all, the least recently used idle memory or instance is dropped for it.
   * A failure (no address space, mapping refused) makes nothing: the next
   * tenant will make its memory itself, and meet the error there.
   */
  #makeSpare(r: SpareRequest): void {
    if (this.#resetting.length > 0) this.#settle(false);
    if ((this.#byImage.get(imageKey(r.image, r.key))?.size ?? 0) >= SPARES_PER_KEY) return;
    let slot: Slot;
    try {
      slot = new Slot(this.#backend, r);
    } catch {
      return;
    }
    this.#stats.memoriesCreated++;
    this.#onCreate?.(slot);
    try {
      slot.stock(r.image);
    } catch {
      this.#stats.retiredMemories++;
      return;
    }
    this.#stats.sparesMade++;
    if (r.image) this.#stats.bytesMapped += r.image.length;
    this.#index(slot);
    // Past maxIdle, the least recently used idle memory or instance goes, as
    // at release: the spare is the newest. (Refusing at the bound instead let
    // spares made for modules no longer used hold the pool for good.)
    this.trim();
  }

  #retire(slot: Slot): void {
    slot.retire();
    this.#stats.retiredMemories++;
  }

  #index(slot: Slot): void {
    this.#all.set(slot, this.#clock.next());
    addTo(this.#bySize, slot.key, slot);
    this.#byImage.add(imageKey(slot.image, slot.key), slot);
  }

  #unindex(slot: Slot): void {
    this.#all.delete(slot);
    this.#bySize.get(slot.key)?.delete(slot);
    this.#byImage.remove(imageKey(slot.image, slot.key), slot);
  }
}

/** Slots without an image are keyed by their size key (a zero memory of that size). */
const imageKey = (image: MemoryImage | null, size: string): ImageKey => image ?? size;

const NO_INSTANCES: IdleInstances = { memories: 0, oldest: () => Infinity, evictOldest: () => {} };

function firstKey<K>(map: Map<K, unknown>): K | undefined {
  for (const k of map.keys()) return k;
  return undefined;
}

function first<T>(set: Set<T> | undefined): T | undefined {
  if (!set) return undefined;
  for (const v of set) return v;
  return undefined;
}

function addTo<K>(map: Map<K, Set<Slot>>, key: K, slot: Slot): void {
  const set = map.get(key);
  if (set) set.add(slot);
  else map.set(key, new Set([slot]));
}
