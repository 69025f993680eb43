/**
 * A built memory image: the bytes one memory starts with, between `offset`
 * and `offset + length`, held either in a sealed memfd (native backend) or
 * as bytes (copy backend, or the native backend's fallback when a memfd
 * could not be made).
 *
 * Invariants:
 *  - `offset` and `length` are multiples of the host page size, length > 0
 *    (a memory whose image is all zero has no MemoryImage at all).
 *  - Exactly one of `fd` and `bytes` is non-null until dispose().
 *  - The contents never change: the memfd is sealed; `bytes` is private.
 *  - dispose() is idempotent; the fd is also closed by a finalizer if the
 *    image is garbage-collected without dispose(). Slots that still map the
 *    image keep working: a mapping holds its own reference to the file.
 */
import type { NativeBinding } from '../native/binding.js';

export type ImageStorage = 'memfd' | 'bytes';

const fdFinalizer = new FinalizationRegistry<{ fd: number; binding: NativeBinding }>(({ fd, binding }) => {
  try {
    binding.closeImage(fd);
  } catch {
    // Already closed; nothing to do from a finalizer.
  }
});

export class MemoryImage {
  readonly offset: number;
  readonly length: number;
  /** Where the image lives; fixed for life (a disposed memfd image stays 'memfd': its mappings read it). */
  readonly storage: ImageStorage;
  #fd: number | null;
  #bytes: Uint8Array | null;
  #binding: NativeBinding | null;
  #disposed = false;

  private constructor(offset: number, length: number, fd: number | null, bytes: Uint8Array | null, binding: NativeBinding | null) {
    this.offset = offset;
    this.length = length;
    this.#fd = fd;
    this.#bytes = bytes;
    this.#binding = binding;
    this.storage = fd !== null ? 'memfd' : 'bytes';
  }

  static fromMemfd(offset: number, length: number, fd: number, binding: NativeBinding): MemoryImage {
    const image = new MemoryImage(offset, length, fd, null, binding);
    fdFinalizer.register(image, { fd, binding }, image);
    return image;
  }

  static fromBytes(offset: number, bytes: Uint8Array): MemoryImage {
    return new MemoryImage(offset, bytes.length, null, bytes, null);
  }

  /** The memfd, or null for a bytes image or once disposed. */
  get fd(): number | null {
    return this.#fd;
  }

  /** The bytes, or null for a memfd image or once disposed. */
  get bytes(): Uint8Array | null {
    return this.#bytes;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Closes the memfd (or drops the bytes). Mappings made earlier stay valid. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#fd !== null && this.#binding) {
      fdFinalizer.unregister(this);
      const fd = this.#fd;
      this.#fd = null;
      this.#binding.closeImage(fd);
    }
    this.#bytes = null;
  }
}
