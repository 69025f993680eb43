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
 * Slot.uses for why).
 *
 * Invariants: every slot in the indexes is clean and appears in all three
 * (`#all`, its size set, its image set) or in none of them.
 */
import type { Backend } from './backend/backend.js';
import type { MemoryImage } from './image/image.js';
import { Slot, type SlotSize, sizeKey } from './slot.js';
import type { StatsCounters } from './stats.js';

export interface SlotRequest extends SlotSize {
  readonly image: MemoryImage | null;
  /** The module exports this memory: release must detach its buffers. */
  readonly exported: boolean;
  /** sizeKey() of this request, when precomputed (it is on the hot path). */
  readonly key?: string;
}

type ImageKey = MemoryImage | string;

export class MemoryPool {
  readonly #backend: Backend;
  readonly #maxIdle: number;
  readonly #stats: StatsCounters;
  /** All idle slots, least recently used first (Set keeps insertion order). */
  readonly #all = new Set<Slot>();
  readonly #bySize = new Map<string, Set<Slot>>();
  readonly #byImage = new Map<ImageKey, Set<Slot>>();

  readonly #maxUses: number;

  constructor(backend: Backend, maxIdle: number, stats: StatsCounters, maxUses = Infinity) {
    this.#backend = backend;
    this.#maxIdle = maxIdle;
    this.#stats = stats;
    this.#maxUses = maxUses;
  }

  get idle(): number {
    return this.#all.size;
  }

  /** A leased slot holding `request.image`, clean. Throws what V8 or the backend throws. */
  acquire(request: SlotRequest): Slot {
    const key = request.key ?? sizeKey(request);
    let slot = first(this.#byImage.get(imageKey(request.image, key)));
    if (slot === undefined) slot = first(this.#bySize.get(key));
    const reused = slot !== undefined;
    if (slot === undefined) {
      slot = new Slot(this.#backend, request);
      this.#stats.memoriesCreated++;
    } else {
      this.#unindex(slot);
    }
    let fast: boolean;
    try {
      fast = slot.acquire(request.image, request.exported);
    } catch (e) {
      // The slot retired itself.
      this.#stats.retiredMemories++;
      throw e;
    }
    if (reused) this.#stats.pooledReuses++;
    if (reused && fast) this.#stats.fastPathHits++;
    if (!fast && request.image) this.#stats.bytesMapped += request.image.length;
    return slot;
  }

  /**
   * Resets a leased slot and keeps it idle, or retires it (when `keep` is
   * false, the slot has served `maxUses` tenants and must detach buffers,
   * the pool keeps no idle slots, or the reset fails).
   */
  release(slot: Slot, keep = true): void {
    if (slot.state !== 'leased') return;
    const worn = slot.uses >= this.#maxUses && slot.needsDetach;
    if (!keep || worn || this.#maxIdle === 0 || !slot.reset()) {
      this.#retire(slot);
      return;
    }
    this.#stats.resets++;
    this.#index(slot);
    while (this.#all.size > this.#maxIdle) {
      const oldest = first(this.#all)!;
      this.#unindex(oldest);
      this.#retire(oldest);
    }
  }

  /** A disposed image: its idle slots go back to zero (or are retired). */
  dropImage(image: MemoryImage): void {
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

  /** Retires every idle slot. */
  clear(): void {
    for (const slot of [...this.#all]) {
      this.#unindex(slot);
      this.#retire(slot);
    }
  }

  #retire(slot: Slot): void {
    slot.retire();
    this.#stats.retiredMemories++;
  }

  #index(slot: Slot): void {
    this.#all.add(slot);
    addTo(this.#bySize, slot.key, slot);
    addTo(this.#byImage, imageKey(slot.image, slot.key), slot);
  }

  #unindex(slot: Slot): void {
    this.#all.delete(slot);
    removeFrom(this.#bySize, slot.key, slot);
    removeFrom(this.#byImage, imageKey(slot.image, slot.key), slot);
  }
}

/** Slots without an image are keyed by their size (a zero memory of that size). */
const imageKey = (image: MemoryImage | null, size: string): ImageKey => image ?? `zero:${size}`;

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

function removeFrom<K>(map: Map<K, Set<Slot>>, key: K, slot: Slot): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(slot);
  if (set.size === 0) map.delete(key);
}
