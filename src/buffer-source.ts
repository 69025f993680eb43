/**
 * The bytes of a BufferSource as V8 reads them: through the internal slots
 * of an ArrayBuffer or TypedArray, never through properties a view (or a
 * subclass) may shadow. Shared by the register hook and the drop-in.
 */
import { isArrayBuffer, isSharedArrayBuffer, isTypedArray } from 'node:util/types';

// The TypedArray accessors as V8 reads them (internal slots), not as a
// subclass or an own property might redefine them.
const TypedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object;
const getter = (name: string) => Object.getOwnPropertyDescriptor(TypedArrayProto, name)!.get!;
const taBuffer = getter('buffer');
const taOffset = getter('byteOffset');
const taLength = getter('byteLength');

/**
 * The bytes of a BufferSource as V8 takes them (an ArrayBuffer, or any
 * TypedArray, including one over a SharedArrayBuffer; not a DataView, which
 * V8 rejects), without copying, or null for anything else. `shared` when
 * another thread may write them.
 */
export function bufferView(source: unknown): { bytes: Uint8Array; shared: boolean } | null {
  try {
    if (isArrayBuffer(source)) return { bytes: new Uint8Array(source), shared: false };
    if (isTypedArray(source)) {
      const buffer = taBuffer.call(source) as ArrayBufferLike;
      const bytes = new Uint8Array(buffer, taOffset.call(source) as number, taLength.call(source) as number);
      return { bytes, shared: isSharedArrayBuffer(buffer) };
    }
  } catch {
    // A detached buffer: V8 reports it.
  }
  return null;
}
