/**
 * Builds an image's bytes: the memory's initial contents between the first
 * and the last page that holds a non-zero byte.
 *
 *   linear memory:  0 ........ offset ............ offset+length ..... initial size
 *                   | zero     | image bytes        | zero              |
 *
 * `offset` and `length` are multiples of the page size; an all-zero memory
 * has `length` 0. Segments are applied in order, so later bytes overwrite
 * earlier ones, as at instantiation.
 */
import type { MemoryPlan, PlacedSegment } from './analyze.js';
import { constantColumns, roundDown, roundUp } from './analyze.js';

export interface FlatImage {
  /** Byte offset of the image in linear memory (page multiple). */
  readonly offset: number;
  /** Image length in bytes (page multiple, possibly 0). */
  readonly length: number;
  /** Exactly `length` bytes. */
  readonly bytes: Uint8Array;
}

/** Segments as columns: offset in memory, and the bytes [dataStart, dataEnd) of the source, per segment, in order. */
interface SegmentColumns {
  readonly offset: ArrayLike<number>;
  readonly dataStart: ArrayLike<number>;
  readonly dataEnd: ArrayLike<number>;
}

export function flattenImage(source: Uint8Array, segments: readonly PlacedSegment[], pageSize: number): FlatImage {
  return flattenColumns(source, columnsOf(segments), pageSize);
}

/**
 * flattenImage() of a plan's segments, read from its columns when it has
 * them (constantColumns: no object per segment), else from plan.segments.
 */
export function flattenPlan(source: Uint8Array, plan: MemoryPlan, pageSize: number): FlatImage {
  return flattenColumns(source, constantColumns(plan) ?? columnsOf(plan.segments), pageSize);
}

function columnsOf(segments: readonly PlacedSegment[]): SegmentColumns {
  return {
    offset: segments.map((s) => s.offset),
    dataStart: segments.map((s) => s.dataStart),
    dataEnd: segments.map((s) => s.dataEnd),
  };
}

function flattenColumns(source: Uint8Array, c: SegmentColumns, pageSize: number): FlatImage {
  const n = c.offset.length;
  let lo = Infinity;
  let hi = 0;
  for (let k = 0; k < n; k++) {
    const len = c.dataEnd[k]! - c.dataStart[k]!;
    if (len === 0) continue;
    lo = Math.min(lo, c.offset[k]!);
    hi = Math.max(hi, c.offset[k]! + len);
  }
  if (hi === 0) return { offset: 0, length: 0, bytes: new Uint8Array(0) };

  const start = roundDown(lo, pageSize);
  const buf = new Uint8Array(roundUp(hi, pageSize) - start);
  for (let k = 0; k < n; k++) {
    if (c.dataEnd[k] === c.dataStart[k]) continue;
    buf.set(source.subarray(c.dataStart[k]!, c.dataEnd[k]!), c.offset[k]! - start);
  }

  // Trim all-zero pages at both ends.
  let first = 0;
  while (first < buf.length && isZero(buf, first, first + pageSize)) first += pageSize;
  if (first === buf.length) return { offset: 0, length: 0, bytes: new Uint8Array(0) };
  let last = buf.length;
  while (isZero(buf, last - pageSize, last)) last -= pageSize;
  const bytes = first === 0 && last === buf.length ? buf : buf.slice(first, last);
  return { offset: start + first, length: last - first, bytes };
}

const ZERO = new Uint8Array(65536);

/** Whether bytes [from, to) of `buf` are all zero. */
export function isZero(buf: Uint8Array, from: number, to: number): boolean {
  for (let p = from; p < to; p += ZERO.length) {
    const n = Math.min(ZERO.length, to - p);
    if (Buffer.compare(buf.subarray(p, p + n), ZERO.subarray(0, n)) !== 0) return false;
  }
  return true;
}
