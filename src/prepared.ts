/**
 * A prepared module: analysed once, rewritten and compiled, instantiated
 * many times.
 */
import { parseModule, type ParsedModule } from './binary/reader.js';
import { type RewriteResult, rewriteModule } from './binary/rewriter.js';
import type { EngineCore } from './core.js';
import { InvalidArgumentError, WasmFormatError } from './errors.js';
import { type Attempt, ConditionalImages, type ImportReader } from './conditional.js';
import { dataValues, NOT_READ, pinImports } from './pin.js';
import { analyzeMemories, coveredPages, type ExclusionCode, type MemoryCondition, type MemoryPlan, movesMemories } from './image/analyze.js';
import { flattenPlan } from './image/flatten.js';
import { IndexSet } from './binary/data-table.js';
import type { MemoryImage } from './image/image.js';
import { analyzeStart, type StartAnalysis } from './image/start.js';
import { Lease, NO_POOLED_MEMORY } from './lease.js';
import { ALL_RAW, analyzeExposure, type ExposurePlan } from './exposure.js';
import { CheckStreak, estimateFresh, type FreshEstimate, FreshChoice, pagesCovered } from './policy.js';
import type { SlotRequest } from './pool.js';
import { type Slot, sizeKey } from './slot.js';
import { countFallback, type FallbackReason } from './stats.js';
import { wasm } from './wasm-api.js';
import { type SnapshotSource, snapshotBytes } from './snapshot/snapshot.js';
import { SnapshotError } from './snapshot/errors.js';
import { internalExports, isInternalName, readInternalState } from './reuse/internal.js';
import { readModuleInfo } from './reuse/module-info.js';
import { planReuse, type ReuseDecision, type ReuseReason } from './reuse/plan.js';
import { InstancePool } from './reuse/pool.js';

/** What happened to one of the module's memories. */
export interface MemoryInfo {
  /** Memory index in the module (imports first). */
  readonly index: number;
  /** Whether the module imports this memory. */
  readonly imported: boolean;
  readonly initialPages: number;
  readonly maximumPages: number | null;
  /** Where the image lies in linear memory; length 0 for an all-zero memory. Null when excluded. */
  readonly image: { readonly offset: number; readonly length: number } | null;
  /** Why the memory has no image (it then behaves exactly as native). Null when imaged. */
  readonly excluded: { readonly code: ExclusionCode; readonly message: string } | null;
  /**
   * Null when the image is fixed. 'position-independent': the image depends
   * on imported globals and is resolved at each instantiation; 'imported-untouched':
   * the image is mapped over the caller's pages that hold only zeros once V8
   * made the instance, and the data written on the others. `image` is then
   * the one the last instantiation used (null before the first, or when a
   * check failed or no page could take it, and the data was written as V8
   * writes it).
   */
  readonly condition: MemoryCondition | null;
}

/** Imports as `WebAssembly.Instance` takes them. */
export type Imports = WebAssembly.Imports;

/**
 * @internal What a PreparedModule is made from, before anything is
 * compiled: the parse, the plan per memory and the rewrite's bytes (null
 * when the module runs as is).
 */
export interface ModulePlan {
  readonly parsed: ParsedModule | null;
  readonly parseError: WasmFormatError | null;
  readonly plans: MemoryPlan[];
  /** What the start function does (image/start.ts); null when the module could not be read. */
  readonly start: StartAnalysis | null;
  readonly rewritten: RewriteResult | null;
  /** Names of the private exports the rewrite added (src/reuse/internal.ts), hidden from lease.exports; null for none. */
  readonly hidden: ReadonlySet<string> | null;
  /** Instance reuse (src/reuse/plan.ts): null when it was not asked for. */
  readonly reuse?: ReuseDecision | null;
  /**
   * The cost model's estimate for an instantiation in a new memory (see
   * PreparedModule.newMemory), for a rewrite that moves the memories the
   * module defines and has no image for a memory it imports; else null.
   * Also for images of defined memories resolved per instantiation (data
   * at a global's offset: conditional), for which PreparedModule.newMemory
   * is null: what a new memory saves and adds is the same.
   */
  readonly fresh: FreshPlan | null;
}

/** @internal A new memory's estimate (src/policy.ts) and the work it counts. */
export type FreshPlan = FreshEstimate & { readonly dataPages: number; readonly segments: number; readonly memoryPages: number };

/**
 * Whether an instantiation in a new memory, made for it alone, beats V8's
 * copy under the engine's policy: the estimate says so, or nativeWhenFaster
 * is off (the mechanism, whatever it costs). False where there is no
 * estimate (no memory the engine makes). The one decision behind
 * PreparedModule.newMemory's 'image' / 'adaptive', the drop-in's
 * preparations and the register hook's 'register-small-data'.
 */
export function newMemoryWins(core: EngineCore, plan: ModulePlan): boolean {
  return plan.fresh !== null && (plan.fresh.wins || !core.options.nativeWhenFaster);
}

/** The estimate of ModulePlan.fresh, from the memory plans (null where there is none: see there). */
function freshPlan(core: EngineCore, plans: readonly MemoryPlan[], rewritten: RewriteResult | null): FreshPlan | null {
  if (rewritten === null || rewritten.memoryModule === null || plans.some((p) => p.imported && p.condition !== null && p.excluded === null)) return null;
  // What V8 would copy into the memories we supply (imaged segments; an
  // excluded memory's segments are copied by V8 either way).
  const imaged: MemoryPlan[] = [];
  let segments = 0;
  let memoryPages = 0;
  for (const p of plans) {
    if (p.imported) continue;
    memoryPages += p.type.min; // every memory the engine makes, imaged or not
    if (p.excluded) continue;
    segments += p.segmentIndices.length;
    imaged.push(p);
  }
  // From the segments' columns (a Go module has 100,000 segments), else from their objects.
  const pages =
    coveredPages(imaged, core.backend.pageSize) ??
    pagesCovered(imaged.flatMap((p) => p.segments.map((seg) => ({ offset: seg.offset, length: seg.dataEnd - seg.dataStart }))), core.backend.pageSize);
  const work = { pages, segments, memoryPages };
  return { ...estimateFresh(work, core.backend.kind === 'native'), dataPages: work.pages, segments, memoryPages };
}

/** Whether instances of a prepared module are reused (engine.prepare(bytes, { reuse: true })). */
export interface ReuseInfo {
  readonly enabled: boolean;
  /** Why not, when not enabled: 'not-requested' or a ReuseReason decided at prepare. */
  readonly reason: ReuseReason | 'not-requested' | null;
  /** A sentence saying why, or null. */
  readonly detail: string | null;
}

/** @internal See the PreparedModule constructor. */
export interface PrepareHints {
  /** planModule(core, input), made beforehand. */
  readonly plan?: ModulePlan;
  /** The rewrite compiled beforehand (for example asynchronously), from plan.rewritten.bytes. */
  readonly compiled?: { readonly bytes: Uint8Array; readonly module: WebAssembly.Module };
  /** Reuse instances (engine.prepare(bytes, { reuse: true })). */
  readonly reuse?: boolean;
  /** V8 has compiled `input` itself: do not validate it again. */
  readonly originalValid?: boolean;
  /** `input` compiled by V8 (valid, and used where the module runs as V8 would, with no second compile). */
  readonly original?: WebAssembly.Module;
  /** Keep what snapshot() needs (PrepareOptions.snapshots); for a snapshot's module, its root module. */
  readonly snapshots?: boolean | SnapshotSource;
}

/**
 * @internal Parses and analyses a module and makes its rewrite; compiles
 * nothing. `privateState`: the rewrite also exports every defined mutable
 * global and table under private names (src/reuse/internal.ts), so that
 * the engine can read them (snapshots). `reuse`: plan instance reuse
 * (src/reuse/plan.ts); an eligible module's rewrite exports what a reset
 * restores (a superset of the private state).
 */
export function planModule(core: EngineCore, input: Uint8Array<ArrayBuffer>, privateState = false, reuse = false): ModulePlan {
  let parsed: ParsedModule | null = null;
  let parseError: WasmFormatError | null = null;
  try {
    parsed = parseModule(input);
  } catch (e) {
    if (!(e instanceof WasmFormatError)) throw e;
    parseError = e;
  }
  if (parsed === null) {
    return { parsed, parseError, plans: [], start: null, rewritten: null, hidden: null, reuse: reuse ? { enabled: false, reason: 'unparsed', detail: parseError!.message } : null, fresh: null };
  }
  const start = analyzeStart(input, parsed);
  const plans = analyzeMemories(parsed, {
    sizeLimit: core.options.imageSizeLimit,
    pageSize: core.backend.pageSize,
    mapImported: core.backend.classifyPages !== undefined && core.backend.mapImageRange !== undefined,
    opaqueStart: start.kind === 'opaque' ? start.why : null,
  }).map((p) => (core.options.nativeWhenFaster ? (smallImportedData(p, core.backend.pageSize) ?? p) : p));
  const importMemories = movesMemories(parsed);
  const convert = new IndexSet(parsed.dataTable.length);
  for (const p of plans) if (!p.excluded) convert.addAll(p.segmentIndices);
  const hiddenOf = (extra: readonly { readonly name: string }[]) => (extra.length > 0 ? new Set(extra.map((e) => e.name)) : null);
  let decision: ReuseDecision | null = null;
  if (reuse) {
    // Instance reuse: the rewrite also exports the state to restore and drops the start section (src/reuse/).
    decision = planReuse(input, parsed, plans, analyzeExposure(input, parsed), importMemories || parsed.memories.length === 0);
    if (decision.enabled) {
      const { extraExports, dropStart, append } = decision.plan;
      const options = { importMemories, convert, extraExports, dropStart, ...(append !== null ? { append } : {}) };
      const rewritten = rewriteModule(input, parsed, options);
      return { parsed, parseError, plans, start, rewritten, hidden: hiddenOf(extraExports), reuse: decision, fresh: freshPlan(core, plans, rewritten) };
    }
  }
  // A module that already exports a name with the engine's private prefix gets no private exports (they could clash, or be
  // mistaken for the module's own); snapshots then refuse ('reserved-name').
  const reserved = parsed.exports.some((e) => isInternalName(e.name));
  const info = privateState && !reserved ? readModuleInfo(input, parsed) : null;
  const extraExports = info === null ? [] : internalExports(parsed, info, false);
  const rewritten =
    importMemories || convert.size > 0 || extraExports.length > 0 ? rewriteModule(input, parsed, { importMemories, convert, extraExports }) : null;
  return { parsed, parseError, plans, start, rewritten, hidden: hiddenOf(extraExports), reuse: decision, fresh: freshPlan(core, plans, rewritten) };
}

/**
 * What an instantiation that finds no idle memory to reuse does (see
 * PreparedModule.newMemory and src/policy.ts).
 */
export interface NewMemoryPolicy {
  /**
   * 'image': it makes a memory and maps the image, which beats V8's copy
   * even if the memory is never reused. 'adaptive': the module's data is too
   * small for that, so it makes one only while the module's memories come
   * back to the pool (to be reused); otherwise it runs as V8 would, counted
   * in `stats().nativeInstantiations['small-data']`.
   */
  readonly mode: 'image' | 'adaptive';
  /** The cost model's estimate: what mapping saves (V8's copy) and what making the memory adds, µs. */
  readonly savedUs: number;
  readonly addedUs: number;
  /** Pages of data V8 would write into a new memory, and segments it would apply. */
  readonly dataPages: number;
  readonly segments: number;
  /** Initial size, in 64 KiB pages, of the memories the engine would make (the cost model counts it). */
  readonly memoryPages: number;
}

export class PreparedModule {
  /** The compiled module V8 instantiates (the rewrite, or the original when nothing was rewritten). */
  readonly module: WebAssembly.Module;
  /** Size in bytes of the module V8 compiled (after the rewrite). */
  readonly compiledSize: number;
  readonly #core: EngineCore;
  readonly #plans: MemoryPlan[];
  /** Module name our memory imports come from, or null when memories stay defined. */
  readonly #memoryModule: string | null;
  readonly #userImports: number;
  /** The input bytes, kept until the images are built. */
  #source: Uint8Array | null;
  /** One entry per defined memory that we supply: its image, or null for zero. */
  #requests: SlotRequest[] | null = null;
  #images: MemoryImage[] = [];
  #disposed = false;
  /** Why the module could not be read (it then runs as is), or null. */
  #unparsed: string | null = null;
  /** What an instance can hand out beyond the lease's revocable wrappers (exposure.ts). */
  readonly #exposure: ExposurePlan = ALL_RAW;
  /** The module names of the caller's imports, each once, in order. */
  #importModules: readonly string[] = [];
  /** Each import as (index in #importModules, name), each once. */
  #importNames: readonly (readonly [number, string])[] = [];
  /** Every import in declaration order, with the index of its module name in #importModules. */
  #importList: readonly { readonly module: string; readonly name: string; readonly m: number }[] = [];
  /** The import object last made for a (single-memory) slot, by slot. */
  readonly #ioCache = new WeakMap<Slot, IoCacheEntry>();
  /** Images resolved at each instantiation, or null when there are none. */
  #conditional: ConditionalImages | null = null;
  /** Without conditional images, every instantiation's attempt: made once. */
  #fixed: Attempt | null = null;
  /** The attempt #begin resolved last. */
  #attempt: Attempt | null = null;
  /** Fallbacks every instantiation takes (imported memories the engine can never image here), counted each time. */
  #fallbacks: FallbackReason[] = [];
  /** Whether `module` was compiled from the rewrite. */
  #fromRewrite = false;

  /** The cost model's estimate for a new memory; null when the engine supplies no memory. */
  #fresh: FreshPlan | null = null;
  /** For a module whose new-memory path loses to V8: when to make a memory (null: always). */
  #choice: FreshChoice | null = null;
  /** One-shot instantiations so far (instantiateUnpooled*): from the second on, each asks for a spare memory for the next. */
  #oneShots = 0;
  /** The original module, for instantiations run as V8 would and a conditional image's fallback that is the original as is (compiled at first need from #input). */
  #original: WebAssembly.Module | null = null;
  #input: Uint8Array<ArrayBuffer> | null = null;
  /** With conditional images: whether to skip their check, and the attempt used then (V8 applies the segments). */
  #streak: CheckStreak | null = null;
  #skipAttempt: Attempt | null = null;
  /**
   * Whether instantiating runs code (a start function). When it fails, the
   * error can carry the raw instance (CallSite.getThis() of a wasm frame),
   * so its memories are never reused.
   */
  #startRuns = true;
  /** What snapshot() rewrites (the original module), or null when snapshots were not asked for. */
  #snapshotSource: SnapshotSource | null = null;
  /** The private exports of the compiled rewrite, hidden from lease.exports; null for none. */
  #hidden: ReadonlySet<string> | null = null;
  /** Instance reuse: the pool, when enabled. */
  #reusePool: InstancePool | null = null;
  #reuseInfo: ReuseInfo = { enabled: false, reason: 'not-requested', detail: null };


  /**
   * @internal Use engine.prepare(). `hints` lets an internal caller (the
   * register hook) supply the plan and the compiled rewrite it made
   * beforehand, and say that V8 already compiled `input` itself.
   */
  constructor(core: EngineCore, input: Uint8Array<ArrayBuffer>, hints: PrepareHints = {}) {
    this.#core = core;
    const plan = hints.plan ?? planModule(core, input, hints.snapshots !== undefined && hints.snapshots !== false, hints.reuse === true);
    const { parsed, parseError, plans, start, rewritten, hidden } = plan;
    if (plan.reuse) this.#reuseInfo = plan.reuse.enabled ? { enabled: true, reason: null, detail: null } : { enabled: false, reason: plan.reuse.reason, detail: plan.reuse.detail };

    if (parsed === null) {
      // We could not read it. If V8 cannot either, say where it is malformed;
      // if V8 can, run it exactly as native.
      this.module = compileOriginalOr(input, parseError!);
      this.#plans = [];
      this.#memoryModule = null;
      this.#userImports = WebAssembly.Module.imports(this.module).length;
      this.#source = null;
      this.#requests = [];
      this.compiledSize = input.length;
      this.#unparsed = parseError!.message;
      return;
    }

    this.#exposure = analyzeExposure(input, parsed);
    this.#startRuns = parsed.start !== null;
    if (hints.snapshots) this.#snapshotSource = hints.snapshots === true ? { bytes: input, parsed } : hints.snapshots;
    const modules = [...new Set(parsed.imports.map((i) => i.module))];
    const names = new Map<string, readonly [number, string]>();
    for (const i of parsed.imports) names.set(`${i.module}\0${i.name}`, [modules.indexOf(i.module), i.name]);
    this.#importModules = modules;
    this.#importNames = [...names.values()];
    this.#importList = parsed.imports.map((i) => ({ module: i.module, name: i.name, m: modules.indexOf(i.module) }));
    let module: WebAssembly.Module | null = null;
    let memoryModule: string | null = null;
    let size = input.length;
    if (rewritten !== null) {
      const given = hints.compiled;
      if (given && given.bytes === rewritten.bytes) {
        module = given.module;
      } else {
        try {
          module = new wasm.Module(rewritten.bytes);
        } catch {
          module = null;
        }
      }
      if (module !== null) {
        memoryModule = rewritten.memoryModule;
        size = rewritten.bytes.length;
        this.#fromRewrite = true;
        this.#hidden = hidden;
      }
      // The rewrite must not change what validates: check the original too.
      if (module !== null && !hints.originalValid && hints.original === undefined && !wasm.validate(input)) module = null;
      if (module === null) {
        // Either the original is invalid (compiling it throws V8's own
        // error) or our rewrite is at fault: then run the original as is.
        module = hints.original ?? new wasm.Module(input);
        memoryModule = null;
        size = input.length;
        this.#fromRewrite = false;
        this.#hidden = null;
        this.#plans = plans.map((p) =>
          p.imported
            ? p
            : { ...p, excluded: { code: 'rewrite-rejected', message: 'V8 rejected the rewritten module; the original runs as is' } },
        );
      } else {
        this.#plans = plans;
      }
    } else {
      module = hints.original ?? new wasm.Module(input);
      this.#plans = plans;
    }
    this.module = module;
    this.compiledSize = size;
    this.#memoryModule = memoryModule;
    this.#userImports = parsed.imports.length;
    this.#source = memoryModule !== null ? input : null;
    if (memoryModule === null) this.#requests = [];
    if (this.#plans.some((p) => p.condition !== null && p.excluded === null)) {
      // The fallback form, where it is the original as is: #nativeModule() (the given one, or compiled at first need).
      this.#original = hints.original ?? null;
      if (this.#original === null) this.#input = input;
      this.#conditional = new ConditionalImages(core, input, parsed, this.#plans, start!, () => this.#nativeModule());
      if (core.options.nativeWhenFaster) this.#streak = new CheckStreak();
    }
    if (memoryModule !== null && this.#conditional === null && plan.fresh !== null) {
      this.#fresh = plan.fresh;
      if (!newMemoryWins(core, plan)) {
        this.#choice = new FreshChoice();
        this.#original = hints.original ?? null;
        if (this.#original === null) this.#input = input;
      }
    }
    for (const p of this.#plans) if (p.excluded && p.fallback) this.#fallbacks.push(p.fallback);
    if (plan.reuse?.enabled) this.#startReuse(plan.reuse.plan);
  }

  /** Sets up the instance pool (the rewrite compiled), or records why not. */
  #startReuse(plan: Extract<ReuseDecision, { enabled: true }>['plan']): void {
    if (!this.#fromRewrite) {
      this.#reuseInfo = { enabled: false, reason: 'rewrite-rejected', detail: 'V8 rejected the rewritten module' };
      return;
    }
    this.#choice = null; // a reused instance beats any new one
    const list = this.#importList;
    this.#reusePool = new InstancePool(
      {
        core: this.#core,
        module: this.module,
        exposure: this.#exposure,
        importList: list,
        memoryModule: this.#memoryModule,
        checkUsable: () => this.#checkUsable(),
        requests: () => this.#ensureImages(),
        importObject: (given, slots, pinned) => this.#importObject(given, slots, pinned),
      },
      plan,
    );
    this.#core.onClose.add(new WeakRef(this.#reusePool));
  }

  /** Reuse was asked for and the module is not eligible: counted per instantiation. */
  #countDeclined(): void {
    const reason = this.#reuseInfo.reason as ReuseReason;
    const d = this.#core.counters.reuseDeclined;
    d[reason] = (d[reason] ?? 0) + 1;
  }

  /**
   * Instance reuse (src/reuse/pool.ts): `{ enabled: true }` when released
   * leases' instances are reset and reused; otherwise why not.
   */
  get reuse(): ReuseInfo {
    return this.#reuseInfo;
  }

  /**
   * A prepared module whose instances start in the state `lease` reached:
   * its memories (contents and current size, as a new sealed image), its
   * mutable globals and its tables, with the start function's effects
   * included (it is not run again). Instantiating it costs what any image
   * costs. The module must be prepared with `{ snapshots: true }`; throws
   * SnapshotError (with a `reason`) where the state cannot be captured
   * exactly. See docs/api.md, "Snapshots".
   */
  snapshot(lease: Lease): PreparedModule {
    this.#core.checkOpen('snapshot()');
    if (this.#disposed) throw new InvalidArgumentError('this PreparedModule was disposed; snapshot a lease before disposing of its module');
    const source = this.#snapshotSource;
    if (source === null) {
      throw new SnapshotError(
        this.#unparsed !== null ? 'unparsed' : 'not-enabled',
        this.#unparsed !== null
          ? `the module could not be read (${this.#unparsed}); it runs as is.`
          : 'the module was not prepared with { snapshots: true }. Prepare it with engine.prepare(bytes, { snapshots: true }).',
      );
    }
    const bytes = snapshotBytes(source, lease, this.#exposure, this.#core.backend.pageSize);
    let snap: PreparedModule;
    try {
      snap = new PreparedModule(this.#core, bytes, { snapshots: source });
    } catch (e) {
      throw new SnapshotError('rewrite-rejected', `V8 rejected the snapshot's module (${(e as Error).message}). This is a wasm-cow bug; please report it.`, { cause: e });
    }
    void snap.memories; // build the images now: the bytes are let go
    return snap;
  }

  /** @internal Whether `module` is the rewrite (some memory imaged or moved), not the original as is. */
  get rewritten(): boolean {
    return this.#fromRewrite;
  }

  /**
   * Each memory of the module: its image or why it has none. Reading this
   * builds the images if no instantiation has yet.
   */
  get memories(): MemoryInfo[] {
    const requests = this.#ensureImages();
    let defined = 0;
    return this.#plans.map((p) => {
      const base = {
        index: p.index,
        imported: p.imported,
        initialPages: p.type.min,
        maximumPages: p.type.max,
      };
      const req = !p.imported && this.#memoryModule !== null ? requests[defined++] : undefined;
      if (p.excluded) return { ...base, image: null, excluded: { ...p.excluded }, condition: null };
      if (p.condition !== null) {
        const last = this.#conditional?.lastImage.get(p.index);
        const image = last === undefined ? null : last ? { offset: last.offset, length: last.length } : { offset: 0, length: 0 };
        return { ...base, image, excluded: null, condition: p.condition };
      }
      const img = req?.image ?? null;
      return {
        ...base,
        image: img ? { offset: img.offset, length: img.length } : { offset: 0, length: 0 },
        excluded: null,
        condition: null,
      };
    });
  }

  /** The module's imports, as WebAssembly.Module.imports would list them for the original. */
  get imports(): WebAssembly.ModuleImportDescriptor[] {
    const all = WebAssembly.Module.imports(this.module);
    return this.#memoryModule === null ? all : all.filter((d) => d.module !== this.#memoryModule);
  }

  get exports(): WebAssembly.ModuleExportDescriptor[] {
    const all = WebAssembly.Module.exports(this.module);
    return this.#hidden === null ? all : all.filter((d) => !isInternalName(d.name));
  }

  /** Why the module could not be read (it then runs as is), or null. */
  get unparsedReason(): string | null {
    return this.#unparsed;
  }

  /**
   * What an instantiation that finds no idle memory to reuse does; null
   * when the engine supplies no memory to this module (its memories are
   * imported, it is not rewritten, or its images are resolved per
   * instantiation).
   */
  get newMemory(): NewMemoryPolicy | null {
    const f = this.#fresh;
    if (f === null) return null;
    return { mode: this.#choice === null ? 'image' : 'adaptive', savedUs: f.savedUs, addedUs: f.addedUs, dataPages: f.dataPages, segments: f.segments, memoryPages: f.memoryPages };
  }

  /**
   * Instantiates synchronously on pooled memories. Errors are those of
   * `new WebAssembly.Instance` (LinkError, RuntimeError, ...) plus
   * PoolExhaustedError and EngineClosedError.
   */
  instantiate<T extends WebAssembly.Exports = WebAssembly.Exports>(imports?: Imports): Lease<T> {
    if (this.#reusePool !== null) return this.#reusePool.instantiate<T>(imports);
    if (this.#reuseInfo.reason !== 'not-requested') this.#countDeclined();
    const slots = this.#begin(imports, true);
    if (slots === null) {
      try {
        return this.#finishNative<T>(new wasm.Instance(this.#nativeModule(), imports));
      } catch (e) {
        this.#core.unreserve();
        throw e;
      }
    }
    const attempt = this.#attempt!;
    try {
      const instance = new wasm.Instance(attempt.module, this.#importObject(imports, slots, attempt.pinned));
      // Nothing ran since V8 returned: place the images into imported memories now.
      if (attempt.deferred.length > 0) this.#conditional!.complete(attempt);
      return this.#finish<T>(instance, slots, attempt);
    } catch (e) {
      throw this.#fail(slots, e);
    }
  }

  /** As instantiate(), through `WebAssembly.instantiate` (asynchronous). */
  async instantiateAsync<T extends WebAssembly.Exports = WebAssembly.Exports>(imports?: Imports): Promise<Lease<T>> {
    // With reuse: synchronous (the start function, if any, runs before this returns its promise).
    if (this.#reusePool !== null) return this.#reusePool.instantiate<T>(imports);
    if (this.#reuseInfo.reason !== 'not-requested') this.#countDeclined();
    const slots = this.#begin(imports, false);
    if (slots === null) {
      try {
        return this.#finishNative<T>(await wasm.instantiate(this.#nativeModule(), imports));
      } catch (e) {
        this.#core.unreserve();
        throw e;
      }
    }
    const attempt = this.#attempt!;
    try {
      // Asynchronous: imported memories were left to V8 (attempt.deferred is empty).
      return this.#finish<T>(await wasm.instantiate(attempt.module, this.#importObject(imports, slots, attempt.pinned)), slots, attempt);
    } catch (e) {
      throw this.#fail(slots, e);
    }
  }

  /**
   * Takes an instance slot and the memories, resolving conditional images
   * (undoing all of it on failure). The attempt is left in #attempt, to be
   * read before anything else can run. Null (the instance slot taken) when
   * the instantiation is to run as V8 would: no idle memory, and the policy
   * says not to make one (never with conditional images).
   */
  #begin(imports: unknown, sync: boolean): Slot[] | null {
    // As few calls as can be: on the paths with no pooled memory this runs
    // between two of V8's instantiations, with little of it in the CPU caches.
    const core = this.#core;
    if (core.closed || this.#disposed) this.#checkUsable();
    core.reserve();
    try {
      const fixed = this.#fixed;
      const attempt = (this.#attempt = fixed !== null && this.#fallbacks.length === 0 ? fixed : this.#resolve(imports, sync));
      const choice = this.#choice;
      let slots: Slot[] | null;
      if (choice === null) {
        slots = attempt.requests.length === 0 ? NO_POOLED_MEMORY : core.acquire(attempt.requests)!;
      } else {
        const create = choice.mayCreate();
        // No idle or resetting memory at all: acquire() could only make one.
        slots = create || core.pool.idle > 0 ? core.acquire(attempt.requests, create) : null;
      }
      if (slots === null) return null;
      if (choice !== null) for (const slot of slots) if (slot.uses === 1) choice.made(slot);
      // Its imports may pass the instance's functions out, during
      // instantiation already: nothing of it may be reused, even if it fails.
      if (this.#exposure.atInstantiation) for (let i = 0; i < slots.length; i++) slots[i]!.exposed = true;
      return slots;
    } catch (e) {
      this.#core.unreserve();
      throw e;
    }
  }

  /** The compiled form and memories for one instantiation. */
  #resolve(imports: unknown, sync: boolean): Attempt {
    const requests = this.#ensureImages();
    if (this.#conditional === null) {
      if (this.#fallbacks.length > 0) for (const r of this.#fallbacks) countFallback(this.#core.counters, r);
      return (this.#fixed ??= { module: this.module, requests, deferred: [] });
    }
    const streak = this.#streak;
    if (streak !== null && this.#skipAttempt !== null && streak.skip()) return this.#skipAttempt;
    if (this.#fallbacks.length > 0) for (const r of this.#fallbacks) countFallback(this.#core.counters, r);
    const { read, pinned } = this.#readImports(imports);
    const attempt = this.#conditional.resolve(read, this.module, requests, sync);
    if (streak !== null) {
      // The primary form is used only when every check passed.
      const used = attempt.module === this.module;
      streak.checked(used);
      if (!used) this.#skipAttempt = { ...attempt, deferred: [], pinned: null };
    }
    return pinned === null ? attempt : { ...attempt, pinned };
  }

  /**
   * How the conditional images read the caller's imports (once: src/pin.ts).
   * When no Get on the way can run caller code (dataValues), the values are
   * read directly (unobservable, and nothing can change them before V8
   * reads them: no caller code runs in between), and V8 gets the import
   * object #importObject makes. Otherwise each import is read once, in V8's
   * order, and V8 gets the pinned object holding exactly what was read.
   */
  #readImports(imports: unknown): { read: ImportReader; pinned: Record<string, unknown> | null } {
    if (!((typeof imports === 'object' && imports !== null) || typeof imports === 'function')) {
      return { read: () => NOT_READ, pinned: null }; // V8 throws its TypeError before reading anything
    }
    const list = this.#importList;
    const modules = dataValues(imports, this.#importModules, this.#importNames);
    if (modules !== null) {
      const read = (i: number): unknown => {
        const imp = list[i];
        const ns = imp === undefined ? undefined : modules[imp.m];
        if (!((typeof ns === 'object' && ns !== null) || typeof ns === 'function')) return NOT_READ;
        try {
          return Reflect.get(ns, imp!.name);
        } catch {
          return NOT_READ;
        }
      };
      return { read, pinned: null };
    }
    const pin = pinImports(imports, list);
    return { read: (i) => pin.values[i], pinned: pin.object };
  }

  #finish<T extends WebAssembly.Exports>(instance: WebAssembly.Instance, slots: Slot[], attempt?: Attempt): Lease<T> {
    this.#core.counters.instantiations++;
    if (attempt !== undefined && attempt === this.#skipAttempt) this.#core.counters.nativeInstantiations['unusable-image']++;
    return new Lease<T>(this.#core, instance, slots, this.#exposure, this.#hidden);
  }

  /** An instance made as V8 would make it: a lease with no pooled memory. */
  #finishNative<T extends WebAssembly.Exports>(instance: WebAssembly.Instance): Lease<T> {
    // #finish, inlined: this path runs right after V8 instantiated a module,
    // when little of the engine's state is in the CPU caches (each call counts).
    const counters = this.#core.counters;
    counters.nativeInstantiations['small-data']++;
    counters.instantiations++;
    return new Lease<T>(this.#core, instance, NO_POOLED_MEMORY, this.#exposure, this.#hidden);
  }

  /**
   * A one-shot instance of the original, made as V8 would make it: with
   * #choice, a memory made for one instance is never reused, and V8 does
   * better (PreparedModule.newMemory 'adaptive').
   */
  #countedAsV8(instance: WebAssembly.Instance): WebAssembly.Instance {
    this.#core.counters.instantiations++;
    this.#core.counters.nativeInstantiations['small-data']++;
    return instance;
  }

  /** The original module, compiled at first need (it validated at prepare). */
  #nativeModule(): WebAssembly.Module {
    if (this.#original === null) {
      this.#original = new wasm.Module(this.#input!);
      this.#input = null;
    }
    return this.#original;
  }

  /** Instantiation failed: the memories go back (reset), the slot is freed. Nothing was placed into imported memories. */
  #fail(slots: Slot[], error: unknown): unknown {
    // The start function may have run: what it left can reach the error's holder.
    if (this.#startRuns) for (const s of slots) s.exposed = true;
    this.#core.releaseSlots(slots);
    this.#core.unreserve();
    return error;
  }

  /**
   * @internal As instantiateUnpooled(), synchronously, through
   * `Reflect.construct(WebAssembly.Instance, ..., newTarget)` (for the
   * register hook's `new WebAssembly.Instance`, which may be subclassed).
   * Imported memories may get their image mapped, as in instantiate().
   */
  instantiateUnpooledSync(imports: Imports | undefined, construct: (module: WebAssembly.Module, imports: Imports | undefined) => WebAssembly.Instance): WebAssembly.Instance {
    this.#checkUsable();
    if (this.#choice !== null) return this.#countedAsV8(construct(this.#nativeModule(), imports));
    const attempt = this.#resolve(imports, true);
    const slots = this.#core.fresh(attempt.requests, ++this.#oneShots > 1);
    const instance = construct(attempt.module, this.#importObject(imports, slots, attempt.pinned));
    // Nothing ran since V8 returned: place the images into imported memories now.
    if (attempt.deferred.length > 0) this.#conditional!.complete(attempt);
    if (this.#reusePool !== null) readInternalState(instance).start?.(); // the reuse rewrite has no start section
    this.#core.counters.instantiations++;
    return instance;
  }

  /**
   * @internal One-shot instantiation on fresh, unpooled memories (for the
   * drop-in `instantiate()`): the memories live and die with the instance.
   */
  async instantiateUnpooled(
    imports?: Imports,
    instantiate: (module: WebAssembly.Module, imports: Imports | undefined) => Promise<WebAssembly.Instance> = wasm.instantiate,
  ): Promise<WebAssembly.Instance> {
    this.#checkUsable();
    if (this.#choice !== null) return this.#countedAsV8(await instantiate(this.#nativeModule(), imports));
    // Asynchronous: imported memories are left to V8 (attempt.deferred is empty).
    const attempt = this.#resolve(imports, false);
    const slots = this.#core.fresh(attempt.requests, ++this.#oneShots > 1);
    const instance = await instantiate(attempt.module, this.#importObject(imports, slots, attempt.pinned));
    if (this.#reusePool !== null) readInternalState(instance).start?.(); // the reuse rewrite has no start section
    this.#core.counters.instantiations++;
    return instance;
  }

  /**
   * Closes the module's images. Live leases keep working; idle memories
   * holding an image are cleared. Further instantiation throws.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const image of this.#images) this.#core.disposeImage(image);
    this.#images = [];
    this.#source = null;
    this.#input = null;
    this.#original = null;
    this.#snapshotSource = null;
    this.#conditional?.dispose();
    this.#reusePool?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #checkUsable(): void {
    this.#core.checkOpen('instantiate()');
    if (this.#disposed) {
      throw new InvalidArgumentError('this PreparedModule was disposed; prepare the module again to instantiate it');
    }
  }

  /** Builds the images on first use; returns the slot requests. */
  #ensureImages(): SlotRequest[] {
    if (this.#requests) return this.#requests;
    const source = this.#source;
    if (source === null) throw new Error('wasm-cow internal error: images requested without a source');
    const backend = this.#core.backend;
    const requests: SlotRequest[] = [];
    const built: MemoryImage[] = [];
    for (const p of this.#plans) {
      if (p.imported) continue;
      let image: MemoryImage | null = null;
      // Conditional images are resolved per instantiation (conditional.ts).
      if (!p.excluded && p.condition === null) {
        const flat = flattenPlan(source, p, backend.pageSize);
        if (flat.length > 0) {
          const made = backend.createImage(flat);
          image = made.image;
          built.push(image);
          this.#core.trackImage(image);
          this.#core.counters.imagesBuilt++;
          if (made.fallback) {
            this.#core.counters.imageFallbacks++;
            countFallback(this.#core.counters, 'memfd');
          }
        }
      }
      const size = { initialPages: p.type.min, maximumPages: p.type.max };
      requests.push({ ...size, key: sizeKey(size), image });
    }
    this.#images = built;
    this.#requests = requests;
    this.#source = null;
    return requests;
  }

  /**
   * The import object V8 gets: the caller's imports plus our memories, under
   * a module name of our own. Caller code never sees our objects, and V8
   * performs on the caller's objects exactly the [[Get]]s it performs
   * natively (Get(imports, module) then Get(moduleObject, name), per import,
   * in order):
   *  - when none of those Gets can run caller code (no Proxy on the
   *    prototype chains of `imports` and of its module objects, no getter
   *    where a module name or an import name is found), nothing can change
   *    between them either: we read the module objects and give V8 an
   *    object of our own holding them (V8's Gets on the module objects are
   *    on the caller's own, as natively). The check is one
   *    __lookupGetter__ per import name: about 20 ns each, nothing
   *    allocated;
   *  - otherwise a Proxy of our own forwards each Get to `imports` with
   *    `imports` itself as the receiver, as natively, so a caller's trap or
   *    getter is called exactly as natively and never sees our object.
   */
  #importObject(imports: Imports | undefined, slots: readonly Slot[], pinned?: Record<string, unknown> | null): Imports | undefined {
    if (pinned) {
      // The imports as read once (#readImports): V8 reads exactly those values, plus our memories.
      if (this.#memoryModule !== null) {
        const ns = Object.create(null) as Record<string, WebAssembly.Memory>;
        for (let i = 0; i < slots.length; i++) ns[i] = slots[i]!.memory;
        Object.defineProperty(pinned, this.#memoryModule, { value: ns, enumerable: true, configurable: true, writable: true });
      }
      return pinned as Imports;
    }
    if (this.#memoryModule === null) return imports;
    const isObject = (typeof imports === 'object' && imports !== null) || typeof imports === 'function';
    if (!isObject && (imports !== undefined || this.#userImports > 0)) {
      // Let V8 throw exactly the TypeError it throws natively.
      return imports;
    }
    const memoryModule = this.#memoryModule;
    // One memory: the import object made last time with this slot is
    // reused when it is still right (same imports, same module objects).
    const only = slots.length === 1 ? slots[0]! : null;
    const cached = only ? this.#ioCache.get(only) : undefined;
    const names = this.#importModules;
    const values = isObject ? dataValues(imports as object, names, this.#importNames) : [];
    if (cached && cached.imports === imports && (values === null ? cached.values === null : sameValues(cached.values, values))) {
      return cached.io;
    }
    let ns: Record<string, WebAssembly.Memory>;
    if (cached) {
      ns = cached.ns;
    } else {
      ns = Object.create(null) as Record<string, WebAssembly.Memory>;
      for (let i = 0; i < slots.length; i++) ns[i] = slots[i]!.memory;
    }
    let io: Imports;
    if (values === null) {
      const target = imports as object;
      io = new Proxy(Object.create(null) as Imports, {
        get: (_t, key) => (key === memoryModule ? ns : Reflect.get(target, key, target)),
      });
    } else {
      const entries: [string, unknown][] = names.map((n, i) => [n, values[i]]);
      entries.push([memoryModule, ns]);
      io = Object.fromEntries(entries) as Imports;
    }
    if (only) this.#ioCache.set(only, { imports, values, ns, io });
    return io;
  }
}

interface IoCacheEntry {
  readonly imports: Imports | undefined;
  /** The module objects read from `imports`, or null when it is read through a Proxy. */
  readonly values: readonly unknown[] | null;
  readonly ns: Record<string, WebAssembly.Memory>;
  readonly io: Imports;
}

/** The built-ins V8 instantiates with, as they were when this module loaded. */
const Instance = wasm.Instance;
const instantiateModule = wasm.instantiate as (module: WebAssembly.Module, imports?: Imports) => Promise<WebAssembly.Instance>;

function sameValues(a: readonly unknown[] | null, b: readonly unknown[]): boolean {
  if (a === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * An imported memory whose data is too small for mapping it to beat V8's
 * copy (the check of the caller's memory and the mapping cost about as much
 * as a new memory does; src/policy.ts): the plan left to V8, excluded with
 * the reason. Null when the plan stays as it is.
 */
function smallImportedData(plan: MemoryPlan, pageSize: number): MemoryPlan | null {
  if (!plan.imported || plan.excluded !== null || plan.condition !== 'imported-untouched') return null;
  // Offsets from imported globals are known only at instantiation: count each segment's own pages.
  const ranges = plan.segments.map((s) => ({
    offset: s.global == null ? s.offset : 0,
    length: s.dataEnd - s.dataStart,
    own: s.global != null,
  }));
  const pages =
    pagesCovered(ranges.filter((r) => !r.own), pageSize) +
    ranges.filter((r) => r.own).reduce((n, r) => n + Math.ceil(r.length / pageSize), 0);
  const estimate = estimateFresh({ pages, segments: plan.segments.length }, true, true);
  if (estimate.wins) return null;
  return {
    ...plan,
    segments: [],
    segmentIndices: [],
    condition: null,
    excluded: {
      code: 'imported',
      message:
        `the memory is imported and its data (${pages} page${pages === 1 ? '' : 's'}) is too small for mapping it to beat ` +
        `V8's copy (about ${estimate.savedUs.toFixed(1)} µs saved against ${estimate.addedUs.toFixed(1)} µs added); V8 applies its segments`,
    },
  };
}

function compileOriginalOr(input: Uint8Array<ArrayBuffer>, parseError: WasmFormatError): WebAssembly.Module {
  let module: WebAssembly.Module;
  try {
    module = new wasm.Module(input);
  } catch (e) {
    throw new WasmFormatError(parseError.message.replace(/ at byte offset \d+$/, ''), parseError.offset, { cause: e });
  }
  return module;
}

/** Copies caller bytes (they may change after prepare returns). */
export function toBytes(source: unknown): Uint8Array<ArrayBuffer> {
  if (source instanceof ArrayBuffer) return new Uint8Array(source.slice(0));
  if (ArrayBuffer.isView(source)) {
    return new Uint8Array(source.buffer as ArrayBuffer, source.byteOffset, source.byteLength).slice();
  }
  throw new InvalidArgumentError('module bytes must be a Uint8Array, another ArrayBufferView or an ArrayBuffer');
}
