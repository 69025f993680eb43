/**
 * Child of benchmarks/packages.ts: one fresh process, the modules of one
 * npm package, natively or under `--import wasm-cow/register` (the parent
 * decides). Prints JSON.
 *
 *   node [--import wasm-cow/register] out/benchmarks/packages-child.js inst async|sync FILE...
 *     first: the program's first compile + instantiation of each file
 *     (through the API its glue uses), summed over the files; then, once the
 *     hook has prepared what it will (its default, lazy, policy prepares in
 *     the background after a few native instantiations), `later`: each
 *     `new WebAssembly.Instance(module, imports)` (all files, summed), ms.
 *   ... packages-child.js first async|sync FILE...   (the first only)
 *   ... packages-child.js dropin 0|1 FILE...   (12 calls of WebAssembly.instantiate(bytes) or of the drop-in)
 *   node --expose-gc [--import wasm-cow/register] out/benchmarks/packages-child.js mem N FILE...
 *     N live instances of each file, each having written one byte into page
 *     0 of its memory: RSS and PSS growth over a baseline taken once the
 *     modules are compiled (and prepared), the images' memfds (Shmem), and
 *     the process's RSS at the end.
 *
 * Imports are stubs from the import types (functions returning 0, globals
 * of zero, tables and a new memory per instance): the instantiation alone,
 * without the package's glue (its own cost is in the parent's cold start).
 * Only the reader is loaded here, never the library: under the hook, the
 * process holds wasm-cow's register hook alone.
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseModule, type ImportEntry } from '../src/binary/reader.js';

type Registration = {
  engine: { stats(): { fallbacks: Record<string, number> } };
  hook: { settled(): Promise<void>; stats(): { preparations: number; preparedInstantiations: number; nativeInstantiations: number } } | null;
} | undefined;
const registration = (): Registration => (globalThis as unknown as Record<symbol, Registration>)[Symbol.for('wasm-cow.register')];

const GLOBAL_TYPES: Readonly<Record<number, WebAssembly.ValueType>> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x70: 'anyfunc', 0x6f: 'externref' };

/** Stub imports from the binary's import types; a new memory per call. */
function stubs(bytes: Uint8Array): () => WebAssembly.Imports {
  const shared: Record<string, Record<string, WebAssembly.ImportValue>> = {};
  const memories: ImportEntry[] = [];
  for (const i of parseModule(bytes).imports) {
    const ns = (shared[i.module] ??= {});
    if (i.kind === 'function') ns[i.name] = () => 0;
    else if (i.kind === 'global') {
      const value = GLOBAL_TYPES[i.global!.valType]!;
      ns[i.name] = new WebAssembly.Global({ value, mutable: i.global!.mutable }, value === 'i64' ? 0n : value === 'anyfunc' || value === 'externref' ? null : 0);
    } else if (i.kind === 'table') {
      const t = i.table!;
      ns[i.name] = new WebAssembly.Table({ element: t.elemType === 0x6f ? 'externref' : 'anyfunc', initial: t.min, ...(t.max !== null ? { maximum: t.max } : {}) });
    } else if (i.kind === 'memory') memories.push(i);
  }
  return () => {
    const out: Record<string, Record<string, WebAssembly.ImportValue>> = {};
    for (const [ns, values] of Object.entries(shared)) out[ns] = { ...values };
    for (const m of memories) {
      const t = m.memory!;
      out[m.module]![m.name] = new WebAssembly.Memory({ initial: t.min, ...(t.max !== null ? { maximum: t.max } : {}) });
    }
    return out;
  };
}

/** The instance's memory (the one it exports, else the one it imported), for a write. */
function memoryOf(instance: WebAssembly.Instance, imports: WebAssembly.Imports): WebAssembly.Memory | null {
  for (const v of Object.values(instance.exports)) if (v instanceof WebAssembly.Memory) return v;
  for (const ns of Object.values(imports)) for (const v of Object.values(ns)) if (v instanceof WebAssembly.Memory) return v;
  return null;
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const fallbacks = (): number => Object.values(registration()?.engine.stats().fallbacks ?? {}).reduce((a, b) => a + b, 0);

interface Loaded {
  module: WebAssembly.Module;
  imports: () => WebAssembly.Imports;
}

/**
 * Instantiates each module until the hook has decided about it (prepared
 * it, or counted why not), yielding to the event loop between: the lazy
 * policy prepares in the background once the time spent instantiating
 * natively reaches the first compile's. Natively: a few, to warm up.
 */
async function warm(loaded: Loaded[]): Promise<void> {
  for (const { module, imports } of loaded) {
    const hook = registration()?.hook ?? null;
    const p0 = hook?.stats().preparations ?? 0;
    const f0 = fallbacks();
    for (let i = 0; i < 300; i++) {
      new WebAssembly.Instance(module, imports());
      await turn();
      if (hook === null ? i >= 4 : hook.stats().preparations > p0 || fallbacks() > f0) break;
    }
    await hook?.settled();
  }
}

async function inst(api: string, files: string[]): Promise<void> {
  const loaded: Loaded[] = [];
  let first = 0;
  let cpu = 0;
  for (const file of files) {
    const bytes = readFileSync(file);
    const imports = stubs(bytes);
    const io = imports();
    const c = process.cpuUsage();
    const t = performance.now();
    let module: WebAssembly.Module;
    if (api === 'async') module = (await WebAssembly.instantiate(bytes, io)).module;
    else new WebAssembly.Instance((module = new WebAssembly.Module(bytes)), io);
    first += performance.now() - t;
    const used = process.cpuUsage(c);
    cpu += (used.user + used.system) / 1000;
    // Later instantiations of a compiled module: from new WebAssembly.Module
    // of the bytes again, as the glue does when it runs again (the hook
    // keeps no copy of bytes at their first sight, through any API, so the
    // first module stays V8's; a program that compiles once and
    // instantiates many times gets V8's instances under the lazy policy).
    module = new WebAssembly.Module(bytes);
    loaded.push({ module, imports });
  }
  if (what === 'first') return void process.stdout.write(JSON.stringify({ first, cpu }));
  await warm(loaded);
  const hook = registration()?.hook ?? null;
  const s0 = hook?.stats();
  const later: number[] = [];
  for (let k = 0; k < 40; k++) {
    const ios = loaded.map((l) => l.imports());
    const t = performance.now();
    for (let j = 0; j < loaded.length; j++) new WebAssembly.Instance(loaded[j]!.module, ios[j]);
    later.push(performance.now() - t);
    if (k % 4 === 3) await turn();
  }
  const s1 = hook?.stats();
  const through = s0 && s1 ? s1.preparedInstantiations - s0.preparedInstantiations : 0;
  process.stdout.write(JSON.stringify({ first, cpu, later, through, of: later.length * loaded.length }));
}

/** The memfd images this process holds open: allocated bytes. */
function imageBytes(): number {
  let bytes = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (!readlinkSync(`/proc/self/fd/${fd}`).startsWith('/memfd:wasm-cow-image')) continue;
      bytes += statSync(`/proc/self/fd/${fd}`).blocks * 512;
    } catch {
      // the fd of readdir itself, or one closed meanwhile
    }
  }
  return bytes;
}

function usage(): { rss: number; pss: number } {
  const text = readFileSync('/proc/self/smaps_rollup', 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('Rss'), pss: kb('Pss') };
}

async function settle(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 4; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function mem(n: number, files: string[]): Promise<void> {
  const loaded: Loaded[] = files.map((file) => {
    const bytes = readFileSync(file);
    // Compiled twice, as by glue that runs twice: the hook keeps the bytes
    // from their second sight (the first module stays V8's).
    new WebAssembly.Module(bytes);
    return { module: new WebAssembly.Module(bytes), imports: stubs(bytes) };
  });
  await warm(loaded);
  await settle();
  const before = usage();
  const keep: unknown[] = [];
  const hook = registration()?.hook ?? null;
  const s0 = hook?.stats();
  for (let i = 0; i < n; i++) {
    for (const l of loaded) {
      const io = l.imports();
      const instance = new WebAssembly.Instance(l.module, io);
      const m = memoryOf(instance, io);
      if (m) new Uint8Array(m.buffer)[0] = 1;
      keep.push(instance, io);
    }
  }
  await settle();
  const after = usage();
  const s1 = hook?.stats();
  process.stdout.write(
    JSON.stringify({
      n,
      rss: after.rss - before.rss,
      pss: after.pss - before.pss,
      image: imageBytes(),
      total: after.rss,
      through: s0 && s1 ? s1.preparedInstantiations - s0.preparedInstantiations : 0,
      of: n * loaded.length,
      kept: keep.length,
    }),
  );
}

/**
 * The drop-in `instantiate(bytes, imports)` of 'wasm-cow' (dropin=1) or
 * `WebAssembly.instantiate(bytes, imports)`: 12 calls on the same bytes,
 * a turn of the event loop between (the drop-in prepares in the
 * background). The library is loaded before the first call (it is the
 * program's import, not the call's).
 */
async function dropin(useDropIn: boolean, files: string[]): Promise<void> {
  const lib = useDropIn ? await import('../src/index.js') : null;
  const api = lib ? lib.instantiate : WebAssembly.instantiate;
  const calls: number[][] = [];
  const inputs = files.map((file) => {
    const bytes = readFileSync(file);
    return { bytes, imports: stubs(bytes) };
  });
  for (let k = 0; k < 12; k++) {
    const times: number[] = [];
    for (const { bytes, imports } of inputs) {
      const io = imports();
      const t = performance.now();
      await api(bytes, io);
      times.push(performance.now() - t);
    }
    calls.push(times);
    await new Promise((r) => setTimeout(r, 5));
  }
  // Per call, summed over the files.
  process.stdout.write(JSON.stringify({ calls: calls.map((t) => t.reduce((a, b) => a + b, 0)), ...(lib ? { counts: lib.dropInCounts() } : {}) }));
}

const [what, arg, ...files] = process.argv.slice(2);
if (what === 'inst' || what === 'first') await inst(arg!, files);
else if (what === 'mem') await mem(Number(arg), files);
else if (what === 'dropin') await dropin(arg === '1', files);
else throw new Error(`usage: packages-child.js inst async|sync FILE... | mem N FILE...`);
