/**
 * Side-by-side instantiation benchmark of one module, in one process:
 *   native  new WebAssembly.Instance of the original module
 *   fresh   engine, a new memory each time (no reuse)
 *   pooled  engine, pooled steady state (instantiate, touch, release),
 *           through the revocable `lease.exports` and `lease.memoryBuffer()`
 *   inline  the same with backgroundReset: false (the reset inside release();
 *           only when asked for with `inline: true`)
 *   raw     the pooled loop touching through `lease.instance.exports`: raw
 *           access, so every memory is retired at release and the next
 *           instance gets a new one (only when asked for with `raw: true`)
 *   floor   new WebAssembly.Instance of the rewritten module given a ready
 *           memory and no data: what V8 itself costs
 * Each iteration also "touches" the instance (writes one byte into its data,
 * where it has any) so that copy-on-write is paid for where it applies.
 */
import { Engine } from '../engine.js';
import type { PreparedModule } from '../prepared.js';
import type { BackendKind } from '../backend/backend.js';
import { measure, type Timing } from './measure.js';
import { type ImportEntry, parseModule } from '../binary/reader.js';

/**
 * Writes into an instance once: through its exports, or the buffer of its
 * first exported memory (`memoryBuffer()`: revocable for a lease; null when
 * the module exports no memory).
 */
export type Touch = (exports: WebAssembly.Exports, memoryBuffer: () => ArrayBuffer | null) => void;

export interface CompareOptions {
  readonly imports?: WebAssembly.Imports;
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
}

/**
 * Stub imports for a module: functions that return 0, globals 0, tables
 * and memories of the declared initial size. Enough to instantiate most
 * modules; a module whose start function needs real imports will trap.
 */
export function stubImports(
  bytes: Uint8Array<ArrayBuffer>,
  module: WebAssembly.Module = new WebAssembly.Module(bytes),
): WebAssembly.Imports {
  const imports: Record<string, Record<string, WebAssembly.ImportValue>> = {};
  let memoryIndex = 0;
  // Memory limits are not in WebAssembly.Module.imports(): read them from the
  // binary (a module V8 accepts but we cannot read gets 1 page).
  let memories: ImportEntry[] = [];
  try {
    memories = parseModule(bytes).imports.filter((i) => i.kind === 'memory');
  } catch {
    memories = [];
  }
  for (const d of WebAssembly.Module.imports(module)) {
    const ns = (imports[d.module] ??= {});
    if (d.kind === 'function') ns[d.name] = () => 0;
    else if (d.kind === 'global') ns[d.name] = 0;
    else if (d.kind === 'table') ns[d.name] = new WebAssembly.Table({ initial: 0, element: 'anyfunc' });
    else if (d.kind === 'memory') {
      const type = memories[memoryIndex++]?.memory;
      const descriptor: WebAssembly.MemoryDescriptor = { initial: type?.min ?? 1 };
      if (type?.max != null) descriptor.maximum = type.max;
      if (type?.shared) descriptor.shared = true;
      ns[d.name] = new WebAssembly.Memory(descriptor);
    }
  }
  return imports;
}

/** Writes one byte into page 0 of the first exported memory, if it has any. */
export const touchExportedMemory: Touch = (_exports, memoryBuffer) => {
  const buffer = memoryBuffer();
  if (buffer !== null && buffer.byteLength > 0) new Uint8Array(buffer, 0, 1)[0] = 1;
};

/** The buffer of an instance's first exported memory (null when none). */
function firstMemoryBuffer(exports: WebAssembly.Exports, name: string | null): () => ArrayBuffer | null {
  return () => (name === null ? null : (exports[name] as WebAssembly.Memory).buffer);
}

export function compareInstantiation(bytes: Uint8Array<ArrayBuffer>, options: CompareOptions = {}): CompareResult {
  const { imports = {}, touch = () => {}, budgetMs = 1000, maxIterations = 100_000, skip = [] } = options;
  const opts = { budgetMs, maxIterations, minIterations: 10 };
  const timings: Partial<Record<Variant, Timing>> = {};
  const original = new WebAssembly.Module(bytes);
  const memoryName = WebAssembly.Module.exports(original).find((e) => e.kind === 'memory')?.name ?? null;

  const pooledEngine = new Engine({ backend: options.backend ?? 'auto', maxInstances: 16 });
  const inlineEngine = new Engine({ backend: options.backend ?? 'auto', maxInstances: 16, backgroundReset: false });
  const freshEngine = new Engine({ backend: options.backend ?? 'auto', maxInstances: 16, maxIdle: 0 });
  const rawEngine = new Engine({ backend: options.backend ?? 'auto', maxInstances: 16 });
  const prepared = pooledEngine.prepare(bytes);
  const preparedFresh = freshEngine.prepare(bytes);

  const native = (exports: WebAssembly.Exports) => touch(exports, firstMemoryBuffer(exports, memoryName));
  if (!skip.includes('native')) {
    timings.native = measure(() => native(new WebAssembly.Instance(original, imports).exports), opts);
  }
  const cycle = (p: PreparedModule) => () => {
    const lease = p.instantiate(imports);
    touch(lease.exports, () => (memoryName === null ? null : lease.memoryBuffer()));
    lease.release();
  };
  const rawCycle = (p: PreparedModule) => () => {
    const lease = p.instantiate(imports);
    native(lease.instance.exports);
    lease.release();
  };
  if (!skip.includes('fresh')) timings.fresh = measure(cycle(preparedFresh), opts);
  if (!skip.includes('pooled')) timings.pooled = measure(cycle(prepared), opts);
  if (options.inline && !skip.includes('inline')) timings.inline = measure(cycle(inlineEngine.prepare(bytes)), opts);
  if (options.raw && !skip.includes('raw')) timings.raw = measure(rawCycle(rawEngine.prepare(bytes)), opts);
  if (!skip.includes('floor')) {
    // The rewritten module, its memories supplied ready (no data in them).
    const own = new Set(prepared.imports.map((d) => `${d.module}\0${d.name}`));
    const io: Record<string, Record<string, WebAssembly.ImportValue>> = Object.create(imports as object);
    for (const d of WebAssembly.Module.imports(prepared.module)) {
      if (d.kind !== 'memory' || own.has(`${d.module}\0${d.name}`)) continue;
      const info = prepared.memories.filter((m) => !m.imported)[Number(d.name)]!;
      const descriptor: WebAssembly.MemoryDescriptor = { initial: info.initialPages };
      if (info.maximumPages !== null) descriptor.maximum = info.maximumPages;
      if (!Object.prototype.hasOwnProperty.call(io, d.module)) io[d.module] = {};
      io[d.module]![d.name] = new WebAssembly.Memory(descriptor);
    }
    timings.floor = measure(() => native(new WebAssembly.Instance(prepared.module, io).exports), opts);
  }
  const backend = pooledEngine.backend;
  pooledEngine.close();
  inlineEngine.close();
  freshEngine.close();
  rawEngine.close();
  const speedup = timings.native && timings.pooled ? timings.native.median / timings.pooled.median : null;
  const overFloor = timings.floor && timings.pooled ? timings.pooled.median / timings.floor.median : null;
  const inlineOverFloor = timings.floor && timings.inline ? timings.inline.median / timings.floor.median : null;
  const rawOverPooled = timings.raw && timings.pooled ? timings.raw.median / timings.pooled.median : null;
  return { backend, timings, speedup, overFloor, inlineOverFloor, rawOverPooled };
}
