/**
 * Access to a WebAssembly.Memory's buffer that cannot be intercepted, and the
 * watch that tells whether a tenant's JavaScript could hold its buffer.
 */

const bufferGetter = Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, 'buffer')!.get! as (
  this: WebAssembly.Memory,
) => ArrayBuffer;

/** memory.buffer through the original getter (own properties bypassed). */
export function bufferOf(memory: WebAssembly.Memory): ArrayBuffer {
  return bufferGetter.call(memory);
}

/**
 * Makes `memory.buffer` report each read to `onRead`. An own accessor,
 * non-configurable, that calls the original getter: reads from JS (user
 * code, Emscripten glue, node:wasi) are seen; wasm code never reads it.
 */
export function watchBuffer(memory: WebAssembly.Memory, onRead: () => void): void {
  Object.defineProperty(memory, 'buffer', {
    get() {
      onRead();
      return bufferGetter.call(memory);
    },
    enumerable: true,
    configurable: false,
  });
}
