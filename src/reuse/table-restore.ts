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
 * Where every segment aimed at a table has a constant offset, only the
 * entries no segment covers are filled (each entry is written once).
 *
 * Measured (benchmarks/reuse.ts, a 521-entry table filled by one segment,
 * a reuse cycle, loaded host): the JavaScript way (table.get per entry,
 * table.set where it differs) 15-16 µs when nothing changed, 45 µs when all
 * entries did; this 12.6 and 19 µs. V8's per-entry cost of a funcref table
 * write dominates either way.
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

/** `i32.const k` alone, as an offset expression's bytes: k; else null. */
function constOffset(bytes: Uint8Array, range: readonly [number, number]): number | null {
  if (bytes[range[0]] !== 0x41) return null;
  let v = 0;
  let shift = 0;
  let p = range[0] + 1;
  for (;;) {
    if (p >= range[1] || shift > 28) return null;
    const b = bytes[p++]!;
    v |= (b & 0x7f) << shift;
    shift += 7;
    if ((b & 0x80) === 0) {
      if (shift < 32 && (b & 0x40) !== 0) v |= -1 << shift;
      break;
    }
  }
  return p === range[1] ? v >>> 0 : null;
}

/** The ranges of table `t` (of `length` entries) no active segment covers, or null when an offset is not constant. */
function uncovered(bytes: Uint8Array, info: ModuleInfo, t: number, length: number): [number, number][] | null {
  const covered: [number, number][] = [];
  for (const e of info.elems) {
    if (e.mode !== 'active' || e.table !== t) continue;
    const at = constOffset(bytes, e.offset!);
    if (at === null) return null;
    covered.push([at, Math.min(length, at + e.count)]);
  }
  covered.sort((a, b) => a[0] - b[0]);
  const gaps: [number, number][] = [];
  let next = 0;
  for (const [from, to] of covered) {
    if (from > next) gaps.push([next, Math.min(from, length)]);
    next = Math.max(next, to);
  }
  if (next < length) gaps.push([next, length]);
  return gaps.filter(([a, b]) => b > a);
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
    const value = tab.init !== null ? [...bytes.subarray(tab.init[0], tab.init[1])] : [0xd0, tab.elemType];
    // The table has its initial length (the caller checks). Where every segment aimed at it has a
    // constant offset, only the entries no segment covers are filled; otherwise the whole table.
    const gaps = uncovered(bytes, info, t, tab.min);
    if (gaps === null) {
      body.push(0x41, 0, ...value, 0xfc, 16, ...u32(t), 0xfc, 17, ...u32(t)); // table.fill 0, value, table.size
    } else {
      for (const [from, to] of gaps) body.push(0x41, ...sleb32(from), ...value, 0x41, ...sleb32(to - from), 0xfc, 17, ...u32(t));
    }
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
