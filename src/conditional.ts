/**
 * Conditional images: images that can be used only after a check at each
 * instantiation (see MemoryCondition in image/analyze.ts).
 *
 *  - Position-independent data (segments at `global.get` of an imported
 *    immutable i32 global, such as `__memory_base`): the offsets are
 *    resolved from the imports given, and an image is built and cached per
 *    resolved set of values.
 *  - Imported memories: the image is mapped into the caller's memory when
 *    the image's range of it is untouched (no page holds data: never
 *    written, or only read), which is exactly when writing the segments
 *    would leave the same bytes. Otherwise V8 writes them, as natively.
 *    The image is mapped before V8 instantiates. If instantiation fails
 *    before the data would have been written (imports that do not link,
 *    element segments that trap: errors V8 raises itself, with its
 *    "WebAssembly.Instance(): " prefix), the image is removed again, as the
 *    memory was untouched; if it fails later, in the start function, the
 *    data stays, as it does natively. Only synchronous instantiation maps
 *    into imported memories: an asynchronous one would let other code see
 *    and touch the memory in between.
 *
 * Two compiled forms exist: the primary one (all conditional segments
 * emptied, their data supplied by us) and, compiled on first need, the
 * fallback one (conditional segments left active, V8 applies them). Each
 * instantiation uses the primary form only if every check passes.
 */
import type { ParsedModule } from './binary/reader.js';
import { rewriteModule } from './binary/rewriter.js';
import type { EngineCore } from './core.js';
import { resolveSegments, roundDown, roundUp, WASM_PAGE, type MemoryPlan } from './image/analyze.js';
import { flattenImage } from './image/flatten.js';
import type { MemoryImage } from './image/image.js';
import { bufferOf } from './memory.js';
import type { SlotRequest } from './pool.js';

/** What one instantiation uses. */
export interface Attempt {
  readonly module: WebAssembly.Module;
  readonly requests: readonly SlotRequest[];
  /** Images placed into the caller's memories (removed again if instantiation fails). */
  readonly placed: readonly { readonly memory: WebAssembly.Memory; readonly image: MemoryImage }[];
}

/** Images cached per plan; past this many resolved bases the oldest is dropped. */
const CACHE_LIMIT = 16;

export class ConditionalImages {
  readonly #core: EngineCore;
  readonly #source: Uint8Array<ArrayBuffer>;
  readonly #parsed: ParsedModule;
  /** Every plan of the module, and the conditional ones among them. */
  readonly #allPlans: readonly MemoryPlan[];
  readonly #plans: readonly MemoryPlan[];
  /** Imported globals, by global index: where to read their values. */
  readonly #globals: readonly { readonly module: string; readonly name: string }[];
  /** Fallback form, compiled on first need. */
  #fallback: WebAssembly.Module | null = null;
  readonly #cache = new Map<number, Map<string, MemoryImage | null>>();
  /** The image each conditional plan used last (absent: none yet, or V8 applied the segments). */
  readonly lastImage = new Map<number, MemoryImage | null>();

  constructor(core: EngineCore, source: Uint8Array<ArrayBuffer>, parsed: ParsedModule, plans: readonly MemoryPlan[]) {
    this.#core = core;
    this.#source = source;
    this.#parsed = parsed;
    this.#allPlans = plans;
    this.#plans = plans.filter((p) => p.condition !== null && p.excluded === null);
    this.#globals = parsed.imports.filter((i) => i.kind === 'global').map((i) => ({ module: i.module, name: i.name }));
  }

  /**
   * Resolves this instantiation's conditions. `primary` is the compiled
   * primary form, `requests` the slot requests with fixed images; the
   * returned requests carry the resolved images of conditional defined
   * memories.
   */
  resolve(imports: unknown, primary: WebAssembly.Module, requests: readonly SlotRequest[], sync: boolean): Attempt {
    const out = [...requests];
    const placed: { memory: WebAssembly.Memory; image: MemoryImage }[] = [];
    const definedOrdinal = (index: number) => index - this.#parsed.importedMemoryCount;
    for (const plan of this.#plans) {
      if (plan.imported && !sync) return this.#fallbackAttempt(requests);
      const memory = plan.imported ? importedMemory(imports, this.#parsed, plan.index) : null;
      if (plan.imported && memory === null) return this.#fallbackAttempt(requests);
      const memoryBytes = memory ? bufferOf(memory).byteLength : plan.type.min * WASM_PAGE;
      const values = new Map<number, number>();
      for (const seg of plan.segments) {
        if (seg.global == null || values.has(seg.global)) continue;
        const v = globalValue(imports, this.#globals[seg.global]);
        if (v === null) return this.#fallbackAttempt(requests);
        values.set(seg.global, v);
      }
      const resolved = resolveSegments(plan.segments, (g) => values.get(g)!, memoryBytes, {
        sizeLimit: this.#core.options.imageSizeLimit,
        pageSize: this.#core.backend.pageSize,
      });
      if (resolved === null) return this.#fallbackAttempt(requests);
      const image = this.#image(plan, [...values].sort((a, b) => a[0] - b[0]).join(';'), resolved);
      this.lastImage.set(plan.index, image);
      if (memory) {
        // Untouched: no page of the segments' span holds anything.
        let lo = Infinity;
        let hi = 0;
        for (const s of resolved) {
          if (s.dataEnd === s.dataStart) continue;
          lo = Math.min(lo, s.offset);
          hi = Math.max(hi, s.offset + s.dataEnd - s.dataStart);
        }
        if (hi > 0 && !this.#untouched(memory, roundDown(lo, this.#core.backend.pageSize), roundUp(hi, this.#core.backend.pageSize))) {
          return this.#fallbackAttempt(requests);
        }
        if (image) placed.push({ memory, image });
      } else {
        const i = definedOrdinal(plan.index);
        out[i] = { ...out[i]!, image };
      }
    }
    return { module: primary, requests: out, placed };
  }

  /** Places the images into the caller's memories; removes them on failure. */
  place(attempt: Attempt): void {
    const done: (typeof attempt.placed)[number][] = [];
    try {
      for (const p of attempt.placed) {
        this.#core.backend.place(p.memory, p.image);
        this.#core.counters.bytesMapped += p.image.length;
        done.push(p);
      }
    } catch (e) {
      this.unplace(done);
      throw e;
    }
  }

  /**
   * Instantiation with `attempt` threw `error`: undo place() if the error
   * came before the data would have been written (see the file comment).
   */
  failed(attempt: Attempt, error: unknown): void {
    if (attempt.placed.length === 0) return;
    const beforeData =
      this.#parsed.start === null ||
      error instanceof WebAssembly.LinkError ||
      (error instanceof Error && error.message.startsWith('WebAssembly.Instance(): '));
    if (beforeData) this.unplace(attempt.placed);
  }

  /** Undoes place(): the ranges were untouched (zero) before, so zero again. */
  unplace(placed: Attempt['placed']): void {
    for (const p of placed) {
      try {
        this.#core.backend.remove(p.memory, p.image);
      } catch {
        // Best effort; the range stays as the image left it.
      }
    }
  }

  dispose(): void {
    for (const cache of this.#cache.values()) for (const image of cache.values()) if (image) this.#core.disposeImage(image);
    this.#cache.clear();
    this.lastImage.clear();
  }

  #untouched(memory: WebAssembly.Memory, from: number, to: number): boolean {
    try {
      return this.#core.backend.isUntouched(memory, from, to - from);
    } catch {
      return false;
    }
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
      this.#core.trackImage(image);
      this.#core.counters.imagesBuilt++;
      if (made.fallback) this.#core.counters.imageFallbacks++;
    }
    if (cache.size >= CACHE_LIMIT) {
      const [oldKey, old] = cache.entries().next().value as [string, MemoryImage | null];
      cache.delete(oldKey);
      if (old) this.#core.disposeImage(old);
    }
    cache.set(key, image);
    return image;
  }

  #fallbackAttempt(requests: readonly SlotRequest[]): Attempt {
    if (this.#fallback === null) {
      const convert = new Set<number>();
      for (const p of this.#allPlans) if (!p.excluded && p.condition === null) for (const i of p.segmentIndices) convert.add(i);
      const importMemories = this.#parsed.memories.length > 0;
      this.#fallback = new WebAssembly.Module(rewriteModule(this.#source, this.#parsed, { importMemories, convert }).bytes);
    }
    const out = requests.map((r, i) => (this.#isConditionalDefined(i) ? { ...r, image: null } : r));
    for (const p of this.#plans) this.lastImage.delete(p.index);
    return { module: this.#fallback, requests: out, placed: [] };
  }

  #isConditionalDefined(definedOrdinal: number): boolean {
    const index = definedOrdinal + this.#parsed.importedMemoryCount;
    return this.#plans.some((p) => !p.imported && p.index === index);
  }
}

/** The caller's memory for imported memory `index`, if it is a genuine one. */
function importedMemory(imports: unknown, parsed: ParsedModule, index: number): WebAssembly.Memory | null {
  const entry = parsed.imports.filter((i) => i.kind === 'memory')[index];
  if (!entry) return null;
  const value = lookup(imports, entry.module, entry.name);
  if (!(value instanceof WebAssembly.Memory)) return null;
  try {
    bufferOf(value); // brand check: a genuine memory, not an imitation
  } catch {
    return null;
  }
  return value;
}

/** An imported i32 global's value as u32, or null when it cannot be read as one. */
function globalValue(imports: unknown, where: { module: string; name: string } | undefined): number | null {
  if (!where) return null;
  let v = lookup(imports, where.module, where.name);
  if (v instanceof WebAssembly.Global) {
    try {
      v = v.value;
    } catch {
      return null;
    }
  }
  return typeof v === 'number' && Number.isFinite(v) ? v >>> 0 : null;
}

function lookup(imports: unknown, module: string, name: string): unknown {
  try {
    if ((typeof imports !== 'object' && typeof imports !== 'function') || imports === null) return undefined;
    const ns = Reflect.get(imports, module) as unknown;
    if ((typeof ns !== 'object' && typeof ns !== 'function') || ns === null) return undefined;
    return Reflect.get(ns, name);
  } catch {
    return undefined;
  }
}
