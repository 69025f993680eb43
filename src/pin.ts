/**
 * Reading a module's imports once, as V8 reads them, for modules whose
 * images depend on the imports (conditional.ts).
 *
 * Such a module's instantiation uses the imports twice: the engine decides
 * from the memory and the globals it is given, then V8 links what it reads.
 * When reading can run caller code (a getter, a Proxy trap), the two reads
 * could answer differently, and the data would land in a memory, or at a
 * base, that the instance does not use. So the engine reads each import
 * exactly once, in V8's order (for each import in declaration order:
 * Get(imports, module), then Get(moduleObject, name)), and hands V8 a
 * "pinned" import object that answers V8's Gets with exactly the values
 * read: the caller's getters and traps run exactly as many times, in the
 * same order, as natively, and V8 and the engine see the same objects.
 *
 * The pinned object and its module objects are null-prototype objects of
 * the engine's, never seen by caller code. A key read once, or always
 * answering the same value, is a data property; a key whose reads answered
 * differently (a getter read by several imports, or the same (module, name)
 * imported twice) is an accessor that replays the answers in order. Reading
 * stops where V8's would: at a Get that throws (the pinned object's accessor
 * throws the same exception object at the same point) or at a module value
 * that is not an object (kept as is: V8 throws its own TypeError reading it).
 *
 * Also here: dataValues(), the check that reading the imports runs no
 * caller code (then they need no pinning).
 */
import { types } from 'node:util';

/** An import's value that was not read (reading stopped before it, or its Get threw). */
export const NOT_READ: unique symbol = Symbol('wasm-cow: not read');

export interface PinnedImports {
  /** Per import, in declaration order: the value read, or NOT_READ. */
  readonly values: readonly unknown[];
  /** The import object to hand V8 (null prototype); the caller may add a module of its own to it. */
  readonly object: Record<string, unknown>;
}

/**
 * An array of `n` elements for values read from the caller, each to be
 * written: its elements are tagged values from the start (NOT_READ in the
 * first: V8 never turns such an array back into one of raw doubles), so a
 * Number stays the very value read. An array whose elements are all
 * Numbers is held as raw doubles, and storing a signaling NaN there quiets
 * it; V8 gives an f64 global import a Number's NaN bits as they are.
 */
export function valueArray(n: number): unknown[] {
  const a = new Array<unknown>(n);
  if (n > 0) a[0] = NOT_READ;
  return a;
}

/** A Get that threw, as an answer to replay. */
class Thrown {
  readonly #thrown = true;
  constructor(readonly error: unknown) {}
  /**
   * Whether `v` is one. Never `instanceof`: on a caller's Proxy that runs its
   * getPrototypeOf trap, which V8 never runs linking an import (a private
   * brand check asks the Proxy nothing).
   */
  static is(v: unknown): v is Thrown {
    return typeof v === 'object' && v !== null && #thrown in v;
  }
}

function isObject(v: unknown): v is object {
  return (typeof v === 'object' && v !== null) || typeof v === 'function';
}

/** Keys whose answers differ, per pinned object: all their answers in order. */
type Replays = Map<Record<string, unknown>, Map<string, unknown[]>>;

/** Where the reads are recorded, to count the earlier answers of a key when it first answers differently. */
interface Reads {
  readonly list: readonly { readonly module: string; readonly name: string }[];
  readonly modules: readonly unknown[];
  readonly replays: Replays;
}

/**
 * Gives `o[key]` the answer of import `i`'s read (of its module name when
 * `ns` is null, else of its name on `ns`): a data property on the first
 * read; a later read answering differently (or a read that threw) makes the
 * key replay all its answers.
 */
function answer(reads: Reads, o: Record<string, unknown>, key: string, value: unknown, i: number, ns: object | null): void {
  const replays = reads.replays;
  if (replays.size !== 0) {
    const list = replays.get(o)?.get(key);
    if (list !== undefined) {
      list.push(value);
      return;
    }
  }
  const has = key in o; // a null-prototype object: own properties only
  // A NaN always replays: Object.is calls all NaNs equal, and V8 keeps a NaN's payload in a float global.
  if (has && !Thrown.is(value) && value === value && Object.is(o[key], value)) return;
  if (!has && !Thrown.is(value)) {
    o[key] = value;
    return;
  }
  // The answers so far were all o[key]: one per earlier read of the same key.
  let n = 0;
  if (has) {
    const { list, modules } = reads;
    for (let j = 0; j < i; j++) if (ns === null ? list[j]!.module === key : modules[j] === ns && list[j]!.name === key) n++;
  }
  const answers = valueArray(n + 1);
  for (let j = 0; j < n; j++) answers[j] = o[key];
  answers[n] = value;
  let keys = replays.get(o);
  if (keys === undefined) replays.set(o, (keys = new Map()));
  keys.set(key, answers);
}

/**
 * What one read of the imports in V8's order answered (readInOrder): per
 * import read, Get(imports, module) and Get(moduleObject, name); where
 * reading stopped, how.
 */
export interface OrderedReads {
  /** Per import: what Get(imports, module) answered (undefined past `stop`). */
  readonly modules: unknown[];
  /** Per import: what Get(moduleObject, name) answered, NOT_READ past the last read. */
  readonly values: unknown[];
  /** The import where reading stopped (the list's length when every import was read). */
  readonly stop: number;
  /**
   * How it stopped: 'module-threw' / 'name-threw' (`error` is what the Get
   * threw), 'module-not-object' (modules[stop] is that value: V8 throws its
   * own TypeError reading it), or null when it did not.
   */
  readonly how: 'module-threw' | 'name-threw' | 'module-not-object' | null;
  readonly error: unknown;
}

/**
 * Reads `imports` for `list` (the module's imports in declaration order)
 * exactly as V8 11.3 does (InstanceBuilder::SanitizeImports, before it
 * links anything): for each import in order, Get(imports, module); if that
 * is not an object or function, stop (V8 throws a TypeError); then
 * Get(moduleObject, name); a Get that throws stops it (V8 rethrows). No
 * check, no other read: the caller's getters and Proxy traps run exactly
 * as natively. `imports` must be an object.
 */
export function readInOrder(imports: object, list: readonly { readonly module: string; readonly name: string }[]): OrderedReads {
  const n = list.length;
  const modules = new Array<unknown>(n);
  const values = valueArray(n);
  let i = 0;
  let naming = false;
  try {
    for (; i < n; i++) {
      const imp = list[i]!;
      naming = false;
      const ns: unknown = (imports as Record<string, unknown>)[imp.module];
      modules[i] = ns;
      if (!((typeof ns === 'object' && ns !== null) || typeof ns === 'function')) {
        for (let j = i; j < n; j++) values[j] = NOT_READ;
        return { modules, values, stop: i, how: 'module-not-object', error: undefined };
      }
      naming = true;
      values[i] = (ns as Record<string, unknown>)[imp.name];
    }
  } catch (e) {
    for (let j = i; j < n; j++) values[j] = NOT_READ;
    return { modules, values, stop: i, how: naming ? 'name-threw' : 'module-threw', error: e };
  }
  return { modules, values, stop: n, how: null, error: undefined };
}

/**
 * The import object to hand V8 in place of the caller's, answering its
 * Gets (V8's order: readInOrder) with exactly what `reads` recorded: see
 * the file comment.
 */
export function pinnedObject(list: readonly { readonly module: string; readonly name: string }[], reads: OrderedReads): Record<string, unknown> {
  const { modules, values, stop, how } = reads;
  const top = Object.create(null) as Record<string, unknown>;
  const pins = new Map<object, Record<string, unknown>>();
  const replays: Replays = new Map();
  const record: Reads = { list, modules, replays };
  let lastNs: object | null = null;
  let lastPin: Record<string, unknown> | null = null;
  for (let i = 0; i <= stop && i < list.length; i++) {
    const imp = list[i]!;
    if (i === stop && how === 'module-threw') {
      answer(record, top, imp.module, new Thrown(reads.error), i, null);
      break;
    }
    const ns = modules[i];
    if (!isObject(ns)) {
      // Kept as is: V8 throws its TypeError reading it, and reads nothing more.
      answer(record, top, imp.module, ns, i, null);
      break;
    }
    let pin: Record<string, unknown>;
    if (ns === lastNs) pin = lastPin!;
    else {
      pin = pins.get(ns) ?? (Object.create(null) as Record<string, unknown>);
      pins.set(ns, pin);
      lastNs = ns;
      lastPin = pin;
    }
    answer(record, top, imp.module, pin, i, null);
    if (i === stop) {
      // how === 'name-threw'
      answer(record, pin, imp.name, new Thrown(reads.error), i, ns);
      break;
    }
    answer(record, pin, imp.name, values[i], i, ns);
  }
  for (const [o, keys] of replays) {
    for (const [key, answers] of keys) {
      let next = 0;
      Object.defineProperty(o, key, {
        get(): unknown {
          const a = answers[Math.min(next++, answers.length - 1)];
          if (Thrown.is(a)) throw a.error;
          return a;
        },
        enumerable: true,
        configurable: true,
      });
    }
  }
  return top;
}

/**
 * Reads `imports` for `list` as V8 does, once (readInOrder), and makes the
 * pinned object answering V8's reads with what was read; see the file
 * comment. `imports` must be an object (V8 throws its own TypeError for
 * anything else, before reading).
 */
export function pinImports(imports: object, list: readonly { readonly module: string; readonly name: string }[]): PinnedImports {
  const reads = readInOrder(imports, list);
  return { values: reads.values, object: pinnedObject(list, reads) };
}

/**
 * `imports[module]` for each module name, when reading them and then each
 * import name on its module object runs no caller code: no Proxy on any
 * prototype chain on the way, no getter where a name is found; null
 * otherwise. Reads nothing observable (the checks are on non-Proxy
 * objects, and a Get that finds no getter runs no code).
 */
export function dataValues(imports: object, modules: readonly string[], names: readonly (readonly [number, string])[]): unknown[] | null {
  const out: unknown[] = new Array<unknown>(modules.length);
  // An own 'stack' (errors, Error.captureStackTrace) has no getter, yet its
  // first Get calls Error.prepareStackTrace: such a key is read the V8 way.
  if (readsStack(modules, names)) return null;
  try {
    if (chainHasProxy(imports)) return null;
    for (let i = 0; i < modules.length; i++) {
      if (lookupGetter(imports, modules[i]!) !== undefined) return null;
      out[i] = (imports as Record<string, unknown>)[modules[i]!];
    }
    const checked = new Array<boolean>(modules.length).fill(false);
    for (const [m, name] of names) {
      const o = out[m];
      if (!((typeof o === 'object' && o !== null) || typeof o === 'function')) continue;
      if (!checked[m]) {
        if (chainHasProxy(o)) return null;
        checked[m] = true;
      }
      if (lookupGetter(o, name) !== undefined) return null;
    }
  } catch {
    return null; // an exotic object that throws (a module namespace in its TDZ): Get it as natively
  }
  return out;
}

/** Whether a module name or an import name is 'stack', per (modules, names) pair (a prepared module passes the same arrays each time). */
const stackKeys = new WeakMap<readonly string[], { readonly names: readonly (readonly [number, string])[]; readonly stack: boolean }>();
function readsStack(modules: readonly string[], names: readonly (readonly [number, string])[]): boolean {
  const known = stackKeys.get(modules);
  if (known !== undefined && known.names === names) return known.stack;
  const stack = modules.includes('stack') || names.some((n) => n[1] === 'stack');
  stackKeys.set(modules, { names, stack });
  return stack;
}

/** Object.prototype.__lookupGetter__, as it was when this module loaded: the getter a Get of `key` would call, if any. */
const lookupGetter = Function.prototype.call.bind(
  (Object.prototype as unknown as { __lookupGetter__: (key: string) => unknown }).__lookupGetter__,
) as (o: object, key: string) => unknown;

function chainHasProxy(o: object): boolean {
  for (let p: object | null = o; p !== null; p = Reflect.getPrototypeOf(p)) if (types.isProxy(p)) return true;
  return false;
}
