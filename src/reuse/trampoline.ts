/**
 * Function-import trampolines for reused instances.
 *
 * A reused instance is linked once, to trampolines; each lease brings its
 * own imports. The trampoline for import i calls `current[i]` (the current
 * lease's function) with exactly the arguments V8 passed (the import's
 * parameter count: fixed-arity closures, as the export wrappers in
 * lease.ts) and `this` undefined, as V8 calls an import, and returns its
 * result for V8 to convert, as it converts an import's result. So a plain
 * JavaScript import sees the same calls, arguments and conversions as when
 * linked directly. (An import that V8 would link directly, a WebAssembly
 * function or a native one, is not given to a trampoline: such a lease gets
 * an instance of its own, see pool.ts.)
 *
 * An import that throws marks the lease raw (see FIXED).
 *
 * The only observable differences: one more JavaScript frame in a stack
 * trace, and a function import the module re-exports is, in the raw
 * instance's exports, the trampoline (through `lease.exports` every export
 * is a wrapper anyway). Cost: docs/api.md ("Instance reuse").
 */
type Fn = (...args: unknown[]) => unknown;

/**
 * Where a trampoline records that an import threw: the current lease's
 * CallState (lease.ts), or a stand-in before the lease exists (the start
 * function) and after release. A plain store in the catch block, no call
 * (a call there can overflow the stack), as in lease.ts's wrappers.
 */
export interface Thrown {
  raw: boolean;
}

const apply = Reflect.apply;

/**
 * One per arity. An exception from the import is rethrown as it is; on
 * its way out it passes through the instance's frames, and V8's
 * structured stack trace (CallSite.getThis()) then holds the raw instance,
 * even when the wasm code catches it and returns normally: the lease is
 * marked raw (`cur[s].raw`), so the instance is dropped at release and its
 * memories retired. The non-throwing path costs only the try.
 */
const FIXED: ((cur: unknown[], i: number, s: number) => Fn)[] = [
  (cur, i, s) => () => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn();
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
  (cur, i, s) => (a) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn(a);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
  (cur, i, s) => (a, b) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn(a, b);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
  (cur, i, s) => (a, b, c) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn(a, b, c);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
  (cur, i, s) => (a, b, c, d) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn(a, b, c, d);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
  (cur, i, s) => (a, b, c, d, e) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn(a, b, c, d, e);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
  (cur, i, s) => (a, b, c, d, e, f) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn(a, b, c, d, e, f);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
  (cur, i, s) => (a, b, c, d, e, f, g) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn(a, b, c, d, e, f, g);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
  (cur, i, s) => (a, b, c, d, e, f, g, h) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    try {
      return fn(a, b, c, d, e, f, g, h);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  },
];

/**
 * The trampoline for import `i` of `arity` parameters, calling `cur[i]`;
 * `cur[s]` is where it records a throw (Thrown).
 */
export function trampoline(cur: unknown[], i: number, arity: number, s: number): Fn {
  const fixed = FIXED[arity];
  if (fixed !== undefined) return fixed(cur, i, s);
  return (...args: unknown[]) => {
    try {
      return apply(cur[i] as Fn, undefined, args);
    } catch (x) {
      (cur[s] as Thrown).raw = true;
      throw x;
    }
  };
}

const toSource = Function.prototype.toString;

/**
 * Answers remembered for functions seen before. Remembering pays when
 * the same functions come back (a tenant's import object kept across
 * leases): a lookup is about 10 ns against about 60 ns to ask toString.
 * It costs when they never do (a new WASI object or closures per request):
 * an insertion is about 350 ns of ephemeron-table and GC work, which took
 * sql.js's reuse cycle with 40 fresh function imports from 9.1 to 15.5 µs.
 * So answers are remembered only while lookups find them at least as
 * often as they are stored: past `REMEMBER_FREE` stores with fewer hits
 * than stores, nothing more is stored, and every `PROBE_EVERY` misses both
 * counts are halved, so that a change of pattern is noticed.
 */
const plainCache = new WeakMap<object, boolean>();
const REMEMBER_FREE = 256;
const PROBE_EVERY = 4096;
const remembering = { stored: 0, hits: 0, misses: 0 };

/**
 * Whether V8 would call `f` as an ordinary JavaScript function (through its
 * generic import wrapper): its source is JavaScript. A WebAssembly exported
 * function, a bound function, a callable Proxy and built-ins print
 * "[native code]": V8 may link those directly (a wasm function is called
 * without crossing to JavaScript, NaN bits and all), so they are not given
 * to a trampoline. The answer for a function object never changes.
 */
export function isPlainFunction(f: unknown): boolean {
  if (typeof f !== 'function') return false;
  const r = remembering;
  const known = plainCache.get(f);
  if (known !== undefined) {
    r.hits++;
    return known;
  }
  let plain: boolean;
  try {
    plain = !toSource.call(f).endsWith('{ [native code] }');
  } catch {
    plain = false;
  }
  if (r.stored < REMEMBER_FREE || r.hits >= r.stored) {
    plainCache.set(f, plain);
    r.stored++;
  }
  if (++r.misses >= PROBE_EVERY) {
    r.misses = 0;
    r.stored >>= 1;
    r.hits >>= 1;
  }
  return plain;
}
