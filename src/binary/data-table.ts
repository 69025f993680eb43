/**
 * A module's data segments as columns (struct of arrays), one row per
 * segment in data index order.
 *
 * A Go module has about 100,000 segments (esbuild.wasm: 98,450); an object
 * per segment (with an offset object and a bigint in it) cost the reader,
 * the image analysis and the garbage collector tens of milliseconds on the
 * main thread. The columns hold what the planner reads; `segment(i)` makes
 * the `DataSegment` object of row i for the readers that want one
 * (ParsedModule.data, made on first use).
 *
 * Offsets: `offsetKind` is OFFSET_NONE for a passive segment,
 * OFFSET_I32 for the usual `i32.const n; end` (n as an unsigned 32-bit
 * value in `offsetValue`), OFFSET_EXPR for any other expression (its
 * evaluation in `exprs`).
 */
import type { DataSegment, OffsetExpr } from './reader.js';

export const OFFSET_NONE = 0;
export const OFFSET_I32 = 1;
export const OFFSET_EXPR = 2;

export class DataTable {
  /** Number of segments. */
  length = 0;
  /** 1 for a passive segment, 0 for an active one. */
  passive: Uint8Array;
  /** Memory index (0 for passive segments). */
  memory: Uint32Array;
  offsetKind: Uint8Array;
  /** With OFFSET_I32: the offset, an unsigned 32-bit value. */
  offsetValue: Uint32Array;
  /** With OFFSET_EXPR: the evaluated expression, by row. */
  readonly exprs = new Map<number, OffsetExpr>();
  /** The entry's first byte, and its bytes' [dataStart, dataEnd) (the entry ends at dataEnd). */
  start: Float64Array;
  dataStart: Float64Array;
  dataEnd: Float64Array;

  /** `capacity`: rows to make room for at first (grown as needed). */
  constructor(capacity: number) {
    const n = Math.max(1, capacity);
    this.passive = new Uint8Array(n);
    this.memory = new Uint32Array(n);
    this.offsetKind = new Uint8Array(n);
    this.offsetValue = new Uint32Array(n);
    this.start = new Float64Array(n);
    this.dataStart = new Float64Array(n);
    this.dataEnd = new Float64Array(n);
  }

  /** Rows there is room for before the columns grow. */
  get capacity(): number {
    return this.passive.length;
  }

  /** Appends a row; returns its index. */
  push(passive: boolean, memory: number, offsetKind: number, offsetValue: number, start: number, dataStart: number, dataEnd: number): number {
    const i = this.length;
    if (i === this.passive.length) this.#grow();
    this.passive[i] = passive ? 1 : 0;
    this.memory[i] = memory;
    this.offsetKind[i] = offsetKind;
    this.offsetValue[i] = offsetValue;
    this.start[i] = start;
    this.dataStart[i] = dataStart;
    this.dataEnd[i] = dataEnd;
    this.length = i + 1;
    return i;
  }

  /** Row i's offset expression, as the reader evaluated it (null for a passive segment). */
  offset(i: number): OffsetExpr | null {
    const kind = this.offsetKind[i];
    if (kind === OFFSET_I32) return { type: 'i32', constant: BigInt(this.offsetValue[i]!), global: null, dynamic: false };
    if (kind === OFFSET_EXPR) return this.exprs.get(i)!;
    return null;
  }

  /** Row i as a DataSegment object. */
  segment(i: number): DataSegment {
    return {
      index: i,
      mode: this.passive[i] === 1 ? 'passive' : 'active',
      memory: this.memory[i]!,
      offset: this.offset(i),
      dataStart: this.dataStart[i]!,
      dataEnd: this.dataEnd[i]!,
      start: this.start[i]!,
      end: this.dataEnd[i]!,
    };
  }

  /** Every row as DataSegment objects. */
  segments(): DataSegment[] {
    const out = new Array<DataSegment>(this.length);
    for (let i = 0; i < this.length; i++) out[i] = this.segment(i);
    return out;
  }

  #grow(): void {
    const n = this.passive.length * 2;
    const grow = <T extends Uint8Array | Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.passive = grow(this.passive, (k) => new Uint8Array(k));
    this.memory = grow(this.memory, (k) => new Uint32Array(k));
    this.offsetKind = grow(this.offsetKind, (k) => new Uint8Array(k));
    this.offsetValue = grow(this.offsetValue, (k) => new Uint32Array(k));
    this.start = grow(this.start, (k) => new Float64Array(k));
    this.dataStart = grow(this.dataStart, (k) => new Float64Array(k));
    this.dataEnd = grow(this.dataEnd, (k) => new Float64Array(k));
  }
}

/** A set of data indices below a bound, as one byte per index (the rewriter's `convert`; cheaper than a Set of 100,000 numbers). */
export class IndexSet {
  readonly #marks: Uint8Array;
  #size = 0;

  constructor(bound: number) {
    this.#marks = new Uint8Array(bound);
  }

  get size(): number {
    return this.#size;
  }

  /** One byte per index, 1 for a member (the set's own array: read it, do not write it). */
  get marks(): Uint8Array {
    return this.#marks;
  }

  add(index: number): void {
    if (index >= this.#marks.length) throw new RangeError(`data index ${index} is beyond ${this.#marks.length}`);
    if (this.#marks[index] === 0) {
      this.#marks[index] = 1;
      this.#size++;
    }
  }

  addAll(indices: readonly number[]): void {
    const marks = this.#marks;
    let added = 0;
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k]!;
      if (i >= marks.length) throw new RangeError(`data index ${i} is beyond ${marks.length}`);
      if (marks[i] === 0) {
        marks[i] = 1;
        added++;
      }
    }
    this.#size += added;
  }

  has(index: number): boolean {
    return this.#marks[index] === 1;
  }
}
