/**
 * The caller's imports for one lease of a reused instance, read once as V8
 * reads them (see pin.ts): the instance pool compares the non-function
 * values with an idle instance's and hands the function values to the
 * trampolines. When reading them could run caller code (a getter, a Proxy),
 * they are pinned: read once, in V8's order, and V8 is given the pinned
 * object if the lease gets an instance of its own.
 */
import type { Imports } from '../prepared.js';
import { dataValues, NOT_READ, pinImports } from '../pin.js';
import type { Slot } from '../slot.js';

export interface ReadImports {
  /** Per import (declaration order) its value, or null when reading stopped (V8 will throw where it does). */
  readonly values: readonly unknown[] | null;
  /** The import object for an instance linked directly to these imports (with our memories). */
  readonly direct: (slots: readonly Slot[]) => Imports | undefined;
}

/** Makes the import object V8 is given: the caller's (or the pinned one) plus the engine's memories. */
export type ImportObjectMaker = (imports: Imports | undefined, slots: readonly Slot[], pinned?: Record<string, unknown> | null) => Imports | undefined;

export function readImportsForReuse(
  imports: unknown,
  list: readonly { readonly m: number; readonly module: string; readonly name: string }[],
  modules: readonly string[],
  names: readonly (readonly [number, string])[],
  importObject: ImportObjectMaker,
): ReadImports {
  const asGiven = (slots: readonly Slot[]): Imports | undefined => importObject(imports as Imports | undefined, slots);
  if (!((typeof imports === 'object' && imports !== null) || typeof imports === 'function')) {
    return { values: list.length === 0 ? [] : null, direct: asGiven };
  }
  const namespaces = dataValues(imports, modules, names);
  if (namespaces !== null) {
    const values = new Array<unknown>(list.length);
    for (let i = 0; i < list.length; i++) {
      const imp = list[i]!;
      const ns = namespaces[imp.m];
      if (!((typeof ns === 'object' && ns !== null) || typeof ns === 'function')) return { values: null, direct: asGiven };
      try {
        values[i] = (ns as Record<string, unknown>)[imp.name];
      } catch {
        return { values: null, direct: asGiven };
      }
    }
    return { values, direct: asGiven };
  }
  const pin = pinImports(imports, list);
  const values = pin.values.includes(NOT_READ) ? null : pin.values;
  return { values, direct: (slots) => importObject(imports as Imports | undefined, slots, pin.object) };
}
