/**
 * The native backend: images live in sealed memfds and are mapped
 * MAP_PRIVATE|MAP_FIXED over a memory's pages. Reset finds the pages the
 * tenant dirtied (PAGEMAP_SCAN); up to `keepResident` bytes of them are
 * rewritten in place and stay resident (the next tenant does not fault them
 * in again), more are dropped with madvise(DONTNEED). Either way the cost
 * follows the pages dirtied, not the memory's size.
 */
import type { Backend, QueuedResetState, ResetResult } from './backend.js';
import { copyImageIn } from './backend.js';
import { NativeError, nativeFailure } from '../errors.js';
import type { FlatImage } from '../image/flatten.js';
import { MemoryImage } from '../image/image.js';
import type { NativeBinding } from '../native/binding.js';
import { bufferOf } from '../memory.js';
import { ResetQueue } from './reset-queue.js';

/** keepResident above this is the same as no bound. */
const MAX_KEEP_RESIDENT = 2 ** 52;

export class NativeBackend implements Backend {
  readonly kind = 'native' as const;
  readonly pageSize: number;
  readonly #binding: NativeBinding;
  /** Dirty bytes a reset may rewrite in place (page multiple); 0: always madvise. */
  readonly #keepResident: number;

  /** This thread's background reset queue, or null when resets run inline. */
  readonly #queue: ResetQueue | null;
  /** classifyPages' buffer, reused (grown as needed). */
  #marks = new Uint8Array(256);

  constructor(binding: NativeBinding, keepResident = 0, background = true) {
    this.#binding = binding;
    this.pageSize = binding.pageSize;
    // Infinity (or anything past 2^52 bytes) means no bound: every dirtied
    // page the scan can list is rewritten in place (the addon takes sizes up
    // to 2^53; no memory comes near 2^52 bytes).
    const keep = Math.min(keepResident, MAX_KEEP_RESIDENT);
    this.#keepResident = Math.floor(keep / binding.pageSize) * binding.pageSize;
    this.#queue = background ? ResetQueue.get(binding) : null;
  }

  /** Whether resets can be queued to this thread's background reset thread. */
  get backgroundReset(): boolean {
    return this.#queue !== null;
  }

  createImage(flat: FlatImage): { image: MemoryImage; fallback: Error | null } {
    try {
      const fd = this.#binding.createImage(flat.bytes);
      return { image: MemoryImage.fromMemfd(flat.offset, flat.length, fd, this.#binding), fallback: null };
    } catch (e) {
      // No memfd (fd limit, no memory, seals refused): keep the bytes and
      // copy them in at instantiation, as the copy backend does.
      return {
        image: MemoryImage.fromBytes(flat.offset, flat.bytes),
        fallback: new NativeError('creating a memfd image', e),
      };
    }
  }

  place(memory: WebAssembly.Memory, image: MemoryImage): void {
    const fd = image.fd;
    if (fd === null) {
      copyImageIn(memory, image);
      return;
    }
    try {
      this.#binding.mapImage(memory, fd, image.offset, image.length);
    } catch (e) {
      throw nativeFailure('mapping an image into a memory', e, fd);
    }
  }

  remove(memory: WebAssembly.Memory, image: MemoryImage): void {
    try {
      this.#binding.mapZero(memory, image.offset, image.length);
    } catch (e) {
      throw new NativeError('unmapping an image from a memory', e);
    }
  }

  reset(memory: WebAssembly.Memory, image: MemoryImage | null, length: number): ResetResult {
    try {
      if (image === null || image.fd !== null) {
        const fd = image?.fd ?? -1;
        const r = this.#binding.resetRange(memory, length, fd, image?.offset ?? 0, image?.length ?? 0, this.#keepResident);
        return r === -2 ? 'grown' : 'kept';
      }
      // A bytes image, or a memfd image already disposed (no fd to restore
      // from): the whole memory goes back to zero and the image is lost. The
      // image's own mapping goes first (madvise would bring its bytes back);
      // resetRange without an image replaces any other file mapping.
      if (bufferOf(memory).byteLength !== length) return 'grown';
      if (image.storage === 'memfd') this.#binding.mapZero(memory, image.offset, image.length);
      if (this.#binding.resetRange(memory, length, -1, 0, 0, this.#keepResident) === -2) return 'grown';
    } catch (e) {
      throw nativeFailure('resetting a memory', e, image?.fd ?? -1);
    }
    return 'lost';
  }

  beginReset(memory: WebAssembly.Memory, image: MemoryImage | null, length: number): number | 'grown' | null {
    // Only what reset() would do with resetRange: no image, or a live memfd.
    if (this.#queue === null || (image !== null && image.fd === null)) return null;
    try {
      return this.#queue.begin(memory, length, image?.fd ?? -1, image?.offset ?? 0, image?.length ?? 0, this.#keepResident);
    } catch (e) {
      throw new NativeError('queueing a reset', e);
    }
  }

  reapResets(): void {
    try {
      this.#queue?.reap();
    } catch {
      // Nothing held can be let go of then; a later call that passes a memory reaps.
    }
  }

  pollReset(ticket: number): QueuedResetState {
    return this.#queue!.poll(ticket);
  }

  waitReset(ticket: number): Exclude<QueuedResetState, 'pending'> {
    return this.#queue!.wait(ticket);
  }

  classifyPages(memory: WebAssembly.Memory, offset: number, length: number): Uint8Array | null {
    // One buffer, reused (see Backend.classifyPages): a new ArrayBuffer per
    // call counted against V8's external memory, which the caller's memories
    // fill, and a full collection often fell in this call.
    const pages = length / this.pageSize;
    if (this.#marks.length < pages) this.#marks = new Uint8Array(Math.max(pages, 2 * this.#marks.length));
    const out = this.#marks.subarray(0, pages);
    try {
      return this.#binding.nonZeroPages(memory, offset, length, out) < 0 ? null : out;
    } catch {
      return null; // cannot tell: nothing is taken as zero
    }
  }

  presentPages(memory: WebAssembly.Memory, offset: number, length: number): number | null {
    try {
      const n = this.#binding.presentPages(memory, offset, length);
      return n < 0 ? null : n;
    } catch {
      return null;
    }
  }

  mapImageRange(memory: WebAssembly.Memory, image: MemoryImage, offset: number, length: number): 'mapped' | 'write' {
    const fd = image.fd;
    if (fd === null) return 'write';
    try {
      this.#binding.mapImageAt(memory, fd, offset, length, offset - image.offset);
      return 'mapped';
    } catch (e) {
      if ((e as { zeroed?: unknown }).zeroed === true) return 'write';
      throw nativeFailure('mapping an image into a memory', e, fd);
    }
  }

  mappingCount(memory: WebAssembly.Memory, limit: number): number | null {
    try {
      const n = this.#binding.mappingCount(memory, limit);
      return n < 0 ? null : n;
    } catch {
      return null;
    }
  }

  processMappings(limit: number): number | null {
    try {
      const n = this.#binding.processMappings(limit);
      return n < 0 ? null : n;
    } catch {
      return null;
    }
  }

  releasePages(_memory: WebAssembly.Memory): void {
    // Nothing: V8 unmaps a dropped memory at GC, as it does every native
    // instance's memory, and a caller still holding the memory object keeps
    // its contents, as natively. Discarding the pages at once cost a TLB
    // shootdown and a walk of the whole range (measured on a 2-core VM: 10 µs
    // for a 2-page memory, 28 µs at 21 MiB, 40-150 µs at 64-256 MiB), more
    // than a small module's whole native instantiation, and the walk is done
    // again by V8's munmap.
  }
}
