/**
 * Conditional images: images that can be used only after a check at each
 * instantiation (see MemoryCondition in image/analyze.ts).
 *
 *  - Position-independent data (segments at `global.get` of an imported
 *    immutable i32 global, such as `__memory_base`): the offsets are
 *    resolved from the imports given, and an image is built and cached per
 *    resolved set of values. A defined memory gets it before V8 runs, as a
 *    fixed image does.
 *  - Imported memories: the caller's memory may hold anything, and what
 *    V8 leaves there is the segments' bytes written over it. The image is
 *    placed *after* V8 made the instance (from the primary form, whose
 *    segments for this memory are empty), judged by what each page holds at
 *    that moment (Backend.classifyPages):
 *      - a page holding only zeros, inside the image: mapped from the image
 *        (runs of such pages, one mapping per run): zeros with the segments
 *        written over them are exactly the image's bytes;
 *      - any other page of the segments' span: the segments' bytes are
 *        written on it, in segment order, clipped to the page, exactly as V8
 *        writes them (the caller's bytes between segments stay);
 *      - a zero page outside the image (only zero bytes land there): nothing.
 *    Nothing JavaScript can see runs between V8's return and the placement,
 *    so the pages cannot change in between. If V8 fails, nothing was placed,
 *    and natively nothing was written either: the failure came before the
 *    data (a link error, an element segment that traps; another active data
 *    segment that could trap after ours rules the path out, 'trap-risk'),
 *    since the module either has no start function or one that provably
 *    cannot fail (image/start.ts). Such a start function runs on the memory
 *    without the data, so what it fills is filled again after the data is
 *    placed: fills write constants, and the result is V8's.
 *    Only synchronous instantiation places images into imported memories:
 *    an asynchronous one would let other code run while V8 works.
 *
 * Two compiled forms exist: the primary one (all conditional segments
 * emptied, their data supplied by us) and, compiled on first need, the
 * fallback one (conditional segments left active, V8 applies them). An
 * instantiation uses the primary form unless a check before V8 fails; every
 * fallback is counted in the engine's stats with its reason.
 *
 * The imports are read once (PreparedModule, src/pin.ts): where reading
 * them can run caller code (a getter, a Proxy), V8 is handed an object
 * holding exactly the values read, so the engine and V8 see the same memory
 * and globals; `read(i)` gives import i's value. A global's value is read
 * through WebAssembly.Global's own getter (V8 reads it without running
 * caller code; so does the engine).
 *
 * Position-independent data resolved at a base not seen before (the last
 * SEEN_LIMIT resolved sets of values) gets no image: V8 writes it ('new-base';
 * building an image costs more than V8's copy, and pays only when the base
 * comes again). With nativeWhenFaster off, every base gets an image.
 *
 * Each placement into an imported memory adds mappings (VMAs); a memory
 * holding too many (src/mappings.ts) gets the data written instead
 * ('mappings').
 */
import type { ParsedModule } from './binary/reader.js';
import { rewriteModule } from './binary/rewriter.js';
import type { EngineCore } from './core.js';
import { type PlacedSegment, movesMemories, resolveSegments, roundDown, roundUp, WASM_PAGE, type MemoryPlan } from './image/analyze.js';
import { flattenImage, isZero } from './image/flatten.js';
import type { MemoryImage } from './image/image.js';
import { evaluateStart, type Fill, type StartAnalysis } from './image/start.js';
import { mappingsFor, MAPPINGS_PER_MEMORY, reserveProcessMappings } from './mappings.js';
import { bufferOf } from './memory.js';
import { NOT_READ } from './pin.js';
import type { SlotRequest } from './pool.js';
import { countFallback, type FallbackReason } from './stats.js';
import { wasm } from './wasm-api.js';

/** An image to place into a caller's memory once V8 has made the instance. */
export interface Placement {
  readonly memory: WebAssembly.Memory;
  /** Memory index in the module. */
  readonly index: number;
  readonly image: MemoryImage | null;
  /** The resolved segments, in order (absolute offsets). */
  readonly segments: readonly PlacedSegment[];
  /** The page-aligned span of the non-empty segments. */
  readonly from: number;
  readonly to: number;
  /** What the start function fills in this memory: filled again after the data. */
  readonly fills: readonly Fill[];
  /** At most this many runs may be mapped (the memory's mapping bound, src/mappings.ts). */
  readonly maxRuns: number;
  /** Runs already allowed by the process's bound (reserveProcessMappings). */
  readonly reserved: number;
}

/** What one instantiation uses. */
export interface Attempt {
  readonly module: WebAssembly.Module;
  readonly requests: readonly SlotRequest[];
  /** Images to place into the caller's memories after V8 succeeded (see complete()). */
  readonly deferred: readonly Placement[];
  /** The import object to hand V8 instead of the caller's (src/pin.ts), or null. */
  readonly pinned?: Record<string, unknown> | null;
}

/** Reads import `i` (declaration order) of the caller's imports; NOT_READ when it could not be read. */
export type ImportReader = (i: number) => unknown;

/** Images cached per plan; past this many resolved bases the oldest is dropped. */
const CACHE_LIMIT = 16;
/** At most this many separate runs of zero pages are mapped per placement (each is a mapping, a VMA or two). */
const MAX_RUNS = 16;
/** Resolved sets of global values remembered per plan (a set seen before gets an image). */
const SEEN_LIMIT = 64;
/** V8 writes the data when at least 1 in RESIDENT_SHARE of the image's pages is already resident (see resolve()). */
const RESIDENT_SHARE = 4;

export class ConditionalImages {
  readonly #core: EngineCore;
  readonly #source: Uint8Array<ArrayBuffer>;
  readonly #parsed: ParsedModule;
  /** Every plan of the module, and the conditional ones among them. */
  readonly #allPlans: readonly MemoryPlan[];
  readonly #plans: readonly MemoryPlan[];
  /** Imported globals, by global index: the import's index. */
  readonly #globals: readonly number[];
  /** Imported memories, by memory index: the import's index. */
  readonly #memories: readonly number[];
  /** Per plan: resolved sets of values seen (a new one gets no image; see the file comment). Null: every set gets one. */
  readonly #seen: Map<number, Set<string>> | null;
  /** What the start function does (only 'none' or 'fills' when a plan is an imported memory). */
  readonly #start: StartAnalysis;
  /** Some active segment the primary form keeps could trap (after ours, natively). */
  readonly #trapRisk: boolean;
  /** Fallback form, compiled on first need. */
  #fallback: WebAssembly.Module | null = null;
  readonly #cache = new Map<number, Map<string, MemoryImage | null>>();
  /** Per image, per page: 1 when the page holds a non-zero byte (0: a hole inside the image). */
  readonly #dataPages = new WeakMap<MemoryImage, Uint8Array>();
  /** The image each conditional plan used last (absent: none yet, or V8 applied the segments). */
  readonly lastImage = new Map<number, MemoryImage | null>();

  /**
   * The original module, compiled at first need: the fallback form when
   * that is the original as is (no memory of the module's own is moved and
   * no other segment is imaged: only conditional ones, which the fallback
   * leaves active).
   */
  readonly #original: () => WebAssembly.Module;

  /**
   * `start`: analyzeStart() of the module (only 'none' or 'fills' matter: an
   * opaque one excludes imported memories). `original`: the module as given,
   * compiled at first call.
   */
  constructor(
    core: EngineCore,
    source: Uint8Array<ArrayBuffer>,
    parsed: ParsedModule,
    plans: readonly MemoryPlan[],
    start: StartAnalysis,
    original: () => WebAssembly.Module,
  ) {
    this.#core = core;
    this.#original = original;
    this.#source = source;
    this.#parsed = parsed;
    this.#allPlans = plans;
    this.#plans = plans.filter((p) => p.condition !== null && p.excluded === null);
    const byKind = (kind: string) => parsed.imports.flatMap((imp, i) => (imp.kind === kind ? [i] : []));
    this.#globals = byKind('global');
    this.#memories = byKind('memory');
    this.#seen = core.options.nativeWhenFaster ? new Map() : null;
    this.#start = start;
    this.#trapRisk = keepsRiskySegments(parsed, plans);
  }

  /**
   * Resolves this instantiation's conditions. `primary` is the compiled
   * primary form, `requests` the slot requests with fixed images; the
   * returned requests carry the resolved images of conditional defined
   * memories, and `deferred` the images for imported memories, to place
   * with complete() once V8 has made the instance.
   */
  resolve(read: ImportReader, primary: WebAssembly.Module, requests: readonly SlotRequest[], sync: boolean): Attempt {
    const out = [...requests];
    const deferred: Placement[] = [];
    const values = new Map<number, number | null>();
    const value = (g: number): number | null => {
      if (!values.has(g)) {
        const i = this.#globals[g];
        values.set(g, i === undefined ? null : globalValue(read(i)));
      }
      return values.get(g)!;
    };
    const definedOrdinal = (index: number) => index - this.#parsed.importedMemoryCount;
    for (const plan of this.#plans) {
      let memory: WebAssembly.Memory | null = null;
      if (plan.imported) {
        if (!sync) return this.#fallbackAttempt(requests, 'async');
        if (this.#trapRisk) return this.#fallbackAttempt(requests, 'trap-risk');
        memory = this.#importedMemory(read, plan.index);
        if (memory === null) return this.#fallbackAttempt(requests, 'imports');
        if (this.#parsed.importedMemoryCount > 1 && this.#aliased(read, plan.index, memory)) {
          return this.#fallbackAttempt(requests, 'aliased');
        }
      }
      const memoryBytes = memory ? bufferOf(memory).byteLength : plan.type.min * WASM_PAGE;
      const used: [number, number][] = [];
      for (const seg of plan.segments) {
        if (seg.global == null || used.some(([g]) => g === seg.global)) continue;
        const v = value(seg.global);
        if (v === null) return this.#fallbackAttempt(requests, 'imports');
        used.push([seg.global, v]);
      }
      const resolved = resolveSegments(plan.segments, (g) => value(g)!, memoryBytes, {
        sizeLimit: this.#core.options.imageSizeLimit,
        pageSize: this.#core.backend.pageSize,
      });
      if (typeof resolved === 'string') return this.#fallbackAttempt(requests, resolved);
      const key = used.sort((a, b) => a[0] - b[0]).join(';');
      if (used.length > 0 && this.#firstSight(plan.index, key)) return this.#fallbackAttempt(requests, 'new-base');
      const image = this.#image(plan, key, resolved);
      if (memory) {
        const span = spanOf(resolved, this.#core.backend.pageSize);
        if (!span) {
          this.lastImage.set(plan.index, null);
          continue;
        }
        // Nothing to map (all-zero data, or a bytes image, counted 'memfd' when built): V8 writes it.
        if (image === null || image.fd === null) return this.#fallbackAttempt(requests, null);
        // Pages the program already holds (zero-filled by calloc, say): V8's
        // copy onto them takes no page faults, which is most of what mapping
        // saves, and reading them to check them costs more than the rest
        // (tree-sitter's grammar into a zero-filled range: 0.17 ms imaged
        // against V8's 0.055). A cost decision only: what is placed is
        // still decided page by page after V8. With nativeWhenFaster off,
        // such pages are imaged too (the mechanism, whatever it costs).
        if (this.#core.options.nativeWhenFaster) {
          const present = this.#core.backend.presentPages?.(memory, image.offset, image.length) ?? null;
          if (present !== null && present * RESIDENT_SHARE >= image.length / this.#core.backend.pageSize) {
            return this.#fallbackAttempt(requests, 'resident');
          }
        }
        // What the pages hold now says whether any of the image could be
        // mapped at all; if not, V8 writes the data (at its own speed). This
        // only chooses the form: after V8, the pages are judged again.
        const marks = this.#core.backend.classifyPages!(memory, span.from, span.to - span.from);
        if (marks === null) return this.#fallbackAttempt(requests, 'unclassifiable');
        const runs = this.#zeroRuns(marks, image, span.from).length;
        if (runs === 0) return this.#fallbackAttempt(requests, 'non-zero');
        if (runs > MAX_RUNS) return this.#fallbackAttempt(requests, 'scattered');
        // The memory's mappings now, and the process's: a placement never takes either past its bound.
        const count = this.#core.backend.mappingCount?.(memory, MAPPINGS_PER_MEMORY + 1) ?? null;
        if (count === null) return this.#fallbackAttempt(requests, 'unclassifiable');
        const maxRuns = Math.floor((MAPPINGS_PER_MEMORY - count) / 2);
        if (maxRuns < runs || !reserveProcessMappings(this.#core.backend, mappingsFor(runs))) {
          return this.#fallbackAttempt(requests, 'mappings');
        }
        deferred.push({ memory, index: plan.index, image, segments: resolved, ...span, fills: [], maxRuns, reserved: runs });
      } else {
        this.lastImage.set(plan.index, image);
        const i = definedOrdinal(plan.index);
        out[i] = { ...out[i]!, image };
      }
    }
    if (deferred.length > 0 && this.#start.kind === 'fills') {
      const fills = evaluateStart(this.#start, value, (m) => this.#memoryBytes(read, m));
      if (fills === 'unknown') return this.#fallbackAttempt(requests, 'imports');
      if (fills === 'traps') return this.#fallbackAttempt(requests, 'start-function');
      for (let i = 0; i < deferred.length; i++) {
        const p = deferred[i]!;
        const mine = fills.filter((f) => f.memory === p.index && f.length > 0 && f.dest < p.to && f.dest + f.length > p.from);
        if (mine.length > 0) deferred[i] = { ...p, fills: mine };
      }
    }
    return { module: primary, requests: out, deferred };
  }

  /**
   * V8 made the instance from the primary form: place the deferred images,
   * by what the pages hold now (see the file comment). Throws only when a
   * mapping failed and its range could not be restored.
   */
  complete(attempt: Attempt): void {
    for (const p of attempt.deferred) this.#place(p);
  }

  dispose(): void {
    for (const cache of this.#cache.values()) for (const image of cache.values()) if (image) this.#core.disposeImage(image);
    this.#cache.clear();
    this.lastImage.clear();
  }

  #place(p: Placement): void {
    const backend = this.#core.backend;
    const page = backend.pageSize;
    const pages = (p.to - p.from) / page;
    const marks = backend.classifyPages?.(p.memory, p.from, p.to - p.from) ?? null;
    // Runs of zero pages inside the image: [first page, end page) relative to p.from.
    let runs: [number, number][] = [];
    const image = p.image;
    if (marks === null) {
      countFallback(this.#core.counters, 'unclassifiable');
    } else if (image !== null && backend.mapImageRange) {
      runs = this.#zeroRuns(marks, image, p.from);
      if (runs.length > MAX_RUNS) {
        countFallback(this.#core.counters, 'scattered');
        runs = [];
      } else if (
        runs.length > p.maxRuns ||
        (runs.length > p.reserved && !reserveProcessMappings(backend, mappingsFor(runs.length - p.reserved)))
      ) {
        // More runs than the memory's mapping bound allows (found before V8): write instead.
        countFallback(this.#core.counters, 'mappings');
        runs = [];
      } else if (runs.length === 0) {
        countFallback(this.#core.counters, 'non-zero');
      }
    }
    // A plain array, not a typed one: no ArrayBuffer on this path (see Backend.classifyPages).
    const mapped = new Array<number>(pages).fill(0);
    let bytes = 0;
    for (const [i, j] of runs) {
      if (backend.mapImageRange!(p.memory, image!, p.from + i * page, (j - i) * page) === 'mapped') {
        mapped.fill(1, i, j);
        bytes += (j - i) * page;
      } else if (image!.fd !== null) {
        countFallback(this.#core.counters, 'mmap');
      }
    }
    this.#core.counters.bytesMapped += bytes;
    if (bytes > 0) this.lastImage.set(p.index, image);
    else this.lastImage.delete(p.index);
    // The pages the segments' bytes are written on: those not mapped that
    // hold something, or that the image has data for (a zero page where the
    // image has none, inside it or outside, gets only zero bytes: nothing
    // to do).
    const imageFirst = image ? (image.offset - p.from) / page : 0;
    const imageEnd = image ? imageFirst + image.length / page : 0;
    const data = image ? this.#dataPages.get(image) : undefined;
    const write: [number, number][] = [];
    for (let i = 0; i < pages; i++) {
      const imageData = i >= imageFirst && i < imageEnd && (data === undefined || data[i - imageFirst] === 1);
      const needed = mapped[i] === 0 && (marks === null || marks[i] !== 0 || imageData);
      if (!needed) continue;
      const last = write[write.length - 1];
      if (last && last[1] === p.from + i * page) last[1] += page;
      else write.push([p.from + i * page, p.from + (i + 1) * page]);
    }
    const view = write.length > 0 || p.fills.length > 0 ? new Uint8Array(bufferOf(p.memory)) : null;
    if (view && write.length > 0) writeSegments(view, this.#source, p.segments, write);
    // What the start function filled (on the memory without the data) is filled again.
    for (const f of p.fills) {
      const a = Math.max(f.dest, p.from);
      const b = Math.min(f.dest + f.length, p.to);
      if (a < b) view!.fill(f.value, a, b);
    }
  }

  /**
   * The runs of pages to map: each stretch of zero pages inside the image,
   * without the image's holes at its ends (a zero page under a hole needs
   * nothing; left alone it stays a plain zero page, which a later image may
   * still take). Page numbers relative to `from`, [start, end).
   */
  #zeroRuns(marks: Uint8Array, image: MemoryImage, from: number): [number, number][] {
    const page = this.#core.backend.pageSize;
    const first = (image.offset - from) / page;
    const end = first + image.length / page;
    const data = this.#dataPages.get(image);
    const hasData = (i: number): boolean => data === undefined || data[i - first] === 1;
    const runs: [number, number][] = [];
    for (let i = first; i < end; i++) {
      if (marks[i] !== 0) continue;
      let j = i + 1;
      while (j < end && marks[j] === 0) j++;
      let a = i;
      let b = j;
      while (a < b && !hasData(a)) a++;
      while (b > a && !hasData(b - 1)) b--;
      if (a < b) runs.push([a, b]);
      i = j;
    }
    return runs;
  }

  /**
   * Whether the resolved set `key` of plan `index` is seen for the first
   * time (remembered now): it then gets no image. Never with
   * nativeWhenFaster off.
   */
  #firstSight(index: number, key: string): boolean {
    if (this.#seen === null) return false;
    const cache = this.#cache.get(index);
    if (cache?.has(key)) return false;
    let seen = this.#seen.get(index);
    if (!seen) this.#seen.set(index, (seen = new Set()));
    if (seen.has(key)) {
      seen.delete(key);
      return false;
    }
    if (seen.size >= SEEN_LIMIT) seen.delete(seen.values().next().value as string);
    seen.add(key);
    return true;
  }

  /** The caller's memory for imported memory `index`, if it is a genuine one. */
  #importedMemory(read: ImportReader, index: number): WebAssembly.Memory | null {
    const i = this.#memories[index];
    return i === undefined ? null : genuineMemory(read(i));
  }

  /** Whether another memory import of the module is given the same memory. */
  #aliased(read: ImportReader, index: number, memory: WebAssembly.Memory): boolean {
    for (let i = 0; i < this.#parsed.importedMemoryCount; i++) {
      if (i !== index && this.#importedMemory(read, i) === memory) return true;
    }
    return false;
  }

  /** A memory's byte length as the instance will have it, or null when unknown. */
  #memoryBytes(read: ImportReader, index: number): number | null {
    if (index < this.#parsed.importedMemoryCount) {
      const m = this.#importedMemory(read, index);
      return m ? bufferOf(m).byteLength : null;
    }
    const type = this.#parsed.memories[index - this.#parsed.importedMemoryCount];
    return type ? type.min * WASM_PAGE : null;
  }

  #image(plan: MemoryPlan, key: string, resolved: Parameters<typeof flattenImage>[1]): MemoryImage | null {
    let cache = this.#cache.get(plan.index);
    if (!cache) this.#cache.set(plan.index, (cache = new Map()));
    if (cache.has(key)) return cache.get(key)!;
    const flat = flattenImage(this.#source, resolved, this.#core.backend.pageSize);
    let image: MemoryImage | null = null;
    if (flat.length > 0) {
      const made = this.#core.backend.createImage(flat);
      image = made.image;
      this.#dataPages.set(image, dataPages(flat.bytes, this.#core.backend.pageSize));
      this.#core.trackImage(image);
      this.#core.counters.imagesBuilt++;
      if (made.fallback) {
        this.#core.counters.imageFallbacks++;
        countFallback(this.#core.counters, 'memfd');
      }
    }
    if (cache.size >= CACHE_LIMIT) {
      const [oldKey, old] = cache.entries().next().value as [string, MemoryImage | null];
      cache.delete(oldKey);
      if (old) this.#core.disposeImage(old);
    }
    cache.set(key, image);
    return image;
  }

  /** The fallback form: V8 applies the conditional segments. `reason` is counted (null: nothing to count). */
  #fallbackAttempt(requests: readonly SlotRequest[], reason: FallbackReason | null): Attempt {
    if (reason !== null) countFallback(this.#core.counters, reason);
    if (this.#fallback === null) {
      const convert = new Set<number>();
      for (const p of this.#allPlans) if (!p.excluded && p.condition === null) for (const i of p.segmentIndices) convert.add(i);
      // As planModule decides it (a shared or memory64 defined memory is left as it is).
      const importMemories = movesMemories(this.#parsed);
      // Nothing else rewritten: the fallback is the original (already
      // compiled where the caller gave it, as the register hook does).
      this.#fallback =
        !importMemories && convert.size === 0
          ? this.#original()
          : new wasm.Module(rewriteModule(this.#source, this.#parsed, { importMemories, convert }).bytes);
    }
    const out = requests.map((r, i) => (this.#isConditionalDefined(i) ? { ...r, image: null } : r));
    for (const p of this.#plans) this.lastImage.delete(p.index);
    return { module: this.#fallback, requests: out, deferred: [] };
  }

  #isConditionalDefined(definedOrdinal: number): boolean {
    const index = definedOrdinal + this.#parsed.importedMemoryCount;
    return this.#plans.some((p) => !p.imported && p.index === index);
  }
}

/** Per page of `bytes`: 1 when it holds a non-zero byte. */
function dataPages(bytes: Uint8Array, page: number): Uint8Array {
  const out = new Uint8Array(bytes.length / page);
  for (let i = 0; i < out.length; i++) out[i] = isZero(bytes, i * page, (i + 1) * page) ? 0 : 1;
  return out;
}

/** The page-aligned span of the non-empty segments, or null when all are empty. */
function spanOf(segments: readonly PlacedSegment[], page: number): { from: number; to: number } | null {
  let lo = Infinity;
  let hi = 0;
  for (const s of segments) {
    if (s.dataEnd === s.dataStart) continue;
    lo = Math.min(lo, s.offset);
    hi = Math.max(hi, s.offset + s.dataEnd - s.dataStart);
  }
  return hi > 0 ? { from: roundDown(lo, page), to: roundUp(hi, page) } : null;
}

/**
 * Writes the segments' bytes, in segment order, clipped to `ranges` (sorted,
 * disjoint [start, end) byte ranges): what V8 would have written there.
 */
function writeSegments(view: Uint8Array, source: Uint8Array, segments: readonly PlacedSegment[], ranges: readonly [number, number][]): void {
  for (const s of segments) {
    const a = s.offset;
    const b = s.offset + s.dataEnd - s.dataStart;
    if (a === b) continue;
    // The first range that ends after a.
    let lo = 0;
    let hi = ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ranges[mid]![1] <= a) lo = mid + 1;
      else hi = mid;
    }
    for (let r = lo; r < ranges.length && ranges[r]![0] < b; r++) {
      const from = Math.max(a, ranges[r]![0]);
      const to = Math.min(b, ranges[r]![1]);
      if (from < to) view.set(source.subarray(s.dataStart + (from - a), s.dataStart + (to - a)), from);
    }
  }
}

/**
 * Whether the primary form keeps an active data segment (one of an excluded
 * memory) that could trap: natively it would trap after the conditional
 * segments before it were written, which placing after V8 cannot match. A
 * segment at a constant offset that fits the memory's declared minimum
 * cannot trap (an imported memory is at least that large).
 */
function keepsRiskySegments(parsed: ParsedModule, plans: readonly MemoryPlan[]): boolean {
  // From the data table's columns: `parsed.data` would make (and keep, with
  // the parsed module this class holds) an object per segment, pglite's
  // 7,555 with their offsets as BigInts, 2.4 MiB of heap that every full
  // collection then marks (V8's own instantiations in the same process
  // measured 10 against 13.7 ms with it).
  const table = parsed.dataTable;
  const converted = new Uint8Array(table.length);
  for (const p of plans) if (!p.excluded) for (const i of p.segmentIndices) converted[i] = 1;
  const types = [...parsed.imports.filter((i) => i.kind === 'memory').map((i) => i.memory!), ...parsed.memories];
  for (let i = 0; i < table.length; i++) {
    if (table.passive[i] === 1 || converted[i] === 1) continue;
    const type = types[table.memory[i]!];
    const off = table.offset(i);
    if (!type || !off || off.dynamic || off.global !== null || off.type !== (type.memory64 ? 'i64' : 'i32')) return true;
    if (Number(off.constant) + (table.dataEnd[i]! - table.dataStart[i]!) > type.min * WASM_PAGE) return true;
  }
  return false;
}

/** `value` if it is a genuine WebAssembly.Memory (a brand check: runs no caller code, not even a Proxy's trap). */
function genuineMemory(value: unknown): WebAssembly.Memory | null {
  if (value === NOT_READ || typeof value !== 'object' || value === null) return null;
  try {
    bufferOf(value as WebAssembly.Memory);
  } catch {
    return null;
  }
  return value as WebAssembly.Memory;
}

/** WebAssembly.Global.prototype.value's getter, as it was when this module loaded. */
const globalGetter = Function.prototype.call.bind(Object.getOwnPropertyDescriptor(WebAssembly.Global.prototype, 'value')!.get!) as (
  g: unknown,
) => unknown;

/**
 * An imported i32 global's value as u32, or null when it cannot be read as
 * one. A WebAssembly.Global is read through the original getter (a brand
 * check: no caller code runs, as when V8 reads it).
 */
function globalValue(v: unknown): number | null {
  if (v === NOT_READ) return null;
  if (typeof v === 'object' && v !== null) {
    try {
      v = globalGetter(v);
    } catch {
      return null;
    }
  }
  return typeof v === 'number' && Number.isFinite(v) ? v >>> 0 : null;
}
