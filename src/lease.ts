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
import type { EngineCore, UnpooledLease } from './core.js';
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
  /**
   * Exported defined immutable globals of a number type, by name, with that
   * type: each lease hands out a Global of its own holding the same value,
   * as each native instance has its own (the instance's would be shared by
   * every tenant).
   */
  readonly fresh: ReadonlyMap<string, 'i32' | 'i64' | 'f32' | 'f64'>;
  /**
   * Called at release instead of returning the memories to the pool. The
   * pool replaces it then (its closure holds the pool's entry, and the entry
   * the instance's next lease: a released lease the program keeps must not
   * keep that one alive).
   */
  complete: (ticket: LeaseTicket, slots: readonly Slot[]) => void;
  /** The lease's CallState, set by the Lease constructor: the trampolines mark it raw when an import throws (src/reuse/trampoline.ts). */
  calls: CallState | null;
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
let viewLease: (lease: Lease) => LeaseView;

/** @internal What a snapshot reads of a live lease (src/snapshot/). */
export interface LeaseView {
  readonly instance: WebAssembly.Instance;
  /** The pooled memories, one per memory the module defines (empty when V8 made them). */
  readonly memories: readonly WebAssembly.Memory[];
  /** The exposure plan of the prepared module that made the lease (one object per module). */
  readonly plan: ExposurePlan;
  /** Whether a wrapped call is running. */
  readonly inCall: boolean;
  /** Whether JS could reach export `name` (a table, say) through what the lease handed out. */
  readonly reached: (name: string) => boolean;
}
const apply = Reflect.apply;
const defineProperty = Object.defineProperty;
/** @internal The slots of every lease with no pooled memory (one frozen array: a lease's list is only ever emptied, and this one is empty). */
export const NO_POOLED_MEMORY: Slot[] = Object.freeze([]) as unknown as Slot[];

/**
 * Everything a lease holds, in one object literal made at once: a lease is
 * one class instance with one private field, whatever it holds. On the
 * path that runs a module as V8 would, the lease is made right after V8
 * instantiated the module, when little of the engine is in the CPU caches:
 * each class instance, map transition and closure made there costs a
 * fraction of a microsecond (about 1 µs per class instance after a large
 * instantiation such as sql.js's). The state is also the CallState the
 * wrappers share, and the state of the lazy `lease.exports` (its target
 * holds only this object).
 */
interface LeaseState extends CallState, UnpooledLease {
  /** Null once released. */
  instance: WebAssembly.Instance | null;
  /** `lease.exports` (the Proxy), or null until read (and again after release). */
  exports: WebAssembly.Exports | null;
  /** Whether `lease.instance` was read. */
  instanceRead: boolean;
  readonly slots: Slot[];
  readonly core: EngineCore;
  /** The slots' ticket; for a lease without slots, its registration's (null until registered: EngineCore.watchUnpooled). */
  ticket: LeaseTicket | null;
  /** Neighbours on the core's list of unpooled leases waiting to be watched (EngineCore.watchUnpooled). */
  prev: LeaseState | null;
  next: LeaseState | null;
  readonly plan: ExposurePlan;
  /** Export names the engine added (src/reuse/internal.ts): never in `exports`. */
  readonly hidden: ReadonlySet<string> | null;
  /** For an instance of a module prepared with `reuse` (src/reuse/pool.ts), else null. */
  readonly reuse: ReuseTenancy | null;
  // The lazy `lease.exports` (lazyExports()), set when it is first read:
  /** The instance's exports as they were then (the instance is dropped at release). */
  source: WebAssembly.Exports | null;
  /** The slots as they were then: the lease's own list empties at release, and a memory read after it must still throw. */
  heldSlots: readonly Slot[];
  /** What `get` returned per name (wrappers keep their identity): the first here, the others in `made`. */
  firstName: string | null;
  first: unknown;
  made: Map<string, unknown> | null;
  /** Whether the target was filled and frozen (until then it is an empty, extensible object). */
  done: boolean;
  /** Accessor exports that were read, or null for none. */
  accessorsRead: Set<string> | null;
}

/** CallState.complete of every lease: returns the memories (once, see CallState). */
function completeLease(this: LeaseState): void {
  this.phase = 2;
  if (this.raw) exposeAll(this);
  // No slots now: none at construction either (the list is only ever emptied), so watched by watchUnpooled.
  const ticket = this.slots.length === 0 ? this.core.unwatchUnpooled(this) : this.ticket!;
  if (this.reuse !== null) this.reuse.complete(ticket, this.slots);
  else this.core.leaseReleased(ticket, this.slots);
  if (this.slots.length !== 0) this.slots.length = 0;
}

/** Raw access: none of the lease's memories may be reused. */
function exposeAll(s: LeaseState): void {
  if (s.reuse !== null) s.reuse.exposed = true;
  const slots = s.slots;
  for (let i = 0; i < slots.length; i++) slots[i]!.exposed = true;
}

export class Lease<T extends WebAssembly.Exports = WebAssembly.Exports> implements Disposable {
  readonly #s: LeaseState;

  /** @internal Created by PreparedModule.instantiate(). */
  constructor(
    core: EngineCore,
    instance: WebAssembly.Instance,
    slots: Slot[],
    plan: ExposurePlan,
    hidden: ReadonlySet<string> | null = null,
    reuse: ReuseTenancy | null = null,
  ) {
    const s: LeaseState = {
      phase: 0,
      depth: 0,
      raw: false,
      complete: completeLease,
      instance,
      exports: null,
      instanceRead: false,
      slots,
      core,
      ticket: null,
      prev: null,
      next: null,
      plan,
      hidden,
      reuse,
      source: null,
      heldSlots: NO_POOLED_MEMORY,
      firstName: null,
      first: undefined,
      made: null,
      done: false,
      accessorsRead: null,
    };
    this.#s = s;
    // A lease with no pooled memory is watched through its state, which
    // the lease, its `exports` and their functions hold.
    if (slots.length === 0) core.watchUnpooled(s);
    else s.ticket = core.watch(slots);
    if (reuse !== null) reuse.calls = s;
    if (plan.atInstantiation) exposeAll(s);
  }

  /**
   * The instance, as `new WebAssembly.Instance` returns it. Its exports are
   * the genuine ones, which release() cannot revoke: reading this retires
   * the lease's memories at release (they are not reused). Throws after
   * release().
   */
  get instance(): WebAssembly.Instance {
    const s = this.#s;
    if (s.phase !== 0) throw new ReleasedInstanceError('lease.instance read');
    s.instanceRead = true;
    exposeAll(s);
    return s.instance!;
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
    const s = this.#s;
    if (s.phase !== 0) throw new ReleasedInstanceError('lease.exports read');
    return (s.exports ??= lazyExports(s)) as T;
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
    const s = this.#s;
    if (s.phase !== 0) throw new ReleasedInstanceError('lease.memoryBuffer() called');
    const raw = s.instance!.exports;
    const key = name ?? s.plan.memoryExports[0] ?? firstMemory(raw);
    const value = key !== undefined && Object.hasOwn(raw, key) ? raw[key] : undefined;
    for (const slot of s.slots) if (slot.memory === value) return slot.lendBuffer();
    // Not pooled: a memory the caller supplied, or one V8 made (a module run as is).
    const buffer = value === undefined ? undefined : tryBuffer(value);
    if (buffer === undefined) {
      throw new InvalidArgumentError(name === undefined ? 'the module exports no memory' : `the module exports no memory named ${JSON.stringify(name)}`);
    }
    return buffer;
  }

  /** Whether release() was called (the memories return once no wrapped call is running). */
  get released(): boolean {
    return this.#s.phase !== 0;
  }

  /**
   * Returns the memories to the pool (or retires those handed out, see the
   * class comment). Idempotent. Called while a wrapped export of this lease
   * is running (from an import it called), the lease is released at once
   * but its memories return when the outermost such call ends.
   */
  release(): void {
    const s = this.#s;
    if (s.phase !== 0) return;
    s.instance = null;
    s.exports = null;
    if (s.depth > 0) {
      s.phase = 1;
      return;
    }
    s.complete();
  }

  [Symbol.dispose](): void {
    this.release();
  }

  static {
    peekInstance = (lease) => {
      const s = lease.#s;
      if (s.phase !== 0) throw new ReleasedInstanceError('lease read');
      return s.instance!;
    };
    viewLease = (lease) => {
      const s = lease.#s;
      if (s.phase !== 0) throw new ReleasedInstanceError('lease read');
      const rawExports = s.plan.rawExports;
      return {
        instance: s.instance!,
        memories: s.slots.map((slot) => slot.memory),
        plan: s.plan,
        inCall: s.depth > 0,
        // A plain export is handed out with lease.exports; an accessor when it is read.
        reached: (name) =>
          s.instanceRead || s.raw || (s.exports !== null && (!rawExports.has(name) || (s.accessorsRead !== null && s.accessorsRead.has(name)))),
      };
    };
  }
}

/**
 * `lease.exports`, built lazily: a Proxy whose `get` makes the wrapper of
 * an export (or runs the accessor's check) at its first read, so that a
 * lease pays for the exports it uses rather than for all of them (pglite
 * exports 2,128 functions: building every wrapper cost about 0.4 ms per
 * lease, more than the instantiation saved). Anything that looks at the
 * object's shape rather than reading a name (ownKeys, property
 * descriptors, `in` aside, extensibility, defining, deleting, setting,
 * setPrototypeOf) first materializes the target: the frozen, null-prototype
 * object the eager build made, holding the same wrappers already handed
 * out. The Proxy invariants hold at every step: until then the target is
 * empty and extensible (any `get` result is allowed), after it each trap
 * answers as the frozen target does.
 */
function lazyExports(s: LeaseState): WebAssembly.Exports {
  s.source = s.instance!.exports;
  // The slots as they are now: the lease's own list empties at release, and a memory read after it must still throw.
  if (s.slots.length !== 0) s.heldSlots = s.slots.slice();
  // One handler for every lease (nothing allocated for it per lease): the
  // traps find the lease's state in the target's private field.
  return new Proxy(new ExportsTarget(s) as unknown as WebAssembly.Exports, HANDLER);
}

/**
 * The target of a lease's `lease.exports`: empty and extensible until
 * materialize() fills and freezes it (null prototype). Its private field,
 * which no reflection shows, is how the shared traps find the lease's
 * state. Its prototype's `constructor` is Object, so that util.inspect
 * (which shows a Proxy's target) still prints it as `{}`.
 * util.inspect(x, { showProxy: true }) hands the target and the handler to
 * user code: the traps called with another object throw a TypeError (no
 * such private field), and with this lease's target they reach only this
 * lease's exports, as the Proxy does.
 */
let stateOf: (t: WebAssembly.Exports) => LeaseState;
class ExportsTarget {
  readonly #s: LeaseState;
  constructor(s: LeaseState) {
    this.#s = s;
  }
  static {
    stateOf = (t) => (t as unknown as ExportsTarget).#s;
    defineProperty(ExportsTarget.prototype, 'constructor', { value: Object });
  }
}

/** The frozen object the eager build made (the target, filled once). */
function filled(t: WebAssembly.Exports): WebAssembly.Exports {
  return materialize(stateOf(t), t);
}

/** Frozen: shared by every lease, and handed to user code by util.inspect(x, { showProxy: true }). */
const HANDLER: ProxyHandler<WebAssembly.Exports> = Object.freeze({
  get(t, key) {
    // A null-prototype object of string keys: a symbol reads undefined.
    return typeof key === 'string' ? getExport(stateOf(t), key) : undefined;
  },
  has(t, key) {
    return typeof key === 'string' && hasExport(stateOf(t), key);
  },
  ownKeys: (t) => Reflect.ownKeys(filled(t)),
  getOwnPropertyDescriptor: (t, key) => Reflect.getOwnPropertyDescriptor(filled(t), key),
  defineProperty: (t, key, d) => Reflect.defineProperty(filled(t), key, d),
  deleteProperty: (t, key) => Reflect.deleteProperty(filled(t), key),
  set: (t, key, v, receiver) => Reflect.set(filled(t), key, v, receiver),
  isExtensible: (t) => Reflect.isExtensible(filled(t)),
  preventExtensions: (t) => Reflect.preventExtensions(filled(t)),
  // The target's once filled; until then it is extensible, so any answer holds.
  getPrototypeOf: () => null,
  setPrototypeOf: (t, proto) => Reflect.setPrototypeOf(filled(t), proto),
} satisfies ProxyHandler<WebAssembly.Exports>);

/** `get` of a string key: the wrapper of an export (made at its first read), an accessor's read, or the export as is. */
function getExport(s: LeaseState, key: string): unknown {
  if (s.hidden !== null && s.hidden.has(key)) return undefined;
  if (key === s.firstName) return s.first;
  if (s.made !== null) {
    const made = s.made.get(key);
    if (made !== undefined) return made;
  }
  const value = s.source![key];
  if (value === undefined) return undefined;
  const kind = exportKind(s, key, value);
  if (kind === 'plain') return value;
  if (kind === 'function') {
    const fn = value as RawFunction;
    const rawExports = s.plan.rawExports;
    const w = rawExports.size > 0 && rawExports.has(key) ? wrapReturningFunctions(fn, s, key) : wrap(fn, s, key);
    if (s.firstName === null) {
      s.firstName = key;
      s.first = w;
    } else {
      (s.made ??= new Map()).set(key, w);
    }
    return w;
  }
  return readAccessor(s, key, value, kind);
}

function hasExport(s: LeaseState, key: string): boolean {
  return Object.hasOwn(s.source!, key) && !(s.hidden !== null && s.hidden.has(key));
}

/** Fills and freezes the target as the eager build made it (with the wrappers handed out so far), once. */
function materialize(s: LeaseState, t: WebAssembly.Exports): WebAssembly.Exports {
  if (s.done) return t;
  Reflect.setPrototypeOf(t, null); // made as an ExportsTarget: cheaper than a null-prototype object (its private field stays)
  const out = t as Record<string, unknown>;
  const raw = s.source!;
  for (const name of Object.keys(raw)) {
    if (s.hidden !== null && s.hidden.has(name)) continue;
    const value = raw[name]!;
    const kind = exportKind(s, name, value);
    if (kind === 'function') {
      out[name] = getExport(s, name);
    } else if (kind === 'plain') {
      out[name] = value;
    } else {
      // Slots are fixed when the accessor is made (the lease's list empties at release).
      defineProperty(out, name, { get: () => readAccessor(s, name, value, kind), enumerable: true });
    }
  }
  Object.freeze(out);
  s.done = true;
  return t;
}

type AccessorKind = 'raw' | 'guarded' | 'fresh' | Slot;

/**
 * Whether an export is wrapped, an accessor (the memory's slot; raw: it
 * can hold the instance's functions; guarded: a reused instance's table,
 * mutable global or tag, which the next tenant would share), a reused
 * instance's immutable global (fresh: a Global of the lease's own), or
 * handed out as is.
 */
function exportKind(s: LeaseState, name: string, value: WebAssembly.ExportValue): 'function' | 'plain' | AccessorKind {
  if (typeof value === 'function') return 'function';
  const slots = s.heldSlots;
  for (let i = 0; i < slots.length; i++) if (slots[i]!.memory === value) return slots[i]!;
  if (s.plan.rawExports.has(name)) return 'raw';
  const reuse = s.reuse;
  if (reuse === null) return 'plain';
  if (reuse.guarded.has(name)) return 'guarded';
  return reuse.fresh.has(name) ? 'fresh' : 'plain';
}

/** An accessor's read: handing this out cannot be revoked, so it is counted. */
function readAccessor(s: LeaseState, name: string, value: WebAssembly.ExportValue, kind: AccessorKind): unknown {
  if (s.phase !== 0) throw new ReleasedInstanceError(`export "${name}" read`);
  if (kind === 'fresh') return freshGlobal(s, name, value as WebAssembly.Global);
  (s.accessorsRead ??= new Set()).add(name);
  if (s.reuse !== null) s.reuse.exposed = true; // the next tenant's object: the instance is not reused
  if (kind === 'raw') exposeAll(s);
  else if (kind !== 'guarded') kind.exposed = true;
  return value;
}

/** A reused instance's immutable global, as a Global of this lease's own (made once; a NaN, whose bits a copy may not keep, is handed out as is). */
function freshGlobal(s: LeaseState, name: string, global: WebAssembly.Global): unknown {
  const made = s.made?.get(name);
  if (made !== undefined) return made;
  const v: unknown = global.value;
  if (typeof v === 'number' && Number.isNaN(v)) return readAccessor(s, name, global, 'guarded');
  const g = new WebAssembly.Global({ value: s.reuse!.fresh.get(name)!, mutable: false }, v as number);
  (s.made ??= new Map()).set(name, g);
  return g;
}

type RawFunction = (...args: unknown[]) => unknown;

/**
 * @internal For the engine's own tests and benchmarks only (not exported by
 * the package): the lease's instance, without counting it as handed out.
 * Whatever is read through it must not be kept past release().
 */
export function unexposedInstance(lease: Lease): WebAssembly.Instance {
  return peekInstance(lease);
}

/** @internal For src/snapshot/: the lease's state, read without counting anything as handed out. Throws after release(). */
export function leaseView(lease: Lease): LeaseView {
  return viewLease(lease);
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
