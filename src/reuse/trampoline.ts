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
 * The only observable differences: one more JavaScript frame in a stack
 * trace, and a function import the module re-exports is, in the raw
 * instance's exports, the trampoline (through `lease.exports` every export
 * is a wrapper anyway). Cost: docs/api.md ("Instance reuse").
 */
type Fn = (...args: unknown[]) => unknown;

const apply = Reflect.apply;

const FIXED: ((cur: unknown[], i: number) => Fn)[] = [
  (cur, i) => () => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn();
  },
  (cur, i) => (a) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn(a);
  },
  (cur, i) => (a, b) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn(a, b);
  },
  (cur, i) => (a, b, c) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn(a, b, c);
  },
  (cur, i) => (a, b, c, d) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn(a, b, c, d);
  },
  (cur, i) => (a, b, c, d, e) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn(a, b, c, d, e);
  },
  (cur, i) => (a, b, c, d, e, f) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn(a, b, c, d, e, f);
  },
  (cur, i) => (a, b, c, d, e, f, g) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn(a, b, c, d, e, f, g);
  },
  (cur, i) => (a, b, c, d, e, f, g, h) => {
    const fn = cur[i] as Fn; // called as a plain function: `this` is undefined
    return fn(a, b, c, d, e, f, g, h);
  },
];

/** The trampoline for import `i` of `arity` parameters, calling `cur[i]`. */
export function trampoline(cur: unknown[], i: number, arity: number): Fn {
  const fixed = FIXED[arity];
  if (fixed !== undefined) return fixed(cur, i);
  return (...args: unknown[]) => apply(cur[i] as Fn, undefined, args);
}

const toSource = Function.prototype.toString;
const plainCache = new WeakMap<object, boolean>();

/**
 * Whether V8 would call `f` as an ordinary JavaScript function (through its
 * generic import wrapper): its source is JavaScript. A WebAssembly exported
 * function, a bound function, a callable Proxy and built-ins print
 * "[native code]": V8 may link those directly (a wasm function is called
 * without crossing to JavaScript, NaN bits and all), so they are not given
 * to a trampoline.
 */
export function isPlainFunction(f: unknown): boolean {
  if (typeof f !== 'function') return false;
  const known = plainCache.get(f);
  if (known !== undefined) return known;
  let plain: boolean;
  try {
    plain = !toSource.call(f).endsWith('{ [native code] }');
  } catch {
    plain = false;
  }
  plainCache.set(f, plain);
  return plain;
}
