/**
 * A lease: one instance and the pooled memories it runs on, until release().
 *
 * A memory goes to the next tenant only when nothing the released lease
 * handed out can still reach it. What a lease hands out is tracked here,
 * per lease and per memory (see docs/guarantees.md, "What a release
 * revokes"):
 *
 *  - revocable, the memory stays poolable: functions of `lease.exports`
 *    (wrappers that throw ReleasedInstanceError after release) and buffers
 *    from `lease.memoryBuffer()` (detached at release, by memory.grow(0));
 *  - not revocable, the memory is retired at release, never reused: an
 *    exported memory object read from `lease.exports` (that memory only),
 *    and raw access to the instance's own functions (all of the lease's
 *    memories): `lease.instance`, an exported table or global that can hold
 *    them, an export that returned one, or a module whose imports can pass
 *    them out (exposure.ts).
 *
 * A release() while a wrapped call is on the stack marks the lease released
 * (new calls throw) and returns the memories when the outermost wrapped
 * call returns or throws: the wasm code still running writes only to
 * memories no one else has.
 */
import type { EngineCore } from './core.js';
import { InvalidArgumentError, ReleasedInstanceError } from './errors.js';
import type { ExposurePlan } from './exposure.js';
import { bufferOf } from './memory.js';
import type { LeaseTicket, Slot } from './slot.js';

/** @internal A lease of a reused instance (src/reuse/pool.ts). */
export interface ReuseTenancy {
  /** Set when something that can outlive the lease reached the caller: the instance is then not reused. */
  exposed: boolean;
  /** Exports the next tenant would share (defined tables, mutable globals): reading one sets `exposed`. */
  readonly guarded: ReadonlySet<string>;
  /** Export names the engine added (src/reuse/internal.ts): never in `exports`. */
  readonly hidden: ReadonlySet<string>;
  /** The instance's export shape, made at its first lease and kept with the instance. */
  readonly shape: { value: ExportShape | null };
  /** Called at release instead of returning the memories to the pool. */
  readonly complete: (ticket: LeaseTicket, slots: readonly Slot[]) => void;
}

/** Shared by a lease and its wrappers. */
/** @internal */
export interface CallState {
  /** 0: live. 1: released while a wrapped call runs (memories not returned yet). 2: released. */
  phase: 0 | 1 | 2;
  /** Wrapped calls on the stack. */
  depth: number;
  /**
   * Whether a wrapped call handed out raw access: it ended by throwing (the
   * exception passed through the instance's frames, and V8's structured
   * stack trace gives `CallSite.getThis()`, the raw instance, for a wasm
   * frame), or it returned a function reference. complete() then retires
   * every memory of the lease. A plain store, so that the wrappers' catch
   * blocks make no call (a call there can overflow the stack and skip the
   * depth count).
   */
  raw: boolean;
  /** Returns the memories: once, from release() or from the outermost wrapped call ending after it. */
  readonly complete: () => void;
}

let peekInstance: (lease: Lease) => WebAssembly.Instance;
const apply = Reflect.apply;
const defineProperty = Object.defineProperty;

export class Lease<T extends WebAssembly.Exports = WebAssembly.Exports> implements Disposable {
  #instance: WebAssembly.Instance | null;
  #exports: T | null = null;
  readonly #slots: Slot[];
  readonly #core: EngineCore;
  readonly #ticket: LeaseTicket;
  readonly #plan: ExposurePlan;
  readonly #calls: CallState;
  /** For an instance of a module prepared with `reuse` (src/reuse/pool.ts), else null. */
  readonly #reuse: ReuseTenancy | null;

  /** @internal Created by PreparedModule.instantiate(). */
  constructor(core: EngineCore, instance: WebAssembly.Instance, slots: Slot[], plan: ExposurePlan, reuse: ReuseTenancy | null = null) {
    this.#core = core;
    this.#reuse = reuse;
    this.#instance = instance;
    this.#slots = slots;
    this.#plan = plan;
    this.#ticket = core.watch(slots);
    this.#calls = { phase: 0, depth: 0, raw: false, complete: () => this.#complete() };
    if (plan.atInstantiation) this.#exposeAll();
  }

  /**
   * The instance, as `new WebAssembly.Instance` returns it. Its exports are
   * the genuine ones, which release() cannot revoke: reading this retires
   * the lease's memories at release (they are not reused). Throws after
   * release().
   */
  get instance(): WebAssembly.Instance {
    if (this.#calls.phase !== 0) throw new ReleasedInstanceError('lease.instance read');
    this.#exposeAll();
    return this.#instance!;
  }

  /**
   * The instance's exports, revocable where they can be. Functions are
   * wrapped: a call after release() throws ReleasedInstanceError. An
   * exported memory, and a table or global that can hold the instance's
   * functions, is an accessor property: reading it hands out what release()
   * cannot revoke, so that memory (for a table or global: every memory of
   * the lease) is retired at release. Other globals, tags and memories the
   * caller supplied are the instance's own objects. Throws after release().
   */
  get exports(): T {
    if (this.#calls.phase !== 0) throw new ReleasedInstanceError('lease.exports read');
    return (this.#exports ??= this.#wrap(this.#instance!.exports) as T);
  }

  /**
   * The current ArrayBuffer of the exported memory `name` (default: the
   * first memory the module exports), revocably: at release it is detached
   * (length 0) and the memory stays poolable. After `memory.grow` the
   * buffer is detached by V8 as natively; call again for the new one.
   * Throws InvalidArgumentError when the module exports no such memory,
   * ReleasedInstanceError after release().
   */
  memoryBuffer(name?: string): ArrayBuffer {
    if (this.#calls.phase !== 0) throw new ReleasedInstanceError('lease.memoryBuffer() called');
    const raw = this.#instance!.exports;
    const key = name ?? this.#plan.memoryExports[0] ?? firstMemory(raw);
    const value = key !== undefined && Object.hasOwn(raw, key) ? raw[key] : undefined;
    for (const s of this.#slots) if (s.memory === value) return s.lendBuffer();
    // Not pooled: a memory the caller supplied, or one V8 made (a module run as is).
    const buffer = value === undefined ? undefined : tryBuffer(value);
    if (buffer === undefined) {
      throw new InvalidArgumentError(name === undefined ? 'the module exports no memory' : `the module exports no memory named ${JSON.stringify(name)}`);
    }
    return buffer;
  }

  /** Whether release() was called (the memories return once no wrapped call is running). */
  get released(): boolean {
    return this.#calls.phase !== 0;
  }

  /**
   * Returns the memories to the pool (or retires those handed out, see the
   * class comment). Idempotent. Called while a wrapped export of this lease
   * is running (from an import it called), the lease is released at once
   * but its memories return when the outermost such call ends.
   */
  release(): void {
    const calls = this.#calls;
    if (calls.phase !== 0) return;
    this.#instance = null;
    this.#exports = null;
    if (calls.depth > 0) {
      calls.phase = 1;
      return;
    }
    this.#complete();
  }

  [Symbol.dispose](): void {
    this.release();
  }

  static {
    peekInstance = (lease) => {
      if (lease.#calls.phase !== 0) throw new ReleasedInstanceError('lease read');
      return lease.#instance!;
    };
  }

  #complete(): void {
    this.#calls.phase = 2;
    if (this.#calls.raw) this.#exposeAll();
    if (this.#reuse !== null) this.#reuse.complete(this.#ticket, this.#slots);
    else this.#core.leaseReleased(this.#ticket, this.#slots);
    this.#slots.length = 0;
  }

  /** Raw access: none of the lease's memories may be reused. */
  #exposeAll(): void {
    if (this.#reuse !== null) this.#reuse.exposed = true;
    for (const s of this.#slots) s.exposed = true;
  }

  #wrap(raw: WebAssembly.Exports): WebAssembly.Exports {
    if (this.#reuse !== null) return this.#wrapShaped(this.#reuse, raw);
    const calls = this.#calls;
    const slots = this.#slots;
    const rawExports = this.#plan.rawExports.size > 0 ? this.#plan.rawExports : null;
    const exposeAll = () => this.#exposeAll();
    const out: Record<string, WebAssembly.ExportValue> = Object.create(null);
    for (const name of Object.keys(raw)) {
      const value = raw[name]!;
      if (typeof value === 'function') {
        const fn = value as RawFunction;
        out[name] = (rawExports?.has(name) ? wrapReturningFunctions(fn, calls, name) : wrap(fn, calls, name)) as WebAssembly.ExportValue;
        continue;
      }
      let slot: Slot | undefined;
      for (let i = 0; i < slots.length; i++) if (slots[i]!.memory === value) slot = slots[i];
      if (slot !== undefined || rawExports?.has(name)) {
        // Handing this out cannot be revoked: count it when it is read.
        const s = slot;
        defineProperty(out, name, {
          get: () => {
            if (calls.phase !== 0) throw new ReleasedInstanceError(`export "${name}" read`);
            if (s !== undefined) s.exposed = true;
            else exposeAll();
            return value;
          },
          enumerable: true,
        });
        continue;
      }
      out[name] = value;
    }
    return Object.freeze(out);
  }

  /** #wrap for a reused instance, from its export shape (made at its first lease). */
  #wrapShaped(reuse: ReuseTenancy, raw: WebAssembly.Exports): WebAssembly.Exports {
    const calls = this.#calls;
    const slots = this.#slots;
    const shape = (reuse.shape.value ??= this.#shape(reuse, raw));
    const exposeAll = () => this.#exposeAll();
    const out: Record<string, unknown> = Object.create(null);
    for (let i = 0; i < shape.length; i++) {
      const e = shape[i]!;
      const name = e.name;
      if (e.kind === 0) out[name] = e.make!(e.value as RawFunction, calls, name);
      else if (e.kind === 1) out[name] = wrapReturningFunctions(e.value as RawFunction, calls, name);
      else if (e.kind === 3) out[name] = e.value;
      else {
        const s = e.slot >= 0 ? slots[e.slot] : undefined;
        const { all, guarded, value } = e;
        defineProperty(out, name, {
          get: () => {
            if (calls.phase !== 0) throw new ReleasedInstanceError(`export "${name}" read`);
            // A reused instance's table or global is the next tenant's: the instance is not reused.
            reuse.exposed = true;
            if (s !== undefined) s.exposed = true;
            if (all || (s === undefined && !guarded)) exposeAll();
            return value;
          },
          enumerable: true,
        });
      }
    }
    return Object.freeze(out) as WebAssembly.Exports;
  }

  #shape(reuse: ReuseTenancy, raw: WebAssembly.Exports): ExportShape {
    const rawExports = this.#plan.rawExports;
    const slots = this.#slots;
    const out: ExportShape[number][] = [];
    for (const name of Object.keys(raw)) {
      if (reuse.hidden.has(name)) continue; // the engine's private exports (src/reuse/internal.ts)
      const value = raw[name]!;
      const base = { name, value, make: null, slot: -1, all: false, guarded: false };
      if (typeof value === 'function') {
        const fn = value as RawFunction;
        if (rawExports.has(name)) out.push({ ...base, kind: 1 });
        else out.push({ ...base, kind: 0, make: FIXED[fn.length] ?? ((f, c, n) => wrap(f, c, n)) });
        continue;
      }
      const slot = slots.findIndex((s) => s.memory === value);
      const guarded = reuse.guarded.has(name);
      if (slot >= 0 || rawExports.has(name) || guarded) out.push({ ...base, kind: 2, slot, all: rawExports.has(name), guarded });
      else out.push({ ...base, kind: 3 });
    }
    return out;
  }
}

type RawFunction = (...args: unknown[]) => unknown;

/**
 * @internal What lease.exports is made of, per export of a reused
 * instance: computed once per instance (its exports never change), so that
 * each lease only makes the wrappers. Kinds: 0 a wrapped function, 1 a
 * function whose result can be a function reference, 2 an accessor (a
 * memory: `slot` its index in the lease's slots, or -1; `all`: every memory
 * is exposed), 3 a plain value.
 */
export type ExportShape = readonly {
  readonly name: string;
  readonly value: unknown;
  readonly kind: 0 | 1 | 2 | 3;
  readonly make: ((fn: RawFunction, c: CallState, name: string) => RawFunction) | null;
  readonly slot: number;
  readonly all: boolean;
  readonly guarded: boolean;
}[];

/**
 * @internal For the engine's own tests and benchmarks only (not exported by
 * the package): the lease's instance, without counting it as handed out.
 * Whatever is read through it must not be kept past release().
 */
export function unexposedInstance(lease: Lease): WebAssembly.Instance {
  return peekInstance(lease);
}

function released(name: string): never {
  throw new ReleasedInstanceError(`export "${name}" called`);
}

/*
 * Wrappers of fixed arity, chosen by the wasm function's `length` (its
 * parameter count): a wasm function ignores extra arguments and takes
 * missing ones as undefined, so passing exactly `length` of them is
 * exact, and cheaper than rest arguments. Arrow functions, like genuine
 * exports, are not constructors. Each keeps the count of wrapped calls on
 * the stack, for a release() from inside one. The count is taken down on
 * both paths, inline rather than in a finally or a helper: no call can
 * come between a return or throw and the decrement (a call in a catch can
 * itself overflow the stack, after a stack overflow, and leave the count
 * above zero). Only the outermost call, where the stack has unwound,
 * calls complete() (there `phase !== 0` means 1: 2 is set only with no
 * call on the stack). A throw marks the lease raw (CallState.raw).
 */
const FIXED: ((fn: RawFunction, c: CallState, name: string) => RawFunction)[] = [
  (fn, c, name) => () => {
    if (c.phase !== 0) released(name);
    c.depth++;
    let r: unknown;
    try {
      r = fn();
    } catch (x) {
      c.raw = true;
      if (--c.depth === 0 && c.phase !== 0) c.complete();
      throw x;
    }
    if (--c.depth === 0 && c.phase !== 0) c.complete();
    return r;
  },
  (fn, c, name) => (a) => {
    if (c.phase !== 0) released(name);
    c.depth++;
    let r: unknown;
    try {
      r = fn(a);
    } catch (x) {
      c.raw = true;
      if (--c.depth === 0 && c.phase !== 0) c.complete();
      throw x;
    }
    if (--c.depth === 0 && c.phase !== 0) c.complete();
    return r;
  },
  (fn, c, name) => (a, b) => {
    if (c.phase !== 0) released(name);
    c.depth++;
    let r: unknown;
    try {
      r = fn(a, b);
    } catch (x) {
      c.raw = true;
      if (--c.depth === 0 && c.phase !== 0) c.complete();
      throw x;
    }
    if (--c.depth === 0 && c.phase !== 0) c.complete();
    return r;
  },
  (fn, c, name) => (a, b, d) => {
    if (c.phase !== 0) released(name);
    c.depth++;
    let r: unknown;
    try {
      r = fn(a, b, d);
    } catch (x) {
      c.raw = true;
      if (--c.depth === 0 && c.phase !== 0) c.complete();
      throw x;
    }
    if (--c.depth === 0 && c.phase !== 0) c.complete();
    return r;
  },
  (fn, c, name) => (a, b, d, e) => {
    if (c.phase !== 0) released(name);
    c.depth++;
    let r: unknown;
    try {
      r = fn(a, b, d, e);
    } catch (x) {
      c.raw = true;
      if (--c.depth === 0 && c.phase !== 0) c.complete();
      throw x;
    }
    if (--c.depth === 0 && c.phase !== 0) c.complete();
    return r;
  },
  (fn, c, name) => (a, b, d, e, f) => {
    if (c.phase !== 0) released(name);
    c.depth++;
    let r: unknown;
    try {
      r = fn(a, b, d, e, f);
    } catch (x) {
      c.raw = true;
      if (--c.depth === 0 && c.phase !== 0) c.complete();
      throw x;
    }
    if (--c.depth === 0 && c.phase !== 0) c.complete();
    return r;
  },
  (fn, c, name) => (a, b, d, e, f, g) => {
    if (c.phase !== 0) released(name);
    c.depth++;
    let r: unknown;
    try {
      r = fn(a, b, d, e, f, g);
    } catch (x) {
      c.raw = true;
      if (--c.depth === 0 && c.phase !== 0) c.complete();
      throw x;
    }
    if (--c.depth === 0 && c.phase !== 0) c.complete();
    return r;
  },
];

function wrap(fn: RawFunction, calls: CallState, name: string): RawFunction {
  const fixed = FIXED[fn.length];
  if (fixed !== undefined) return fixed(fn, calls, name);
  const w = (...args: unknown[]): unknown => {
    if (calls.phase !== 0) released(name);
    calls.depth++;
    let r: unknown;
    try {
      r = apply(fn, undefined, args);
    } catch (x) {
      calls.raw = true;
      if (--calls.depth === 0 && calls.phase !== 0) calls.complete();
      throw x;
    }
    if (--calls.depth === 0 && calls.phase !== 0) calls.complete();
    return r;
  };
  return withLength(w, fn.length);
}

/**
 * An export whose results can hold a function reference: a function it
 * returns is one of the instance's own (raw), so returning one counts as
 * raw access.
 */
function wrapReturningFunctions(fn: RawFunction, calls: CallState, name: string): RawFunction {
  const w = (...args: unknown[]): unknown => {
    if (calls.phase !== 0) released(name);
    calls.depth++;
    let result: unknown;
    try {
      result = apply(fn, undefined, args);
    } catch (x) {
      calls.raw = true;
      if (--calls.depth === 0 && calls.phase !== 0) calls.complete();
      throw x;
    }
    // Counted before the depth: a release() during the call returns the
    // memories there, and they must know what was handed out.
    if (result !== null && (typeof result === 'object' || typeof result === 'function')) calls.raw = true;
    if (--calls.depth === 0 && calls.phase !== 0) calls.complete();
    return result;
  };
  return withLength(w, fn.length);
}

function withLength(w: RawFunction, length: number): RawFunction {
  defineProperty(w, 'length', { value: length });
  return w;
}

function tryBuffer(value: unknown): ArrayBuffer | undefined {
  try {
    return bufferOf(value as WebAssembly.Memory);
  } catch {
    return undefined;
  }
}

/** The first export that is a memory (for a module whose exports were not read at prepare). */
function firstMemory(raw: WebAssembly.Exports): string | undefined {
  for (const name of Object.keys(raw)) if (tryBuffer(raw[name]) !== undefined) return name;
  return undefined;
}
