/**
 * A lease: one instance and the pooled memories it runs on, until release().
 *
 * release() resets the memories and hands them to the next instance. What it
 * revokes:
 *  - `lease.instance` and `lease.exports` throw ReleasedInstanceError;
 *  - functions taken from `lease.exports` throw ReleasedInstanceError;
 *  - every ArrayBuffer of the lease's memories is detached (length 0).
 * What it cannot revoke, and the caller must not keep past release():
 *  - the WebAssembly.Instance itself and functions taken from
 *    `instance.exports` (they would run on the next tenant's memory);
 *  - exported WebAssembly.Memory objects (the same object serves the next
 *    tenant; its `buffer` would show that tenant's data).
 */
import type { EngineCore } from './core.js';
import { ReleasedInstanceError } from './errors.js';
import type { LeaseTicket, Slot } from './slot.js';

export class Lease<T extends WebAssembly.Exports = WebAssembly.Exports> implements Disposable {
  #instance: WebAssembly.Instance | null;
  #exports: T | null = null;
  #released = false;
  readonly #slots: Slot[];
  readonly #core: EngineCore;
  readonly #ticket: LeaseTicket;

  /** @internal Created by PreparedModule.instantiate(). */
  constructor(core: EngineCore, instance: WebAssembly.Instance, slots: Slot[]) {
    this.#core = core;
    this.#instance = instance;
    this.#slots = slots;
    this.#ticket = core.watch(slots);
  }

  /** The instance, as `new WebAssembly.Instance` returns it. Throws after release(). */
  get instance(): WebAssembly.Instance {
    if (this.#instance === null) throw new ReleasedInstanceError('lease.instance read');
    return this.#instance;
  }

  /**
   * The instance's exports. Functions are wrapped so that calling one after
   * release() throws ReleasedInstanceError; memories, tables and globals are
   * the instance's own objects.
   */
  get exports(): T {
    if (this.#instance === null) throw new ReleasedInstanceError('lease.exports read');
    if (this.#exports === null) this.#exports = guardExports(this.#instance.exports, this) as T;
    return this.#exports;
  }

  get released(): boolean {
    return this.#released;
  }

  /** Returns the memories to the pool. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#instance = null;
    this.#exports = null;
    this.#core.leaseReleased(this.#ticket, this.#slots);
    this.#slots.length = 0;
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

function guardExports(exports: WebAssembly.Exports, state: { readonly released: boolean }): WebAssembly.Exports {
  const out: Record<string, WebAssembly.ExportValue> = Object.create(null);
  for (const name of Object.keys(exports)) {
    const value = exports[name]!;
    if (typeof value === 'function') {
      const fn = value as (...args: unknown[]) => unknown;
      out[name] = function (this: unknown, ...args: unknown[]): unknown {
        if (state.released) throw new ReleasedInstanceError(`export "${name}" called`);
        return Reflect.apply(fn, this, args);
      } as WebAssembly.ExportValue;
    } else {
      out[name] = value;
    }
  }
  return Object.freeze(out);
}
