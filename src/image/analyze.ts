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
import type { MemoryType, ParsedModule } from '../binary/reader.js';
import { type DataTable, OFFSET_I32 } from '../binary/data-table.js';
import type { FallbackReason } from '../stats.js';

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

/**
 * A segment and where it goes: at `offset`, plus the value of imported
 * global `global` when that is not null (position-independent data).
 */
export interface PlacedSegment {
  readonly offset: number;
  readonly global?: number | null;
  readonly dataStart: number;
  readonly dataEnd: number;
}

/**
 * When an image can be used only after a check at instantiation:
 *  - 'position-independent': some segments sit at `global.get` of an
 *    imported immutable i32 global; the image is built per resolved value;
 *  - 'imported-untouched': the memory is imported; once V8 has made the
 *    instance, the image is mapped over the pages of the caller's memory
 *    that hold only zeros at that moment, and the segments' bytes are
 *    written on the others (see conditional.ts). The name is kept for
 *    compatibility: what counts is what the pages hold, not their history.
 * When a check fails the instance is made as native would (V8 applies the
 * segments).
 */
export type MemoryCondition = 'position-independent' | 'imported-untouched';

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
  /** Null when the image is fixed at prepare; see MemoryCondition. */
  readonly condition: MemoryCondition | null;
  /**
   * For an excluded imported memory with data: why, as a fallback counted at
   * each instantiation (the engine had an image path and could not take it).
   */
  readonly fallback?: FallbackReason;
}

export interface AnalyzeOptions {
  /** Largest image span in bytes. */
  readonly sizeLimit: number;
  readonly pageSize: number;
  /** Whether images may be mapped into imported memories (native backend). */
  readonly mapImported: boolean;
  /**
   * Why the start function rules out images in imported memories (it may
   * read them, call out, or trap: see image/start.ts), or null/absent.
   */
  readonly opaqueStart?: string | null;
}

/**
 * Resolves a plan's segments for one instantiation: absolute offsets from
 * the imported globals' values (u32), checked against the memory's size in
 * bytes and the size limit. The reason instead of the segments when some segment would not fit, or
 * the span is over the size limit.
 */
export function resolveSegments(
  segments: readonly PlacedSegment[],
  globalValue: (global: number) => number,
  memoryBytes: number,
  options: Pick<AnalyzeOptions, 'sizeLimit' | 'pageSize'>,
): readonly PlacedSegment[] | 'out-of-bounds' | 'too-large' {
  // Constant offsets (an imported memory's usual data): the same every
  // time, so only the bounds are checked, from a summary made once. Walking
  // and copying every segment cost pglite's 7,555 about 0.2 ms per
  // instantiation.
  const fixed = constantSummary(segments);
  if (fixed !== null) {
    if (fixed.end > memoryBytes) return 'out-of-bounds';
    if (fixed.hi > 0 && roundUp(fixed.hi, options.pageSize) - roundDown(fixed.lo, options.pageSize) > options.sizeLimit) return 'too-large';
    return segments;
  }
  const out: PlacedSegment[] = [];
  let lo = Infinity;
  let hi = 0;
  for (const seg of segments) {
    const offset = seg.global == null ? seg.offset : (globalValue(seg.global) + seg.offset) % 2 ** 32;
    const len = seg.dataEnd - seg.dataStart;
    if (offset + len > memoryBytes) return 'out-of-bounds';
    if (len > 0) {
      lo = Math.min(lo, offset);
      hi = Math.max(hi, offset + len);
    }
    out.push({ offset, dataStart: seg.dataStart, dataEnd: seg.dataEnd });
  }
  if (hi > 0 && roundUp(hi, options.pageSize) - roundDown(lo, options.pageSize) > options.sizeLimit) return 'too-large';
  return out;
}

/** For segments that all have constant offsets: the largest end, and the span of the non-empty ones. */
const constantSummaries = new WeakMap<readonly PlacedSegment[], { end: number; lo: number; hi: number } | null>();
function constantSummary(segments: readonly PlacedSegment[]): { end: number; lo: number; hi: number } | null {
  let summary = constantSummaries.get(segments);
  if (summary !== undefined) return summary;
  summary = { end: 0, lo: Infinity, hi: 0 };
  for (const seg of segments) {
    if (seg.global != null) {
      summary = null;
      break;
    }
    const len = seg.dataEnd - seg.dataStart;
    summary.end = Math.max(summary.end, seg.offset + len);
    if (len > 0) {
      summary.lo = Math.min(summary.lo, seg.offset);
      summary.hi = Math.max(summary.hi, seg.offset + len);
    }
  }
  constantSummaries.set(segments, summary);
  return summary;
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

/** Whether the rewrite imports the module's defined memories (it defines some, and all can become imports). */
export function movesMemories(parsed: ParsedModule): boolean {
  return parsed.memories.length > 0 && rewritableMemories(parsed) === null;
}

export function analyzeMemories(parsed: ParsedModule, options: AnalyzeOptions): MemoryPlan[] {
  const plans: MemoryPlan[] = [];
  const table = parsed.dataTable;
  const byMemory = activeByMemory(table);

  const globals = parsed.imports.filter((i) => i.kind === 'global').map((i) => i.global!);
  const none = { segments: [], segmentIndices: [], condition: null };
  let index = 0;
  for (const imp of parsed.imports) {
    if (imp.kind !== 'memory' || !imp.memory) continue;
    const memIndex = index++;
    const base = { index: memIndex, imported: true, type: imp.memory };
    const segs = byMemory.get(memIndex) ?? [];
    let fallback: FallbackReason | undefined;
    const kinds = [imp.memory.shared ? 'shared' : '', imp.memory.memory64 ? 'memory64' : ''].filter(Boolean).join(' and ');
    const own =
      kinds !== ''
        ? exclusion('imported', `the memory is imported and ${kinds}; its segments are applied by V8 as usual`)
        : segs.length === 0
          ? exclusion('imported', 'the memory is imported and the module has no data for it')
          : !options.mapImported
            ? ((fallback = 'backend'), exclusion('imported', 'the memory is imported; this backend leaves its segments to V8'))
            : options.opaqueStart
              ? ((fallback = 'start-function'),
                exclusion('imported', `the memory is imported and the start function cannot run before the data is placed (${options.opaqueStart}); V8 applies the segments`))
              : null;
    const result = own ?? placeSegments(table, segs, imp.memory, options, globals, true);
    if ('code' in result) plans.push({ ...base, ...none, excluded: result, ...(fallback ? { fallback } : {}) });
    else plans.push(imagedPlan(base, table, result.segmentIndices, 'imported-untouched'));
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
      plans.push({ ...base, ...none, excluded: own });
      continue;
    }
    const result = placeSegments(table, byMemory.get(memIndex) ?? [], type, options, globals, false);
    if ('code' in result) plans.push({ ...base, ...none, excluded: result });
    else plans.push(imagedPlan(base, table, result.segmentIndices, result.relative ? 'position-independent' : null));
  }
  return plans;
}

/**
 * Checks a memory's segments. Offsets must be i32 constants, or
 * `global.get` (plus a constant) of an imported immutable i32 global.
 * Constant segments of a defined memory are bounds- and size-checked now;
 * everything else at instantiation, when the values are known
 * (`deferBounds` for imported memories, whose actual size may exceed the
 * declared minimum).
 */
function placeSegments(
  table: DataTable,
  indices: number[],
  type: MemoryType,
  options: AnalyzeOptions,
  globals: readonly { readonly valType: number; readonly mutable: boolean }[],
  deferBounds: boolean,
): Exclusion | { segmentIndices: number[]; relative: boolean } {
  const initialBytes = type.min * WASM_PAGE;
  let relative = false;
  let lo = Infinity;
  let hi = 0;
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    const dataStart = table.dataStart[i]!;
    const dataEnd = table.dataEnd[i]!;
    let offset: number;
    if (table.offsetKind[i] === OFFSET_I32) {
      offset = table.offsetValue[i]!;
    } else {
      const off = table.offset(i);
      if (off === null || off.dynamic) {
        return exclusion('dynamic-offset', `data segment ${i} has an offset computed at instantiation`);
      }
      if (off.global !== null) {
        const g = globals[off.global];
        if (!g || g.valType !== 0x7f || g.mutable) {
          return exclusion(
            'dynamic-offset',
            `data segment ${i} has an offset computed from global ${off.global}, which is not an imported immutable i32`,
          );
        }
        relative = true;
        continue;
      }
      if (off.type !== 'i32') {
        return exclusion('invalid-offset', `data segment ${i} has an offset that is not an i32 constant`);
      }
      offset = Number(off.constant);
    }
    const len = dataEnd - dataStart;
    if (!deferBounds && offset + len > initialBytes) {
      return exclusion(
        'out-of-bounds',
        `data segment ${i} ends at ${offset + len}, beyond the initial size ${initialBytes}; instantiation traps as native`,
      );
    }
    if (len > 0) {
      if (offset < lo) lo = offset;
      if (offset + len > hi) hi = offset + len;
    }
  }
  if (hi > 0) {
    const span = roundUp(hi, options.pageSize) - roundDown(lo, options.pageSize);
    if (span > options.sizeLimit) {
      return exclusion('too-large', `the image would span ${span} bytes, over the limit of ${options.sizeLimit}`);
    }
  }
  return { segmentIndices: indices, relative };
}

/** Data indices of the active segments, by memory index, in order. */
function activeByMemory(table: DataTable): Map<number, number[]> {
  const byMemory = new Map<number, number[]>();
  let last: number[] = [];
  let lastMemory = -1;
  const { passive, memory } = table;
  for (let i = 0; i < table.length; i++) {
    if (passive[i] === 1) continue;
    const m = memory[i]!;
    if (m !== lastMemory) {
      let list = byMemory.get(m);
      if (!list) byMemory.set(m, (list = []));
      last = list;
      lastMemory = m;
    }
    last.push(i);
  }
  return byMemory;
}

/**
 * The plan of a memory that gets an image. Its `segments` (one object per
 * segment, about 100,000 for a Go module) are made from the data table on
 * first use (the image is built at the first instantiation), not at prepare.
 */
function imagedPlan(
  base: { readonly index: number; readonly imported: boolean; readonly type: MemoryType },
  table: DataTable,
  segmentIndices: number[],
  condition: MemoryCondition | null,
): MemoryPlan {
  const plan: MemoryPlan = { ...base, excluded: null, segments: [] as readonly PlacedSegment[], segmentIndices, condition };
  columnsOf.set(plan, table);
  Object.defineProperty(plan, 'segments', {
    get(): readonly PlacedSegment[] {
      const made = placedSegments(table, segmentIndices);
      Object.defineProperty(plan, 'segments', { value: made, enumerable: true, writable: true, configurable: true });
      return made;
    },
    enumerable: true,
    configurable: true,
  });
  return plan;
}

/** The data table an imaged plan of analyzeMemories reads its segments from (a copy of the plan has none). */
const columnsOf = new WeakMap<MemoryPlan, DataTable>();

/**
 * The segments of a plan with a constant offset each, as columns: offset,
 * dataStart, dataEnd of each (no object per segment). Null for a plan not
 * made by analyzeMemories, or with a segment at an imported global.
 */
export function constantColumns(plan: MemoryPlan): { readonly offset: Float64Array; readonly dataStart: Float64Array; readonly dataEnd: Float64Array } | null {
  const table = columnsOf.get(plan);
  if (table === undefined) return null;
  const indices = plan.segmentIndices;
  const n = indices.length;
  const offset = new Float64Array(n);
  const dataStart = new Float64Array(n);
  const dataEnd = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const i = indices[k]!;
    if (table.offsetKind[i] === OFFSET_I32) offset[k] = table.offsetValue[i]!;
    else {
      const off = table.offset(i)!;
      if (off.global !== null) return null;
      offset[k] = Number(off.constant);
    }
    dataStart[k] = table.dataStart[i]!;
    dataEnd[k] = table.dataEnd[i]!;
  }
  return { offset, dataStart, dataEnd };
}

/**
 * The number of pages the non-empty segments of `plans` cover, their page
 * spans merged across all the plans (what pagesCovered() of all their
 * ranges gives), from their columns; null when some plan has none
 * (constantColumns) or the spans are too far apart to count this way.
 */
export function coveredPages(plans: readonly MemoryPlan[], pageSize: number): number | null {
  const all: { offset: Float64Array; dataStart: Float64Array; dataEnd: Float64Array }[] = [];
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of plans) {
    const c = constantColumns(p);
    if (c === null) return null;
    all.push(c);
    for (let k = 0; k < c.offset.length; k++) {
      const len = c.dataEnd[k]! - c.dataStart[k]!;
      if (len === 0) continue;
      const from = Math.floor(c.offset[k]! / pageSize);
      const to = Math.ceil((c.offset[k]! + len) / pageSize);
      if (from < lo) lo = from;
      if (to > hi) hi = to;
    }
  }
  if (hi === -Infinity) return 0;
  if (hi - lo > 1 << 24) return null;
  // Each span adds 1 from its first page and takes it back after its last: a page is covered where the sum is positive.
  const delta = new Int32Array(hi - lo + 1);
  for (const c of all) {
    for (let k = 0; k < c.offset.length; k++) {
      const len = c.dataEnd[k]! - c.dataStart[k]!;
      if (len === 0) continue;
      delta[Math.floor(c.offset[k]! / pageSize) - lo]!++;
      delta[Math.ceil((c.offset[k]! + len) / pageSize) - lo]!--;
    }
  }
  let pages = 0;
  let depth = 0;
  for (let page = 0; page < delta.length; page++) {
    depth += delta[page]!;
    if (depth > 0) pages++;
  }
  return pages;
}

/** The placed segments of rows that placeSegments() accepted. */
function placedSegments(table: DataTable, indices: readonly number[]): PlacedSegment[] {
  const out = new Array<PlacedSegment>(indices.length);
  const { offsetKind, offsetValue, dataStart, dataEnd } = table;
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    // Small integers as such (smi): a value read from a Float64Array is a
    // double, which V8 keeps boxed in each object (a heap number per
    // field: pglite's 7,555 segments made 15,000 of them, which every full
    // collection marks while the plan lives).
    const start = smi(dataStart[i]!);
    const end = smi(dataEnd[i]!);
    if (offsetKind[i] === OFFSET_I32) {
      out[k] = { offset: smi(offsetValue[i]!), dataStart: start, dataEnd: end };
    } else {
      const off = table.offset(i)!;
      out[k] =
        off.global !== null
          ? { offset: smi(Number(off.constant)), global: off.global, dataStart: start, dataEnd: end }
          : { offset: smi(Number(off.constant)), dataStart: start, dataEnd: end };
    }
  }
  return out;
}

/** `n` (a non-negative integer) as an int32 when it fits V8's small integers, so that it is stored unboxed. */
const smi = (n: number): number => (n < 0x40000000 ? n | 0 : n);

export const roundUp = (n: number, page: number): number => Math.ceil(n / page) * page;
export const roundDown = (n: number, page: number): number => Math.floor(n / page) * page;
