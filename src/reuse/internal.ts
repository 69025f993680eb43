/**
 * The engine's private view of an instance's state, for reuse (and
 * snapshots): the rewrite adds exports, under reserved names, for every
 * defined mutable global, every defined table and (when the rewrite drops
 * the start section) the start function. An export shifts no index space,
 * so the module behaves as before.
 *
 * Names: "\u0000wasm-cow:global:<i>", "\u0000wasm-cow:table:<i>" (i is the
 * index in the module's global / table index space, imports first) and
 * "\u0000wasm-cow:start". They never appear in `lease.exports`; the raw
 * `lease.instance.exports` (and WebAssembly.Module.exports of the compiled
 * rewrite) does show them.
 */
import type { ParsedModule } from '../binary/reader.js';
import type { RewriteOptions } from '../binary/rewriter.js';
import type { ModuleInfo } from './module-info.js';

export const INTERNAL_PREFIX = '\u0000wasm-cow:';
export const internalGlobalName = (index: number): string => `${INTERNAL_PREFIX}global:${index}`;
export const internalTableName = (index: number): string => `${INTERNAL_PREFIX}table:${index}`;
export const INTERNAL_START = `${INTERNAL_PREFIX}start`;

/** Whether an export name is one of the engine's private ones. */
export function isInternalName(name: string): boolean {
  return name.startsWith(INTERNAL_PREFIX);
}

export type ExtraExport = NonNullable<RewriteOptions['extraExports']>[number];

/**
 * The extra exports for a module: every defined mutable global, every
 * defined table, and the start function when `start` (the rewrite then
 * drops the start section).
 */
export function internalExports(parsed: ParsedModule, info: ModuleInfo, start: boolean): ExtraExport[] {
  const out: ExtraExport[] = [];
  info.globals.forEach((g, i) => {
    if (g.mutable) out.push({ name: internalGlobalName(info.importedGlobals + i), kind: 'global', index: info.importedGlobals + i });
  });
  info.tables.forEach((_t, i) => {
    out.push({ name: internalTableName(info.importedTables + i), kind: 'table', index: info.importedTables + i });
  });
  if (start && parsed.start !== null) out.push({ name: INTERNAL_START, kind: 'function', index: parsed.start });
  return out;
}

/** An instance's globals and tables, read through the private exports. */
export interface InternalState {
  /** Defined mutable globals, by global index. */
  readonly globals: ReadonlyMap<number, WebAssembly.Global>;
  /** Defined tables, by table index. */
  readonly tables: ReadonlyMap<number, WebAssembly.Table>;
  /** The start function, when the rewrite dropped the start section. */
  readonly start: (() => unknown) | null;
  /** The table restore function (table-restore.ts), when the rewrite has one. */
  readonly restoreTables: (() => unknown) | null;
}

/** The private exports of an instance of a rewrite made with internalExports(). */
export function readInternalState(instance: WebAssembly.Instance): InternalState {
  const globals = new Map<number, WebAssembly.Global>();
  const tables = new Map<number, WebAssembly.Table>();
  let start: (() => unknown) | null = null;
  let restoreTables: (() => unknown) | null = null;
  const exports = instance.exports;
  for (const name of Object.keys(exports)) {
    if (!name.startsWith(INTERNAL_PREFIX)) continue;
    const rest = name.slice(INTERNAL_PREFIX.length);
    const value = exports[name]!;
    if (rest.startsWith('global:')) globals.set(Number(rest.slice(7)), value as WebAssembly.Global);
    else if (rest.startsWith('table:')) tables.set(Number(rest.slice(6)), value as WebAssembly.Table);
    else if (rest === 'start') start = value as () => unknown;
    else if (rest === 'restore-tables') restoreTables = value as () => unknown;
  }
  return { globals, tables, start, restoreTables };
}
