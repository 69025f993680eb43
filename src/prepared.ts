/**
 * A prepared module: analysed once, rewritten and compiled, instantiated
 * many times.
 */
import { parseModule, type ParsedModule } from './binary/reader.js';
import { type RewriteResult, rewriteModule } from './binary/rewriter.js';
import type { EngineCore } from './core.js';
import { InvalidArgumentError, WasmFormatError } from './errors.js';
import { type Attempt, ConditionalImages } from './conditional.js';
import { analyzeMemories, type ExclusionCode, type MemoryCondition, type MemoryPlan, rewritableMemories } from './image/analyze.js';
import { flattenImage } from './image/flatten.js';
import type { MemoryImage } from './image/image.js';
import { Lease } from './lease.js';
import type { SlotRequest } from './pool.js';
import { type Slot, sizeKey } from './slot.js';
import { wasm } from './wasm-api.js';

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
   * the image is mapped into the caller's memory when that range of it is
   * untouched. `image` is then the one the last instantiation used (null
   * before the first, or when its check failed and V8 applied the segments).
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
  readonly rewritten: RewriteResult | null;
}

/** @internal See the PreparedModule constructor. */
export interface PrepareHints {
  /** planModule(core, input), made beforehand. */
  readonly plan?: ModulePlan;
  /** The rewrite compiled beforehand (for example asynchronously), from plan.rewritten.bytes. */
  readonly compiled?: { readonly bytes: Uint8Array; readonly module: WebAssembly.Module };
  /** V8 has compiled `input` itself: do not validate it again. */
  readonly originalValid?: boolean;
}

/** @internal Parses and analyses a module and makes its rewrite; compiles nothing. */
export function planModule(core: EngineCore, input: Uint8Array<ArrayBuffer>): ModulePlan {
  let parsed: ParsedModule | null = null;
  let parseError: WasmFormatError | null = null;
  try {
    parsed = parseModule(input);
  } catch (e) {
    if (!(e instanceof WasmFormatError)) throw e;
    parseError = e;
  }
  if (parsed === null) return { parsed, parseError, plans: [], rewritten: null };
  const plans = analyzeMemories(parsed, {
    sizeLimit: core.options.imageSizeLimit,
    pageSize: core.backend.pageSize,
    mapImported: core.backend.kind === 'native',
  });
  const importMemories = parsed.memories.length > 0 && rewritableMemories(parsed) === null;
  const convert = new Set<number>();
  for (const p of plans) if (!p.excluded) for (const i of p.segmentIndices) convert.add(i);
  const rewritten = importMemories || convert.size > 0 ? rewriteModule(input, parsed, { importMemories, convert }) : null;
  return { parsed, parseError, plans, rewritten };
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
  /** Indices of the memories the module exports. */
  #exportedMemories = new Set<number>();
  /** The import object last made for a (single-memory) slot, by slot. */
  readonly #ioCache = new WeakMap<Slot, { imports: Imports | undefined; io: Imports }>();
  /** Images resolved at each instantiation, or null when there are none. */
  #conditional: ConditionalImages | null = null;
  /** Without conditional images, every instantiation's attempt: made once. */
  #fixed: Attempt | null = null;
  /** The attempt #begin resolved last. */
  #attempt: Attempt | null = null;
  /** Whether `module` was compiled from the rewrite. */
  #fromRewrite = false;

  /**
   * @internal Use engine.prepare(). `hints` lets an internal caller (the
   * register hook) supply the plan and the compiled rewrite it made
   * beforehand, and say that V8 already compiled `input` itself.
   */
  constructor(core: EngineCore, input: Uint8Array<ArrayBuffer>, hints: PrepareHints = {}) {
    this.#core = core;
    const { parsed, parseError, plans, rewritten } = hints.plan ?? planModule(core, input);

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

    for (const e of parsed.exports) if (e.kind === 'memory') this.#exportedMemories.add(e.index);
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
      }
      // The rewrite must not change what validates: check the original too.
      if (module !== null && !hints.originalValid && !wasm.validate(input)) module = null;
      if (module === null) {
        // Either the original is invalid (compiling it throws V8's own
        // error) or our rewrite is at fault: then run the original as is.
        module = new wasm.Module(input);
        memoryModule = null;
        size = input.length;
        this.#fromRewrite = false;
        this.#plans = plans.map((p) =>
          p.imported
            ? p
            : { ...p, excluded: { code: 'rewrite-rejected', message: 'V8 rejected the rewritten module; the original runs as is' } },
        );
      } else {
        this.#plans = plans;
      }
    } else {
      module = new wasm.Module(input);
      this.#plans = plans;
    }
    this.module = module;
    this.compiledSize = size;
    this.#memoryModule = memoryModule;
    this.#userImports = parsed.imports.length;
    this.#source = memoryModule !== null ? input : null;
    if (memoryModule === null) this.#requests = [];
    if (this.#plans.some((p) => p.condition !== null && p.excluded === null)) {
      this.#conditional = new ConditionalImages(core, input, parsed, this.#plans);
    }
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
    return WebAssembly.Module.exports(this.module);
  }

  /** Why the module could not be read (it then runs as is), or null. */
  get unparsedReason(): string | null {
    return this.#unparsed;
  }

  /**
   * Instantiates synchronously on pooled memories. Errors are those of
   * `new WebAssembly.Instance` (LinkError, RuntimeError, ...) plus
   * PoolExhaustedError and EngineClosedError.
   */
  instantiate<T extends WebAssembly.Exports = WebAssembly.Exports>(imports?: Imports): Lease<T> {
    const slots = this.#begin(imports, true);
    const attempt = this.#attempt!;
    try {
      return this.#finish<T>(new wasm.Instance(attempt.module, this.#importObject(imports, slots)), slots);
    } catch (e) {
      throw this.#fail(slots, attempt, e);
    }
  }

  /** As instantiate(), through `WebAssembly.instantiate` (asynchronous). */
  async instantiateAsync<T extends WebAssembly.Exports = WebAssembly.Exports>(imports?: Imports): Promise<Lease<T>> {
    const slots = this.#begin(imports, false);
    const attempt = this.#attempt!;
    try {
      return this.#finish<T>(await wasm.instantiate(attempt.module, this.#importObject(imports, slots)), slots);
    } catch (e) {
      throw this.#fail(slots, attempt, e);
    }
  }

  /**
   * Takes an instance slot and the memories, resolving conditional images
   * (undoing all of it on failure). The attempt is left in #attempt, to be
   * read before anything else can run.
   */
  #begin(imports: unknown, sync: boolean): Slot[] {
    this.#checkUsable();
    this.#core.reserve();
    let attempt: Attempt | null = null;
    try {
      attempt = this.#attempt = this.#resolve(imports, sync);
      this.#conditional?.place(attempt);
      return this.#core.acquire(attempt.requests);
    } catch (e) {
      if (attempt) this.#conditional?.unplace(attempt.placed);
      this.#core.unreserve();
      throw e;
    }
  }

  /** The compiled form and memories for one instantiation. */
  #resolve(imports: unknown, sync: boolean): Attempt {
    const requests = this.#ensureImages();
    if (this.#conditional === null) return (this.#fixed ??= { module: this.module, requests, placed: [] });
    return this.#conditional.resolve(imports, this.module, requests, sync);
  }

  #finish<T extends WebAssembly.Exports>(instance: WebAssembly.Instance, slots: Slot[]): Lease<T> {
    this.#core.counters.instantiations++;
    return new Lease<T>(this.#core, instance, slots);
  }

  /** Instantiation failed: the memories go back (reset), the slot is freed. */
  #fail(slots: Slot[], attempt: Attempt | null, error: unknown): unknown {
    this.#core.releaseSlots(slots);
    if (attempt) this.#conditional?.failed(attempt, error);
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
    const attempt = this.#resolve(imports, true);
    this.#conditional?.place(attempt);
    let slots: Slot[];
    try {
      slots = this.#core.fresh(attempt.requests);
    } catch (e) {
      this.#conditional?.unplace(attempt.placed);
      throw e;
    }
    try {
      const instance = construct(attempt.module, this.#importObject(imports, slots));
      this.#core.counters.instantiations++;
      return instance;
    } catch (e) {
      this.#conditional?.failed(attempt, e);
      throw e;
    }
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
    const attempt = this.#resolve(imports, false);
    this.#conditional?.place(attempt);
    try {
      const slots = this.#core.fresh(attempt.requests);
      const instance = await instantiate(attempt.module, this.#importObject(imports, slots));
      this.#core.counters.instantiations++;
      return instance;
    } catch (e) {
      this.#conditional?.failed(attempt, e);
      throw e;
    }
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
    this.#conditional?.dispose();
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
        const flat = flattenImage(source, p.segments, backend.pageSize);
        if (flat.length > 0) {
          const made = backend.createImage(flat);
          image = made.image;
          built.push(image);
          this.#core.trackImage(image);
          this.#core.counters.imagesBuilt++;
          if (made.fallback) this.#core.counters.imageFallbacks++;
        }
      }
      const size = { initialPages: p.type.min, maximumPages: p.type.max };
      requests.push({ ...size, key: sizeKey(size), image, exported: this.#exportedMemories.has(p.index) });
    }
    this.#images = built;
    this.#requests = requests;
    this.#source = null;
    return requests;
  }

  #importObject(imports: Imports | undefined, slots: readonly Slot[]): Imports | undefined {
    if (this.#memoryModule === null) return imports;
    const isObject = (typeof imports === 'object' && imports !== null) || typeof imports === 'function';
    if (!isObject && (imports !== undefined || this.#userImports > 0)) {
      // Let V8 throw exactly the TypeError it throws natively.
      return imports;
    }
    // One memory and the same imports object as last time with this slot:
    // the import object made then is still right (its prototype is the
    // caller's object, read live), so reuse it.
    const only = slots.length === 1 ? slots[0]! : null;
    const cached = only ? this.#ioCache.get(only) : undefined;
    if (cached && cached.imports === imports) return cached.io;
    const ns: Record<string, WebAssembly.Memory> = Object.create(null);
    for (let i = 0; i < slots.length; i++) ns[i] = slots[i]!.memory;
    const io: Imports = isObject ? Object.create(imports as object) : Object.create(null);
    Object.defineProperty(io, this.#memoryModule, { value: ns, enumerable: true });
    if (only) this.#ioCache.set(only, { imports, io });
    return io;
  }
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
