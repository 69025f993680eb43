/**
 * A backend performs the page-level operations of a slot on one
 * WebAssembly.Memory. Two exist: `native` (memfd + mmap + madvise, through
 * the addon) and `copy` (portable: copies bytes). Both must leave a memory
 * with exactly the same contents; only cost differs.
 */
import type { FlatImage } from '../image/flatten.js';
import type { MemoryImage } from '../image/image.js';
import { bufferOf } from '../memory.js';

export type BackendKind = 'native' | 'copy';

export type ResetResult = 'kept' | 'lost' | 'grown';

export type QueuedResetState = 'pending' | 'done' | 'done-here' | 'failed';

export interface Backend {
  readonly kind: BackendKind;
  /** Host page size: images and ranges are aligned to it. */
  readonly pageSize: number;
  /**
   * Turns flattened bytes into an image. The native backend falls back to a
   * bytes image when a memfd cannot be made (`fallback` says why).
   */
  createImage(flat: FlatImage): { image: MemoryImage; fallback: Error | null };
  /** Makes [image.offset, +length) of a zero range hold the image. */
  place(memory: WebAssembly.Memory, image: MemoryImage): void;
  /** Makes [image.offset, +length) read zero again (undoing place). */
  remove(memory: WebAssembly.Memory, image: MemoryImage): void;
  /**
   * Restores [0, length) to its clean state: zero, with `image` (if any) in
   * place. 'kept': done; 'lost': done, but the image did not survive (the
   * range is all zero and the image must be placed again); 'grown': the
   * memory's byte length is not `length`, nothing was done.
   */
  reset(memory: WebAssembly.Memory, image: MemoryImage | null, length: number): ResetResult;
  /** Whether beginReset can queue resets to a background thread (absent: never). */
  readonly backgroundReset?: boolean;
  /**
   * Starts the same reset on a background thread, where the backend can.
   * Returns a ticket for pollReset/waitReset; 'grown' as for reset(); null
   * when it must be done inline with reset(). Until the ticket reports the
   * end, nothing may use the memory. A queued reset always ends 'kept'
   * (or fails).
   */
  beginReset?(memory: WebAssembly.Memory, image: MemoryImage | null, length: number): number | 'grown' | null;
  /**
   * A queued reset's state; 'pending' until it ended. Not 'pending' once:
   * the ticket is spent. 'done-here': the calling thread did it in
   * waitReset, the background thread had not started it.
   */
  pollReset?(ticket: number): QueuedResetState;
  /** Waits for a queued reset to end (doing it now if it has not started); the ticket is spent. */
  waitReset?(ticket: number): Exclude<QueuedResetState, 'pending'>;
  /** Lets go of what queued resets that ended still hold (memories, images): at close. */
  reapResets?(): void;
  /**
   * What each page of [offset, +length) holds now: 0 where the page holds
   * only zero bytes, 1 where it may hold anything else (a page mapped from a
   * file, ours or anyone's, is always 1). Null when the backend cannot tell:
   * then no page may be taken as zero. Absent: never can. The array is valid
   * until the next call (the backend may reuse its buffer: an allocation on
   * this path would draw V8's collections of the caller's memories into it).
   */
  classifyPages?(memory: WebAssembly.Memory, offset: number, length: number): Uint8Array | null;
  /**
   * How many pages of [offset, +length) the program already holds in memory
   * (an anonymous frame of their own: written, or zero-filled), found
   * without reading them; null when the backend cannot tell. A cost signal
   * (V8's copy onto such pages takes no page faults), never a statement
   * about what they hold. Absent: never can.
   */
  presentPages?(memory: WebAssembly.Memory, offset: number, length: number): number | null;
  /**
   * Maps the image's bytes over [offset, +length) of a memory whose pages
   * there hold only zeros (classifyPages said so, and nothing ran since):
   * the same bytes as writing the image there. 'write' when the image
   * cannot be mapped (no memfd) or mapping failed and the range holds zero
   * pages again: write the data instead. Throws when the range could not be
   * restored. Absent: never maps.
   */
  mapImageRange?(memory: WebAssembly.Memory, image: MemoryImage, offset: number, length: number): 'mapped' | 'write';
  /**
   * How many mappings (VMAs) cover the memory's bytes now, counted up to
   * `limit`; null when the backend cannot tell (then nothing is mapped into
   * a caller's memory). Present with mapImageRange.
   */
  mappingCount?(memory: WebAssembly.Memory, limit: number): number | null;
  /** The process's mappings (VMAs) now, counted up to `limit`; null when unknown. */
  processMappings?(limit: number): number | null;
  /** Gives a retired memory's pages back to the system early, where the backend finds it worth doing. */
  releasePages(memory: WebAssembly.Memory): void;
}

/** Copies a bytes image into memory. */
export function copyImageIn(memory: WebAssembly.Memory, image: MemoryImage): void {
  const bytes = image.bytes;
  if (!bytes) throw new Error('wasm-cow internal error: copying an image that has no bytes');
  new Uint8Array(bufferOf(memory), image.offset, image.length).set(bytes);
}
