/**
 * Reading a lease's state for a snapshot: each memory's non-zero pages, and
 * each mutable global's value as a constant expression.
 *
 * A memory is captured from what it holds now: a page (of the host's page
 * size) is part of the snapshot when it reads non-zero, and each run of such
 * pages becomes one active data segment. Pages that read zero are left out:
 * a new memory reads zero there too. The segments are views of the memory:
 * they must be copied (into the snapshot module) before anything runs.
 */
import { sleb } from '../binary/writer.js';
import { isZero } from '../image/flatten.js';
import { bufferOf } from '../memory.js';
import { SnapshotError } from './errors.js';

/** A run of non-zero pages: `bytes` is a view of the memory at `offset`. */
export interface CapturedRun {
  readonly offset: number;
  readonly bytes: Uint8Array;
}

export interface CapturedMemory {
  /** The memory's size now, in 64 KiB pages. */
  readonly pages: number;
  /** Runs of non-zero pages, in address order. */
  readonly runs: readonly CapturedRun[];
}

const WASM_PAGE = 65536;

/**
 * At most this many runs per memory (V8 takes at most 100,000 data segments
 * per module; Wizer stops at 10,000 too): beyond it, runs separated by the
 * shortest gaps are merged, zero pages and all (still exact).
 */
export const MAX_RUNS = 10_000;

/** The memory's size and its runs of non-zero pages (views: copy them before anything runs). */
export function captureMemory(memory: WebAssembly.Memory, pageSize: number, maxRuns = MAX_RUNS): CapturedMemory {
  const buffer = bufferOf(memory);
  const bytes = new Uint8Array(buffer);
  const runs: CapturedRun[] = [];
  let start = -1;
  for (let p = 0; p < bytes.length; p += pageSize) {
    const end = Math.min(p + pageSize, bytes.length);
    const zero = isZero(bytes, p, end);
    if (!zero && start < 0) start = p;
    if (zero && start >= 0) {
      runs.push({ offset: start, bytes: bytes.subarray(start, p) });
      start = -1;
    }
  }
  if (start >= 0) runs.push({ offset: start, bytes: bytes.subarray(start) });
  return { pages: bytes.length / WASM_PAGE, runs: merged(bytes, runs, pageSize, maxRuns) };
}

/** `runs`, with those closer than a gap that doubles until at most `maxRuns` remain merged. */
function merged(bytes: Uint8Array, runs: CapturedRun[], pageSize: number, maxRuns: number): CapturedRun[] {
  let out = runs;
  for (let gap = pageSize * 2; out.length > Math.max(1, maxRuns); gap *= 2) {
    const next: CapturedRun[] = [];
    let from = out[0]!.offset;
    let to = from + out[0]!.bytes.length;
    for (let i = 1; i < out.length; i++) {
      const r = out[i]!;
      if (r.offset - to < gap) {
        to = r.offset + r.bytes.length;
        continue;
      }
      next.push({ offset: from, bytes: bytes.subarray(from, to) });
      from = r.offset;
      to = r.offset + r.bytes.length;
    }
    next.push({ offset: from, bytes: bytes.subarray(from, to) });
    out = next;
  }
  return out;
}

/** Value types of globals, as their type byte. */
const I32 = 0x7f;
const I64 = 0x7e;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;
const FUNCREF = 0x70;
const EXTERNREF = 0x6f;

/**
 * A constant expression (with its `end`) giving the value of a global of
 * type `valType`, as `read` gives it (`WebAssembly.Global.prototype.value`,
 * not called for a type JS cannot read). Throws SnapshotError when the
 * value cannot be written exactly.
 */
export function constantOf(valType: number, read: () => unknown, what: string): number[] {
  const readable = valType === I32 || valType === I64 || valType === F32 || valType === F64 || valType === FUNCREF || valType === EXTERNREF;
  const value = readable ? read() : undefined;
  switch (valType) {
    case I32:
      return [0x41, ...sleb(BigInt(value as number)), 0x0b];
    case I64:
      return [0x42, ...sleb(value as bigint), 0x0b];
    case F32:
    case F64: {
      const v = value as number;
      if (Number.isNaN(v)) {
        throw new SnapshotError(
          'unreadable-global',
          `${what} holds a NaN, and JS does not show which NaN (its bits); the snapshot could not be exact. Snapshot when it holds a number.`,
        );
      }
      const out = new Uint8Array(valType === F32 ? 4 : 8);
      const view = new DataView(out.buffer);
      if (valType === F32) view.setFloat32(0, v, true);
      else view.setFloat64(0, v, true);
      return [valType === F32 ? 0x43 : 0x44, ...out, 0x0b];
    }
    case FUNCREF:
    case EXTERNREF:
      if (value === null) return [0xd0, valType, 0x0b];
      throw new SnapshotError(
        'reference-global',
        `${what} holds a non-null ${valType === FUNCREF ? 'funcref' : 'externref'}, which a module cannot hold as a constant. ` +
          'Snapshot when it holds null.',
      );
    case V128:
      throw new SnapshotError('unreadable-global', `${what} is a v128, which JS cannot read. Snapshots support numeric and null reference globals.`);
    default:
      throw new SnapshotError(
        'unreadable-global',
        `${what} has a typed reference type (0x${valType.toString(16)}), which snapshots do not support.`,
      );
  }
}
