/**
 * The caller's imports for one lease of a reused instance, read once as V8
 * reads them: the instance pool compares the non-function values with an
 * idle instance's and hands the function values to the trampolines. Under
 * reuse V8 never reads them (the instance is linked already), so this read
 * is the only one, and it is V8's own sequence (pin.ts, readInOrder: for
 * each import in declaration order, Get(imports, module) then
 * Get(moduleObject, name), stopping where V8 stops): getters and Proxy traps
 * run exactly as natively, with no check before them. When the lease gets
 * an instance of its own (a fall-back), V8 is given the pinned object that
 * replays exactly what was read.
 *
 * Two shortcuts, neither observable:
 *
 *  - Frozen imports. An import object that is frozen, not a Proxy, whose
 *    module objects are frozen and not Proxies, each name an own data
 *    property, answers every Get the same forever, running no code (a
 *    frozen object's own data properties can never change; V8 never lets
 *    an object with interceptors be made non-extensible, so such an object
 *    is never frozen; a Proxy is excluded before anything is asked of it).
 *    Its values are read once (with getOwnPropertyDescriptor, which runs no
 *    code on such objects) and kept, per import object, for as long as it
 *    lives: a lease with it reads nothing. V8 may be given the object itself.
 *    Two kinds of V8 property look like frozen data properties but are not
 *    fixed (native accessors): a sloppy function's own 'caller' and
 *    'arguments' answer from the current stack at each Get, and an own
 *    'stack' (errors, Error.captureStackTrace) calls Error.prepareStackTrace
 *    at its first Get. So a function is never a fixed object (as the import
 *    object or a module object), and a key named 'stack' is never read by
 *    the shortcut (the object is read the V8 way at each lease).
 *  - Unchanged values. When a read answers, import by import, the same
 *    values (===, and the same sign of zero; a NaN never matches) as the
 *    previous read, the previous read's array is returned: the pool then
 *    knows the values were checked and linked before (identity), and skips
 *    comparing them again.
 */
import { types } from 'node:util';
import type { Imports } from '../prepared.js';
import { type OrderedReads, pinnedObject, readInOrder, valueArray } from '../pin.js';
import type { Slot } from '../slot.js';

export interface ReadImports {
  /**
   * Per import (declaration order) its value, or null when reading stopped
   * (V8 will throw where it does). An array the reader returned before when
   * every value is the same; never written to.
   */
  readonly values: readonly unknown[] | null;
  /** The import object for an instance linked directly to these imports (with our memories). */
  readonly direct: (slots: readonly Slot[]) => Imports | undefined;
}

/** Makes the import object V8 is given: the caller's (or the pinned one) plus the engine's memories. */
export type ImportObjectMaker = (imports: Imports | undefined, slots: readonly Slot[], pinned?: Record<string, unknown> | null) => Imports | undefined;

type ImportList = readonly { readonly module: string; readonly name: string }[];

/** A frozen import object that is not fixed (see the file comment): it never will be. */
const NOT_FIXED: readonly unknown[] = [];

export class ReuseImportReader {
  readonly #list: ImportList;
  readonly #importObject: ImportObjectMaker;
  /** The values of the last read that ended (every import read). */
  #last: readonly unknown[] | null = null;
  /** Frozen import objects: their values (fixed), or NOT_FIXED. */
  readonly #fixed = new WeakMap<object, readonly unknown[]>();

  constructor(list: ImportList, importObject: ImportObjectMaker) {
    this.#list = list;
    this.#importObject = importObject;
  }

  read(imports: unknown): ReadImports {
    const list = this.#list;
    const given = imports as Imports | undefined;
    const asGiven = (slots: readonly Slot[]): Imports | undefined => this.#importObject(given, slots);
    if (!((typeof imports === 'object' && imports !== null) || typeof imports === 'function')) {
      // V8 throws its TypeError before reading anything: for any value but
      // undefined ('Argument 1 must be an object'), and for undefined when
      // there is something to read.
      return { values: imports === undefined && list.length === 0 ? [] : null, direct: asGiven };
    }
    const fixed = this.#fixedValues(imports);
    if (fixed !== null) return { values: fixed, direct: asGiven };
    const reads = readInOrder(imports, list);
    let direct: ((slots: readonly Slot[]) => Imports | undefined) | null = null;
    const pinned = (slots: readonly Slot[]): Imports | undefined => {
      direct ??= ((object) => (s: readonly Slot[]) => this.#importObject(given, s, object))(pinnedObject(list, reads));
      return direct(slots);
    };
    if (reads.how !== null) return { values: null, direct: pinned };
    return { values: this.#canonical(reads), direct: pinned };
  }

  /** The previous read's values when `reads` answered the same, else its own (then the last). */
  #canonical(reads: OrderedReads): readonly unknown[] {
    const values = reads.values;
    const last = this.#last;
    if (last !== null) {
      let i = 0;
      const n = values.length;
      for (; i < n; i++) {
        const v = values[i];
        const w = last[i];
        if (v !== w || (v === 0 && 1 / (v as number) !== 1 / (w as number))) break;
      }
      if (i === n) return last;
    }
    this.#last = values;
    return values;
  }

  /** The fixed values of a frozen import object (see the file comment), or null when it is not one. */
  #fixedValues(imports: object): readonly unknown[] | null {
    let values = this.#fixed.get(imports);
    if (values === undefined) {
      if (!frozen(imports)) return null; // it may be frozen later: not remembered
      values = fixedValues(imports, this.#list);
      this.#fixed.set(imports, values);
    }
    return values === NOT_FIXED ? null : values;
  }
}

/**
 * Whether `o` is frozen, not a Proxy (asking a Proxy runs its traps: never
 * asked) and not a function (a sloppy function's 'caller' and 'arguments'
 * follow the stack: see the file comment).
 */
function frozen(o: object): boolean {
  if (typeof o === 'function' || types.isProxy(o)) return false;
  try {
    return Object.isFrozen(o);
  } catch {
    return false; // an exotic object that throws (a module namespace in its TDZ)
  }
}

/**
 * The values of frozen, non-Proxy `imports` for `list`, when every module
 * object is frozen, not a Proxy, and every Get on the way finds an own data
 * property; else NOT_FIXED (for ever: none of that can change once frozen).
 */
function fixedValues(imports: object, list: ImportList): readonly unknown[] {
  const values = valueArray(list.length);
  const checked = new Set<object>();
  try {
    for (let i = 0; i < list.length; i++) {
      const imp = list[i]!;
      // An own 'stack' may be V8's lazily formatted one: reading it runs Error.prepareStackTrace.
      if (imp.module === 'stack' || imp.name === 'stack') return NOT_FIXED;
      const m = Reflect.getOwnPropertyDescriptor(imports, imp.module);
      if (m === undefined || !('value' in m)) return NOT_FIXED;
      const ns: unknown = m.value;
      if (!((typeof ns === 'object' && ns !== null) || typeof ns === 'function')) return NOT_FIXED;
      if (!checked.has(ns)) {
        if (!frozen(ns)) return NOT_FIXED;
        checked.add(ns);
      }
      const d = Reflect.getOwnPropertyDescriptor(ns, imp.name);
      if (d === undefined || !('value' in d)) return NOT_FIXED;
      values[i] = d.value;
    }
  } catch {
    return NOT_FIXED;
  }
  return values;
}
