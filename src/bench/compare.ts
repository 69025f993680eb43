/**
 * Side-by-side instantiation benchmark of one module, in one process:
 *   native  new WebAssembly.Instance of the original module
 *   fresh   engine, a new memory each time (no reuse)
 *   pooled  engine, pooled steady state (instantiate, touch, release),
 *           through the revocable `lease.exports` (the touch: see cycle)
 *   inline  the same with backgroundReset: false (the reset inside release();
 *           only when asked for with `inline: true`)
 *   raw     the pooled loop touching through `lease.instance.exports`: raw
 *           access, so every memory is retired at release and the next
 *           instance gets a new one (only when asked for with `raw: true`)
 *   floor   new WebAssembly.Instance of the rewritten module given a ready
 *           memory and no data: what V8 itself costs
 * The variants run in alternating blocks (measureInterleaved), so that the
 * machine's drift falls on all of them alike. Each iteration also "touches"
 * the instance (writes one byte into its data, where it has any) so that
 * copy-on-write is paid for where it applies. "fresh" is an engine with
 * maxIdle 0: its policy (PreparedModule.newMemory) may run a module with
 * little data as V8 would; `stats` says how often.
 */
import { Engine } from '../engine.js';
import type { PreparedModule } from '../prepared.js';
import type { BackendKind } from '../backend/backend.js';
import { measureInterleaved, type Timing } from './measure.js';
import type { EngineStats } from '../stats.js';
import { type ImportEntry, parseModule } from '../binary/reader.js';
import { type FuncTypeInfo, readModuleInfo } from '../reuse/module-info.js';
import { unexposedInstance } from '../lease.js';

/**
 * Writes into an instance once: through its exports, or the buffer of its
 * first exported memory (`memoryBuffer()`: revocable for a lease; null when
 * the module exports no memory).
 */
export type Touch = (exports: WebAssembly.Exports, memoryBuffer: () => ArrayBuffer | null) => void;

export interface CompareOptions {
  /** The same imports for every instantiation, or a function making them per instantiation (untimed). */
  readonly imports?: ImportsSource;
  /** Writes into the instance's memory once per iteration. */
  readonly touch?: Touch;
  /** Time budget per variant, ms. */
  readonly budgetMs?: number;
  readonly maxIterations?: number;
  readonly backend?: BackendKind | 'auto';
  /** Variants to skip (e.g. native for sizes where it is too slow). */
  readonly skip?: readonly Variant[];
  /** Also measure 'inline': pooled with resets inside release(). */
  readonly inline?: boolean;
  /** Also measure 'raw': pooled, touched through lease.instance (raw access: memories retired). */
  readonly raw?: boolean;
}

export type Variant = 'native' | 'fresh' | 'pooled' | 'inline' | 'raw' | 'floor';

export interface CompareResult {
  readonly backend: BackendKind;
  readonly timings: Partial<Record<Variant, Timing>>;
  /** native median / pooled median. */
  readonly speedup: number | null;
  /** pooled median / floor median. */
  readonly overFloor: number | null;
  /** inline median / floor median, when measured. */
  readonly inlineOverFloor: number | null;
  /** raw median / pooled median, when measured: what raw access costs. */
  readonly rawOverPooled: number | null;
  /**
   * Whether the engine instantiates a rewrite of the module (some memory
   * imaged or moved). When not, the engine's variants and "floor" do V8's
   * own work with the original module, and "native" and "floor" are the
   * same work: their difference is this module's noise in this run.
   */
  readonly rewritten: boolean;
  /** The counters of each variant's engine after the run (inline and raw when measured). */
  readonly stats: { readonly pooled: EngineStats; readonly fresh: EngineStats; readonly inline?: EngineStats; readonly raw?: EngineStats };
}

/** Imports for each instantiation: one object for all, or a function that makes one per instantiation. */
export type ImportsSource = WebAssembly.Imports | (() => WebAssembly.Imports);

const GLOBAL_TYPES: Readonly<Record<number, WebAssembly.ValueType>> = {
  0x7f: 'i32',
  0x7e: 'i64',
  0x7d: 'f32',
  0x7c: 'f64',
  0x70: 'anyfunc',
  0x6f: 'externref',
};

/** A stub for an imported global: a WebAssembly.Global of its type holding zero (or null). */
function stubGlobal(type: { readonly valType: number; readonly mutable: boolean } | undefined): WebAssembly.ImportValue {
  const value = type ? GLOBAL_TYPES[type.valType] : undefined;
  // No type (module unreadable) or one JS cannot make (v128, typed references):
  // 0, and V8 says why it does not link, as it would natively.
  if (value === undefined) return 0;
  const init = value === 'i64' ? 0n : value === 'anyfunc' || value === 'externref' ? null : 0;
  return new WebAssembly.Global({ value, mutable: type!.mutable }, init);
}

function stubTable(type: ImportEntry['table']): WebAssembly.Table {
  const descriptor: WebAssembly.TableDescriptor = {
    element: type?.elemType === 0x6f ? 'externref' : 'anyfunc',
    initial: type?.min ?? 0,
  };
  if (type?.max != null) descriptor.maximum = type.max;
  return new WebAssembly.Table(descriptor);
}

function stubMemory(type: ImportEntry['memory']): WebAssembly.Memory {
  const descriptor: WebAssembly.MemoryDescriptor = { initial: type?.min ?? 1 };
  if (type?.max != null) descriptor.maximum = type.max;
  if (type?.shared) descriptor.shared = true;
  return new WebAssembly.Memory(descriptor);
}

/** WebAssembly.Tag (exception handling), which TypeScript's DOM lib does not declare. */
type TagConstructor = new (type: { parameters: WebAssembly.ValueType[] }) => WebAssembly.ImportValue;

// No v128: JavaScript cannot make a Tag with a v128 parameter (V8 throws a TypeError).
const TAG_PARAM_TYPES: Readonly<Record<number, WebAssembly.ValueType>> = GLOBAL_TYPES;

/** A tag import's parameters as JavaScript names them, or null where its type is unknown or one JavaScript cannot make. */
function tagParameters(entry: ImportEntry, types: readonly FuncTypeInfo[] | null): WebAssembly.ValueType[] | null {
  const type = entry.tag === undefined ? undefined : types?.[entry.tag.typeIndex];
  if (type === undefined) return null;
  const params = type.paramTypes.map((t) => TAG_PARAM_TYPES[t]);
  return params.every((t) => t !== undefined) ? (params as WebAssembly.ValueType[]) : null;
}

/**
 * The module's imports with their types from the binary (null where it
 * cannot be read: WebAssembly.Module.imports gives names and kinds only).
 */
function importTypes(
  bytes: Uint8Array,
  module: WebAssembly.Module,
): { d: WebAssembly.ModuleImportDescriptor; entry: ImportEntry | null; tagParameters: WebAssembly.ValueType[] | null }[] {
  const list = WebAssembly.Module.imports(module);
  let parsed: readonly ImportEntry[] = [];
  let types: readonly FuncTypeInfo[] | null = null;
  try {
    const read = parseModule(bytes);
    parsed = read.imports;
    if (parsed.some((i) => i.kind === 'tag')) types = readModuleInfo(bytes, read)?.types ?? null;
  } catch {
    parsed = [];
  }
  return list.map((d, i) => {
    const e = parsed[i];
    const entry = e !== undefined && e.module === d.module && e.name === d.name && e.kind === d.kind ? e : null;
    return { d, entry, tagParameters: entry?.kind === 'tag' ? tagParameters(entry, types) : null };
  });
}

/**
 * Stub imports for a module, from its import types: functions that return
 * 0; globals as WebAssembly.Global of the declared value type and
 * mutability, holding zero (0n for i64, null for references); tables and
 * memories of the declared element type and limits; tags as
 * WebAssembly.Tag of the declared parameter types. Enough to instantiate
 * most modules; a module whose start function needs real imports will trap.
 */
export function stubImports(
  bytes: Uint8Array<ArrayBuffer>,
  module: WebAssembly.Module = new WebAssembly.Module(bytes),
): WebAssembly.Imports {
  return stubImportsFactory(bytes, module)();
}

/**
 * As stubImports, as a function that makes an import object per call: each
 * with new memories (as Emscripten glue makes one per module instance), the
 * rest shared by all calls.
 */
export function stubImportsFactory(
  bytes: Uint8Array<ArrayBuffer>,
  module: WebAssembly.Module = new WebAssembly.Module(bytes),
): () => WebAssembly.Imports {
  const shared: Record<string, Record<string, WebAssembly.ImportValue>> = {};
  const memories: { module: string; name: string; type: ImportEntry['memory'] }[] = [];
  const Tag = (WebAssembly as unknown as { Tag?: TagConstructor }).Tag;
  for (const { d, entry, tagParameters } of importTypes(bytes, module)) {
    const ns = (shared[d.module] ??= {});
    if (d.kind === 'function') ns[d.name] = () => 0;
    else if (d.kind === 'global') ns[d.name] = stubGlobal(entry?.global);
    else if (d.kind === 'table') ns[d.name] = stubTable(entry?.table);
    // A tag whose type cannot be read or made stays absent: V8 says why it does not link.
    else if ((d.kind as string) === 'tag' && tagParameters !== null && Tag !== undefined) {
      try {
        ns[d.name] = new Tag({ parameters: tagParameters });
      } catch {
        // left absent
      }
    }
    else if (d.kind === 'memory') memories.push({ module: d.module, name: d.name, type: entry?.memory });
  }
  if (memories.length === 0) return () => shared;
  return () => {
    const out: Record<string, Record<string, WebAssembly.ImportValue>> = {};
    for (const [ns, values] of Object.entries(shared)) out[ns] = { ...values };
    for (const m of memories) out[m.module]![m.name] = stubMemory(m.type);
    return out;
  };
}

/** Writes one byte into page 0: through a `store8(addr, value)` export if there is one, else into the first exported memory, if any. */
export const touchExportedMemory: Touch = (exports, memoryBuffer) => {
  const store8 = exports['store8'];
  if (typeof store8 === 'function') return void (store8 as (a: number, v: number) => void)(0, 1);
  const buffer = memoryBuffer();
  if (buffer !== null && buffer.byteLength > 0) new Uint8Array(buffer, 0, 1)[0] = 1;
};

/** The buffer of an instance's first exported memory (null when none). */
function firstMemoryBuffer(exports: WebAssembly.Exports, name: string | null): () => ArrayBuffer | null {
  return () => (name === null ? null : (exports[name] as WebAssembly.Memory).buffer);
}

/**
 * The floor's imports: for `new WebAssembly.Instance(prepared.module, io)`,
 * the compiled module the engine instantiates, its own memories supplied
 * ready (created once here, no data in them) over the caller's imports
 * (`importsFor()`, called per instantiation). The floor is the least any
 * instantiation of that module can cost.
 */
export function readyMemoryImports(prepared: PreparedModule, importsFor: () => WebAssembly.Imports): () => WebAssembly.Imports {
  const own = new Set(prepared.imports.map((d) => `${d.module}\0${d.name}`));
  const ready: { module: string; name: string; memory: WebAssembly.Memory }[] = [];
  for (const d of WebAssembly.Module.imports(prepared.module)) {
    if (d.kind !== 'memory' || own.has(`${d.module}\0${d.name}`)) continue;
    const info = prepared.memories.filter((m) => !m.imported)[Number(d.name)]!;
    const descriptor: WebAssembly.MemoryDescriptor = { initial: info.initialPages };
    if (info.maximumPages !== null) descriptor.maximum = info.maximumPages;
    ready.push({ module: d.module, name: d.name, memory: new WebAssembly.Memory(descriptor) });
  }
  return () => {
    const io: Record<string, Record<string, WebAssembly.ImportValue>> = Object.create(importsFor() as object);
    for (const r of ready) {
      if (!Object.prototype.hasOwnProperty.call(io, r.module)) io[r.module] = {};
      io[r.module]![r.name] = r.memory;
    }
    return io;
  };
}

export function compareInstantiation(bytes: Uint8Array<ArrayBuffer>, options: CompareOptions = {}): CompareResult {
  const { imports = {}, touch = () => {}, budgetMs = 1000, maxIterations = 100_000, skip = [] } = options;
  const importsFor: () => WebAssembly.Imports = typeof imports === 'function' ? imports : () => imports;
  const original = new WebAssembly.Module(bytes);
  const memoryName = WebAssembly.Module.exports(original).find((e) => e.kind === 'memory')?.name ?? null;

  const pooledEngine = new Engine({ backend: options.backend ?? 'auto', maxInstances: 16 });
  const inlineEngine = new Engine({ backend: options.backend ?? 'auto', maxInstances: 16, backgroundReset: false });
  const freshEngine = new Engine({ backend: options.backend ?? 'auto', maxInstances: 16, maxIdle: 0 });
  const rawEngine = new Engine({ backend: options.backend ?? 'auto', maxInstances: 16 });
  const prepared = pooledEngine.prepare(bytes);
  const preparedFresh = freshEngine.prepare(bytes);

  type Run = { setup: () => unknown; run: (io: unknown) => void };
  const variants: Partial<Record<Variant, Run>> = {};
  const withImports = (run: (io: WebAssembly.Imports) => void): Run => ({ setup: importsFor, run: run as (io: unknown) => void });
  const native = (exports: WebAssembly.Exports) => touch(exports, firstMemoryBuffer(exports, memoryName));
  // The touch stands for a write by the module's own code (a function
  // export: the synthetic modules' store8), which keeps the memory pooled.
  // A module without one is written through its memory read for the
  // benchmark only (unexposedInstance, not kept): `lease.memoryBuffer()`
  // would retire the memory at every release (a lent buffer's address may
  // still be held by native code), and "pooled" would measure "raw".
  const cycle = (p: PreparedModule) =>
    withImports((io) => {
      const lease = p.instantiate(io);
      touch(lease.exports, () => (memoryName === null ? null : (unexposedInstance(lease).exports[memoryName] as WebAssembly.Memory).buffer));
      lease.release();
    });
  const rawCycle = (p: PreparedModule) =>
    withImports((io) => {
      const lease = p.instantiate(io);
      native(lease.instance.exports);
      lease.release();
    });
  if (!skip.includes('native')) variants.native = withImports((io) => native(new WebAssembly.Instance(original, io).exports));
  if (!skip.includes('fresh')) variants.fresh = cycle(preparedFresh);
  if (!skip.includes('pooled')) variants.pooled = cycle(prepared);
  if (options.inline && !skip.includes('inline')) variants.inline = cycle(inlineEngine.prepare(bytes));
  if (options.raw && !skip.includes('raw')) variants.raw = rawCycle(rawEngine.prepare(bytes));
  if (!skip.includes('floor')) {
    const floorImports = readyMemoryImports(prepared, importsFor);
    variants.floor = {
      setup: floorImports,
      run: (io) => native(new WebAssembly.Instance(prepared.module, io as WebAssembly.Imports).exports),
    };
  }
  const timings: Partial<Record<Variant, Timing>> = measureInterleaved(variants as Record<Variant, Run>, {
    budgetMs,
    maxIterations,
    minIterations: 10,
  });
  const backend = pooledEngine.backend;
  const stats = {
    pooled: pooledEngine.stats(),
    fresh: freshEngine.stats(),
    ...(variants.inline ? { inline: inlineEngine.stats() } : {}),
    ...(variants.raw ? { raw: rawEngine.stats() } : {}),
  };
  pooledEngine.close();
  inlineEngine.close();
  freshEngine.close();
  rawEngine.close();
  const speedup = timings.native && timings.pooled ? timings.native.median / timings.pooled.median : null;
  const overFloor = timings.floor && timings.pooled ? timings.pooled.median / timings.floor.median : null;
  const inlineOverFloor = timings.floor && timings.inline ? timings.inline.median / timings.floor.median : null;
  const rawOverPooled = timings.raw && timings.pooled ? timings.raw.median / timings.pooled.median : null;
  return { backend, timings, speedup, overFloor, inlineOverFloor, rawOverPooled, rewritten: prepared.rewritten, stats };
}
