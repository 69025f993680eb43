/**
 * The WebAssembly.Memory operations the engine performs on pooled memories,
 * taken from the built-ins when this module loads: a getter, `grow` or the
 * constructor replaced later by other code (on the prototype, on
 * `Function.prototype.call`, on the `WebAssembly` namespace) never sees a
 * pooled memory or its buffer.
 *
 * Pooled memories are plain `WebAssembly.Memory` objects, indistinguishable
 * from native ones (no own properties): what JS could reach of them is
 * tracked per lease, from what the lease handed out (lease.ts), never by
 * watching the memory.
 */

const MemoryCtor = WebAssembly.Memory;
const call = Function.prototype.call;

/** memory.buffer through the original getter. */
export const bufferOf = call.bind(Object.getOwnPropertyDescriptor(MemoryCtor.prototype, 'buffer')!.get!) as (
  memory: WebAssembly.Memory,
) => ArrayBuffer;

/** memory.grow(delta) through the original method. */
export const growMemory = call.bind(MemoryCtor.prototype.grow) as (memory: WebAssembly.Memory, delta: number) => number;

/** new WebAssembly.Memory(descriptor) through the original constructor. */
export function newMemory(descriptor: WebAssembly.MemoryDescriptor): WebAssembly.Memory {
  return new MemoryCtor(descriptor);
}
