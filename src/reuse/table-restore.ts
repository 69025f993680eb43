/**
 * Restoring tables in one wasm call: the reuse rewrite appends a function
 * (exported as "\u0000wasm-cow:restore-tables") that sets every table code
 * can mutate back to its state after instantiation: `table.fill` with the
 * table's initial value over its whole length, then `table.init` from a
 * passive copy of each active element segment aimed at it, in segment
 * order, at the segment's own offset expression, exactly as instantiation
 * applies them. The copies are appended at the end of the element index
 * space and the function at the end of the function index space: nothing
 * is renumbered, and code cannot name them (it validated before they
 * existed). The caller checks first that no table's length changed.
 *
 * Measured (benchmarks/reuse.ts, a 521-entry table): the JavaScript way
 * (table.get per entry, table.set where it differs) costs about 21 ns per
 * entry at every release even when nothing changed; this costs one call.
 * Tables of typed references (not funcref / externref) keep the
 * JavaScript way (tableRestore returns null).
 */
import type { RewriteOptions } from '../binary/rewriter.js';
import { u32 } from '../binary/writer.js';
import { INTERNAL_PREFIX, type ExtraExport } from './internal.js';
import type { ModuleInfo } from './module-info.js';

export const INTERNAL_RESTORE_TABLES = `${INTERNAL_PREFIX}restore-tables`;

function sleb32(v: number): number[] {
  const out: number[] = [];
  let x = v | 0;
  for (;;) {
    const b = x & 0x7f;
    x >>= 7;
    const done = (x === 0 && (b & 0x40) === 0) || (x === -1 && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

export interface TableRestorer {
  readonly append: NonNullable<RewriteOptions['append']>;
  readonly export: ExtraExport;
}

/** The appended function and segments restoring `tables` (defined table indices), or null when not applicable. */
export function tableRestore(bytes: Uint8Array, info: ModuleInfo, tables: readonly number[]): TableRestorer | null {
  if (tables.length === 0) return null;
  const body: number[] = [0x00]; // no locals
  for (const t of tables) {
    const tab = info.tables[t - info.importedTables];
    if (tab === undefined || (tab.elemType !== 0x70 && tab.elemType !== 0x6f)) return null;
    body.push(0x41, 0); // dest
    if (tab.init !== null) body.push(...bytes.subarray(tab.init[0], tab.init[1]));
    else body.push(0xd0, tab.elemType);
    body.push(0xfc, 16, ...u32(t)); // table.size: the whole table
    body.push(0xfc, 17, ...u32(t)); // table.fill
  }
  const elems: number[][] = [];
  for (const e of info.elems) {
    if (e.mode !== 'active' || !tables.includes(e.table)) continue;
    if (e.elemType !== 0x70 && e.elemType !== 0x6f) return null;
    const items = bytes.subarray(e.items[0], e.items[1]);
    elems.push(e.exprs ? [0x05, e.elemType, ...items] : [0x01, 0x00, ...items]);
    const segment = info.elems.length + elems.length - 1;
    body.push(...bytes.subarray(e.offset![0], e.offset![1])); // dest: the segment's own offset expression
    body.push(0x41, 0, 0x41, ...sleb32(e.count)); // src 0, length
    body.push(0xfc, 12, ...u32(segment), ...u32(e.table)); // table.init
  }
  body.push(0x0b);
  return {
    append: { types: [[0x60, 0, 0]], funcs: [{ type: info.types.length, body }], elems },
    export: { name: INTERNAL_RESTORE_TABLES, kind: 'function', index: info.importedFuncs + info.definedFuncs },
  };
}
