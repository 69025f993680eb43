/**
 * A slot: one pooled WebAssembly.Memory and what we know of its pages.
 *
 * This is the reference design's `MemFdSlot` / `MemoryImageSlot`, adapted to
 * memories that V8 owns. Wasmtime carves slots out of one reservation it
 * made itself and can mprotect them to any size; here V8 makes the
 * reservation (about 8 GiB, PROT_NONE) when we call `new WebAssembly.Memory`
 * and only V8 may change protections or free it. So:
 *
 *  - A slot's size is fixed for life: its memory is created with the
 *    requested initial and maximum pages and a memory cannot shrink in JS.
 *    The pool only reuses a slot for the same (initial, maximum); a memory
 *    that grew is retired, never reset to the wrong size.
 *  - We never touch anything at or beyond the memory's byte length, and
 *    never munmap: undoing an image maps anonymous zero pages over it.
 *  - The base address is never cached in JS: every native call resolves
 *    the memory's buffer again (V8 may move a memory on grow when it runs
 *    without guard regions). A queued reset keeps the address it was
 *    queued with only for a memory whose whole 4 GiB range is reserved,
 *    which cannot move (the addon checks).
 *
 * Layout of a clean slot (base = start of memory.buffer, read per call):
 *
 *   base                                                initialBytes     ~8 GiB
 *   |<-- image.offset -->|<---- image.length ---->|<-- rest -->|<-- reservation -->|
 *   +--------------------+------------------------+------------+-------------------+
 *   | anonymous zero     | MAP_PRIVATE memfd CoW  | anon. zero | PROT_NONE (V8's;  |
 *   | (V8's own mapping) | (native) / copied bytes| (V8's)     | grow target)      |
 *   +--------------------+------------------------+------------+-------------------+
 *
 * With no image the whole accessible range is V8's anonymous zero memory.
 *
 * State machine:
 *
 *           create()                acquire(image)                release()
 *   (none) ---------> clean ------------------------------> leased ------------+
 *                       ^   fast path: image === this.image   |                |
 *                       |   otherwise: remove old, place new   | reset inline   | reset queued to the
 *                       +--------------------------------------+ OK             | backend's thread
 *                       |                                                      v
 *                       +------------------ settle(): reset done ------- resetting
 *
 *                       any state --------------------------> retired   (grew, a reset or
 *                                                                         mapping failed, or the
 *                                                                         tenant was handed what
 *                                                                         release cannot revoke,
 *                                                                         a lent buffer included)
 *
 *  - clean:     contents are exactly `image` at image.offset and zero
 *               elsewhere in [0, initialBytes); byteLength === initialBytes;
 *               no buffer lent before the reset is still attached, and
 *               nothing an earlier tenant was handed can reach the memory.
 *  - leased:    a tenant owns the memory; any byte below byteLength may differ.
 *  - resetting: the backend's reset thread is restoring the pages; buffers
 *               are already detached. Nothing may touch the memory (the
 *               pool hands it out only after settle() saw the reset end).
 *  - retired:   the memory is dropped (V8 frees it, and our mappings with it,
 *               at GC); nothing may use the slot again.
  */
import type { Backend } from './backend/backend.js';
import type { MemoryImage } from './image/image.js';
import { WASM_PAGE } from './image/analyze.js';
import { takeMemoryAllocationFault } from './fault.js';
import { bufferOf, growMemory, newMemory } from './memory.js';

/** A lent buffer keeps its memory alive for as long as anything holds the buffer (see Slot.lendBuffer). */
const LENT_MEMORY = new WeakMap<ArrayBuffer, WebAssembly.Memory>();

export type SlotState = 'clean' | 'leased' | 'resetting' | 'retired';

/** One lease's record, shared by its slots: open until released (or collected unreleased). */
export interface LeaseTicket {
  open: boolean;
}

/** Size class of a slot: memories are reusable only within one. */
export interface SlotSize {
  readonly initialPages: number;
  readonly maximumPages: number | null;
}

export const sizeKey = (size: SlotSize): string => `${size.initialPages}:${size.maximumPages ?? ''}`;

export class Slot {
  /** The pooled memory. Created for `size`, never replaced. */
  readonly memory: WebAssembly.Memory;
  readonly size: SlotSize;
  /** sizeKey(size), cached: the pool indexes idle slots by it. */
  readonly key: string;
  /** initialPages * 64 KiB: byteLength of the memory whenever it is clean. */
  readonly initialBytes: number;
  /**
   * The image the memory holds when clean, or null for all zero. While
   * leased, the image that was clean at acquire (the tenant may have
   * written over it). Never an image of length 0.
   */
  image: MemoryImage | null = null;
  state: SlotState = 'clean';
  /**
   * Tenants served so far. V8 keeps every instance that ever used a memory
   * in a list on the memory (cleared only by GC), and `memory.grow`, which
   * reset() uses to detach buffers, walks that whole list: such a reset
   * gets slower with each tenant. The pool retires a slot that has served
   * many tenants when its reset would need that grow; a reset without it
   * does not care how long the list is.
   */
  uses = 0;
  /**
   * Whether the tenant was lent the memory's ArrayBuffer (lendBuffer(),
   * through `lease.memoryBuffer()`): release must then detach it, which
   * only `memory.grow(0)` can do for a wasm memory. V8's grow costs
   * microseconds, and tens of them for large memories (the new buffer's
   * size counts as external memory and provokes a GC), so a memory whose
   * buffer no one was lent skips it. Set for the current lease only. (A
   * lent buffer also makes the slot `exposed`: see lendBuffer().)
   */
  bufferLent = false;
  /**
   * Whether the tenant was handed something that release() cannot revoke
   * and that reaches this memory: the memory object, the instance, or one
   * of its functions through a table or global (lease.ts), or its buffer
   * (lendBuffer()). The pool then retires the slot at release instead of
   * resetting it. Set for the current lease only.
   */
  exposed = false;

  /** Whether reset() will call memory.grow(0), whose cost grows with `uses`. */
  get needsDetach(): boolean {
    return this.bufferLent;
  }

  /**
   * The memory's current buffer, lent to the tenant: detached at release,
   * and the memory retired rather than reused (`exposed`). Detaching
   * revokes JavaScript's access only: native code given the address before
   * release (an `fs.read` in libuv's thread pool, zlib, crypto.randomFill,
   * an addon) keeps writing there after it, which must not reach the next
   * tenant. The buffer keeps the memory alive (LENT_MEMORY): detached, it
   * no longer holds the pages, and a view that native code is still
   * writing through must not see them freed (or reused by a new memory at
   * the same address) under it.
   */
  lendBuffer(): ArrayBuffer {
    this.bufferLent = true;
    this.exposed = true;
    const buffer = bufferOf(this.memory);
    LENT_MEMORY.set(buffer, this.memory);
    return buffer;
  }
  /**
   * What the engine's finalizer for this slot gets when V8 collects it: the
   * lease holding the slot, or null when none does. Must never reference
   * the slot (the finalizer would keep it alive).
   */
  readonly tenancy: { lease: LeaseTicket | null } = { lease: null };
  readonly #backend: Backend;
  /** Whether the last queued reset was done by the calling thread (the backend's thread had not started it). */
  resetHere = false;
  /**
   * Whether the slot is a spare (src/spares.ts) no tenant has taken yet:
   * made in idle time, holding its image, never used.
   */
  spare = false;
  /**
   * The image the current (or last) tenant got at acquire: what a spare
   * replacing this slot must hold. Kept after retire() (which clears `image`).
   */
  tenantImage: MemoryImage | null = null;
  /** While resetting: the backend's ticket for the queued reset. -1 otherwise. */
  #ticket = -1;

  constructor(backend: Backend, size: SlotSize) {
    this.#backend = backend;
    this.size = size;
    this.key = sizeKey(size);
    this.initialBytes = size.initialPages * WASM_PAGE;
    takeMemoryAllocationFault();
    const descriptor: WebAssembly.MemoryDescriptor = { initial: size.initialPages };
    if (size.maximumPages !== null) descriptor.maximum = size.maximumPages;
    this.memory = newMemory(descriptor);
  }

  /**
   * clean -> leased, holding `image`. The fast path (same image) makes no
   * system call. On failure the slot is retired and the error rethrown.
   */
  acquire(image: MemoryImage | null): boolean {
    if (this.state !== 'clean') throw new Error(`wasm-cow internal error: acquire of a ${this.state} slot`);
    const fast = this.image === image;
    if (!fast) {
      try {
        if (this.image !== null) this.#backend.remove(this.memory, this.image);
        this.image = null;
        if (image !== null) this.#backend.place(this.memory, image);
        this.image = image;
      } catch (e) {
        this.retire();
        throw e;
      }
    }
    this.state = 'leased';
    this.bufferLent = false;
    this.exposed = false;
    this.spare = false;
    this.tenantImage = image;
    this.uses++;
    return fast;
  }

  /**
   * Makes a new slot a spare holding `image`: clean (all zero) -> clean
   * with the image placed, before any tenant. On failure the slot is
   * retired and the error rethrown.
   */
  stock(image: MemoryImage | null): void {
    if (this.state !== 'clean' || this.uses !== 0 || this.image !== null) {
      throw new Error(`wasm-cow internal error: stocking a ${this.state} slot that served ${this.uses} tenants`);
    }
    if (image !== null) {
      try {
        this.#backend.place(this.memory, image);
      } catch (e) {
        this.retire();
        throw e;
      }
    }
    this.image = image;
    this.spare = true;
  }

  /**
   * Ends a lease. With `background`, and a backend that can, the reset is
   * queued to the backend's thread: leased -> resetting. Otherwise it is
   * done now (see reset()): leased -> clean, or retired. Either way the
   * tenant's buffers are detached before this returns.
   */
  release(background: boolean): SlotState {
    if (this.state !== 'leased') throw new Error(`wasm-cow internal error: release of a ${this.state} slot`);
    if (background && this.#backend.beginReset) {
      let ticket: number | 'grown' | null;
      try {
        ticket = this.#backend.beginReset(this.memory, this.image, this.initialBytes);
      } catch {
        ticket = 'grown'; // cannot happen with valid arguments; never reuse the memory then
      }
      if (ticket === 'grown') {
        this.retire();
        return this.state;
      }
      if (ticket !== null) {
        this.#ticket = ticket;
        this.#detach();
        this.state = 'resetting';
        return this.state;
      }
    }
    this.reset();
    return this.state;
  }

  /**
   * resetting -> clean (or retired, if the reset failed or the memory grew
   * meanwhile) once the queued reset ended; with `wait`, waits for it.
   * Returns false while it is still running. Any other state: true.
   */
  settle(wait: boolean): boolean {
    if (this.state !== 'resetting') return true;
    const outcome = wait ? this.#backend.waitReset!(this.#ticket) : this.#backend.pollReset!(this.#ticket);
    if (outcome === 'pending') return false;
    this.#ticket = -1;
    this.resetHere = outcome === 'done-here';
    this.state = 'clean';
    if (outcome === 'failed' || bufferOf(this.memory).byteLength !== this.initialBytes) this.retire();
    else this.#dropDisposedImage();
    return true;
  }

  /**
   * leased -> clean: restore what the tenant wrote (the backend's reset:
   * dirty pages rewritten in place or discarded) and detach every buffer
   * it may hold. Returns false (and retires the slot) when the memory grew
   * or the reset failed.
   */
  reset(): boolean {
    if (this.state !== 'leased') throw new Error(`wasm-cow internal error: reset of a ${this.state} slot`);
    try {
      // The backend checks the length: a memory that grew is never reused.
      const r = this.#backend.reset(this.memory, this.image, this.initialBytes);
      if (r === 'grown') {
        this.retire();
        return false;
      }
      if (r === 'lost') this.image = null;
    } catch {
      this.retire();
      return false;
    }
    this.#detach();
    this.state = 'clean';
    return this.#dropDisposedImage();
  }

  /** grow(0) detaches the current ArrayBuffer; the next tenant gets a new one. */
  #detach(): void {
    if (this.bufferLent) growMemory(this.memory, 0);
    this.bufferLent = false;
  }

  /** A clean slot whose image's module is gone frees the image's pages rather than keep them. */
  #dropDisposedImage(): boolean {
    if (!this.image?.disposed) return true;
    try {
      this.#backend.remove(this.memory, this.image);
      this.image = null;
      return true;
    } catch {
      this.retire();
      return false;
    }
  }

  /**
   * Any state -> retired. Gives pages back now (V8 frees the rest at GC),
   * unless `keepPages`: a memory retired because its tenant may still reach
   * it is left as that tenant left it (whatever still holds it keeps
   * working on its own data, on both backends alike).
   */
  retire(keepPages = false): void {
    if (this.state === 'retired') return;
    // The reset thread must be done with the pages (settle may retire the slot itself).
    if (this.state === 'resetting') this.settle(true);
    if ((this.state as SlotState) === 'retired') return;
    // A buffer lent to the tenant is detached all the same (a memory that
    // grew is retired with the buffer it grew to still attached otherwise).
    if (this.bufferLent) this.#detach();
    this.state = 'retired';
    if (!keepPages) this.#backend.releasePages(this.memory);
    this.image = null;
  }
}
