/**
 * The native backend: images live in sealed memfds and are mapped
 * MAP_PRIVATE|MAP_FIXED over a memory's pages; reset is madvise(DONTNEED),
 * whose cost follows the pages the tenant dirtied.
 */
import type { Backend } from './backend.js';
import { copyImageIn } from './backend.js';
import { NativeError } from '../errors.js';
import type { FlatImage } from '../image/flatten.js';
import { MemoryImage } from '../image/image.js';
import type { NativeBinding } from '../native/binding.js';
import { bufferOf } from '../memory.js';

export class NativeBackend implements Backend {
  readonly kind = 'native' as const;
  readonly pageSize: number;
  readonly #binding: NativeBinding;

  constructor(binding: NativeBinding) {
    this.#binding = binding;
    this.pageSize = binding.pageSize;
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
      throw new NativeError('mapping an image into a memory', e);
    }
  }

  remove(memory: WebAssembly.Memory, image: MemoryImage): void {
    try {
      this.#binding.mapZero(memory, image.offset, image.length);
    } catch (e) {
      throw new NativeError('unmapping an image from a memory', e);
    }
  }

  reset(memory: WebAssembly.Memory, image: MemoryImage | null, length: number): boolean {
    try {
      this.#binding.discard(memory, 0, length);
    } catch (e) {
      throw new NativeError('resetting a memory', e);
    }
    // A memfd mapping reads the image again; copied bytes are gone.
    return image === null || image.storage === 'memfd';
  }

  releasePages(memory: WebAssembly.Memory): void {
    try {
      this.#binding.discard(memory, 0, bufferOf(memory).byteLength);
    } catch {
      // Best effort: the pages go when V8 frees the memory.
    }
  }
}
