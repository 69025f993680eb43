/**
 * Emscripten integration: a `Module.instantiateWasm` hook backed by a
 * prepared module, so that Emscripten glue (sql.js, quickjs-emscripten, any
 * `emcc` output) instantiates through wasm-cow instead of compiling and
 * copying the data itself.
 *
 *   const prepared = engine.prepare(wasmBytes);          // once
 *   const adapter = emscriptenAdapter(prepared);         // per module instance
 *   const SQL = await initSqlJs({ instantiateWasm: adapter.instantiateWasm });
 *   ...
 *   adapter.release();                                   // when done with it
 *
 * One adapter serves one instantiation. Emscripten glue keeps the raw
 * instance, its exports, its memory object and its function table for as
 * long as its Module lives, and none of that can be revoked: the adapter
 * hands the glue `lease.instance`, which counts as raw access, so at
 * release the lease's memories are retired, never reused. Calls into the
 * old Module after release keep running on that old memory, as the old
 * tenant left it; they can never reach the next tenant's memory (which is
 * another one). The image is still mapped copy-on-write at each
 * instantiation; what raw access costs is a new memory per instance.
 */
import { InvalidArgumentError } from '../errors.js';
import type { Lease } from '../lease.js';
import type { PreparedModule } from '../prepared.js';

/** Emscripten's callback: receives the instance (and module) and sets up the glue. */
export type ReceiveInstance = (instance: WebAssembly.Instance, module?: WebAssembly.Module) => unknown;

export class EmscriptenAdapter {
  readonly #prepared: PreparedModule;
  #lease: Lease | null = null;
  #used = false;

  constructor(prepared: PreparedModule) {
    this.#prepared = prepared;
  }

  /**
   * Pass as `Module.instantiateWasm`. Instantiates synchronously through
   * the engine, hands the instance to Emscripten and returns its exports.
   */
  readonly instantiateWasm = (imports: WebAssembly.Imports, receiveInstance: ReceiveInstance): WebAssembly.Exports => {
    if (this.#used) {
      throw new InvalidArgumentError('an EmscriptenAdapter serves one instantiation; create one per Emscripten module instance');
    }
    if (typeof receiveInstance !== 'function') throw new InvalidArgumentError('instantiateWasm needs Emscripten’s callback');
    this.#used = true;
    const lease = (this.#lease = this.#prepared.instantiate(imports));
    try {
      receiveInstance(lease.instance, this.#prepared.module);
    } catch (e) {
      this.release(); // the glue failed to set up: nothing will use the instance
      throw e;
    }
    return lease.instance.exports;
  };

  /** The lease, once Emscripten has instantiated (null before, and after release). */
  get lease(): Lease | null {
    return this.#lease;
  }

  /** Releases the instance: its memories are retired (see the module comment). Idempotent. */
  release(): void {
    this.#lease?.release();
    this.#lease = null;
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

/** An adapter for one Emscripten module instance. */
export function emscriptenAdapter(prepared: PreparedModule): EmscriptenAdapter {
  return new EmscriptenAdapter(prepared);
}
