/**
 * The portable backend: the image is kept as bytes and copied in.
 *
 * Reset compares the used range with its clean contents, 64 KiB at a time
 * (memcmp speed), and rewrites only what differs, page by page. Pages the
 * tenant never touched are only read, and reading an untouched anonymous
 * page maps the shared zero page: an idle pooled memory keeps no more
 * resident memory than its tenant dirtied.
 */
import type { Backend, ResetResult } from './backend.js';
import { copyImageIn } from './backend.js';
import type { FlatImage } from '../image/flatten.js';
import { MemoryImage } from '../image/image.js';
import { bufferOf } from '../memory.js';

const CHUNK = 65536;
const ZERO = Buffer.alloc(CHUNK);

export class CopyBackend implements Backend {
  readonly kind = 'copy' as const;
  readonly pageSize: number;

  constructor(pageSize = 4096) {
    this.pageSize = pageSize;
  }

  createImage(flat: FlatImage): { image: MemoryImage; fallback: Error | null } {
    return { image: MemoryImage.fromBytes(flat.offset, flat.bytes), fallback: null };
  }

  place(memory: WebAssembly.Memory, image: MemoryImage): void {
    copyImageIn(memory, image);
  }

  remove(memory: WebAssembly.Memory, image: MemoryImage): void {
    new Uint8Array(bufferOf(memory), image.offset, image.length).fill(0);
  }

  reset(memory: WebAssembly.Memory, image: MemoryImage | null, length: number): ResetResult {
    const buffer = bufferOf(memory);
    if (buffer.byteLength !== length) return 'grown';
    const mem = Buffer.from(buffer, 0, length);
    const bytes = image?.bytes ?? null;
    const imgStart = bytes && image ? image.offset : 0;
    const imgEnd = bytes && image ? image.offset + image.length : 0;
    for (let p = 0; p < length; p += CHUNK) {
      const end = Math.min(length, p + CHUNK);
      if (end <= imgStart || p >= imgEnd) {
        restore(mem, p, end, null, 0);
      } else {
        // Split the chunk at the image's edges (both are page-aligned).
        const a = Math.max(p, imgStart);
        const b = Math.min(end, imgEnd);
        if (p < a) restore(mem, p, a, null, 0);
        restore(mem, a, b, bytes, imgStart);
        if (b < end) restore(mem, b, end, null, 0);
      }
    }
    return 'kept';
  }

  releasePages(): void {
    // Nothing portable can return pages; the memory is freed at GC.
  }
}

/**
 * Makes mem[from, to) equal to the clean contents: `src[from - srcBase ..]`
 * when src is given, zero otherwise. Compares first, writes per page only
 * where different.
 */
function restore(mem: Buffer, from: number, to: number, src: Uint8Array | null, srcBase: number): void {
  const want = (a: number, b: number): Uint8Array =>
    src ? src.subarray(a - srcBase, b - srcBase) : ZERO.subarray(0, b - a);
  if (Buffer.compare(mem.subarray(from, to), want(from, to)) === 0) return;
  const PAGE = 4096;
  for (let p = from; p < to; p += PAGE) {
    const q = Math.min(to, p + PAGE);
    const clean = want(p, q);
    const page = mem.subarray(p, q);
    if (Buffer.compare(page, clean) !== 0) page.set(clean);
  }
}
