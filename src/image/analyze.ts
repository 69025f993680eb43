/**
 * Image analysis (the reference design's `ModuleMemFds::new`, split in two:
 * `analyzeMemories` decides, cheaply and at prepare time, which memories
 * get an image; `flattenImage` builds an image's bytes, lazily, at first
 * instantiation).
 *
 * A defined memory gets an image when every active segment aimed at it has
 * a constant i32 offset, every segment ends within the memory's initial
 * size, and the image's span stays under the size limit. Otherwise it is
 * excluded with a reason and its segments stay active: V8 applies them at
 * instantiation, with exactly the native traps.
 */
import type { DataSegment, MemoryType, ParsedModule } from '../binary/reader.js';

export const WASM_PAGE = 65536;

/** Why a memory has no image. Stable strings: part of the public API. */
export type ExclusionCode =
  | 'imported'
  | 'dynamic-offset'
  | 'out-of-bounds'
  | 'too-large'
  | 'shared'
  | 'memory64'
  | 'invalid-offset'
  | 'not-rewritable'
  | 'unparsed'
  | 'rewrite-rejected';

export interface Exclusion {
  readonly code: ExclusionCode;
  readonly message: string;
}

/** A segment placed at a constant offset of its memory. */
export interface PlacedSegment {
  readonly offset: number;
  readonly dataStart: number;
  readonly dataEnd: number;
}

export interface MemoryPlan {
  /** Memory index (imports first, as in the module). */
  readonly index: number;
  readonly imported: boolean;
  readonly type: MemoryType;
  /** Null when the memory gets an image. */
  readonly excluded: Exclusion | null;
  /** For imaged memories: the segments to apply, in order. */
  readonly segments: readonly PlacedSegment[];
  /** For imaged memories: data indices of those segments (to convert). */
  readonly segmentIndices: readonly number[];
}

export interface AnalyzeOptions {
  /** Largest image span in bytes. */
  readonly sizeLimit: number;
  readonly pageSize: number;
}

const exclusion = (code: ExclusionCode, message: string): Exclusion => ({ code, message });

/** Whether the module's defined memories can all become imports. */
export function rewritableMemories(parsed: ParsedModule): Exclusion | null {
  for (const m of parsed.memories) {
    if (m.shared) return exclusion('not-rewritable', 'a defined memory is shared; the module is left as it is');
    if (m.memory64) return exclusion('not-rewritable', 'a defined memory is memory64; the module is left as it is');
  }
  return null;
}

export function analyzeMemories(parsed: ParsedModule, options: AnalyzeOptions): MemoryPlan[] {
  const plans: MemoryPlan[] = [];
  const byMemory = new Map<number, DataSegment[]>();
  for (const seg of parsed.data) {
    if (seg.mode !== 'active') continue;
    const list = byMemory.get(seg.memory);
    if (list) list.push(seg);
    else byMemory.set(seg.memory, [seg]);
  }

  let index = 0;
  for (const imp of parsed.imports) {
    if (imp.kind !== 'memory' || !imp.memory) continue;
    plans.push({
      index: index++,
      imported: true,
      type: imp.memory,
      excluded: exclusion('imported', 'the memory is imported; its segments are applied by V8 as usual'),
      segments: [],
      segmentIndices: [],
    });
  }
  const moduleBlock = rewritableMemories(parsed);
  for (const type of parsed.memories) {
    const memIndex = index++;
    const base = { index: memIndex, imported: false, type };
    const own = type.shared
      ? exclusion('shared', 'shared memories are left to V8')
      : type.memory64
        ? exclusion('memory64', 'memory64 memories are left to V8')
        : moduleBlock;
    if (own) {
      plans.push({ ...base, excluded: own, segments: [], segmentIndices: [] });
      continue;
    }
    const result = placeSegments(byMemory.get(memIndex) ?? [], type, options);
    if ('code' in result) plans.push({ ...base, excluded: result, segments: [], segmentIndices: [] });
    else plans.push({ ...base, excluded: null, ...result });
  }
  return plans;
}

function placeSegments(
  segments: readonly DataSegment[],
  type: MemoryType,
  options: AnalyzeOptions,
): Exclusion | { segments: PlacedSegment[]; segmentIndices: number[] } {
  const initialBytes = type.min * WASM_PAGE;
  const placed: PlacedSegment[] = [];
  let lo = Infinity;
  let hi = 0;
  for (const seg of segments) {
    const off = seg.offset;
    if (off === null || off.dynamic || off.global !== null) {
      return exclusion('dynamic-offset', `data segment ${seg.index} has an offset computed from a global`);
    }
    if (off.type !== 'i32') {
      return exclusion('invalid-offset', `data segment ${seg.index} has an offset that is not an i32 constant`);
    }
    const offset = Number(off.constant);
    const len = seg.dataEnd - seg.dataStart;
    if (offset + len > initialBytes) {
      return exclusion(
        'out-of-bounds',
        `data segment ${seg.index} ends at ${offset + len}, beyond the initial size ${initialBytes}; instantiation traps as native`,
      );
    }
    if (len > 0) {
      lo = Math.min(lo, offset);
      hi = Math.max(hi, offset + len);
    }
    placed.push({ offset, dataStart: seg.dataStart, dataEnd: seg.dataEnd });
  }
  if (hi > 0) {
    const span = roundUp(hi, options.pageSize) - roundDown(lo, options.pageSize);
    if (span > options.sizeLimit) {
      return exclusion('too-large', `the image would span ${span} bytes, over the limit of ${options.sizeLimit}`);
    }
  }
  return { segments: placed, segmentIndices: segments.map((s) => s.index) };
}

export const roundUp = (n: number, page: number): number => Math.ceil(n / page) * page;
export const roundDown = (n: number, page: number): number => Math.floor(n / page) * page;
