/**
 * Instance reuse against the pooled cycle and native, side by side in one
 * run (interleaved blocks), per module: one cycle is instantiate, one call
 * that writes memory, release (native: new WebAssembly.Instance and the
 * call). Then the cost of a function-import trampoline per call.
 *
 *   npx tsc -p tsconfig.json && node out/benchmarks/reuse.js [--quick]
 *
 * Prints a markdown table (medians and p99, µs) and writes
 * benchmarks/results/reuse.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/index.js';
import { measureInterleaved, type Timing } from '../src/bench/measure.js';
import { buildModule, I32, sleb, uleb } from '../src/bench/builder.js';
import { buildRaw } from '../test/helpers/raw-wasm.js';
import { realModules, synthetic } from './scenarios.js';

const quick = process.argv.includes('--quick');
const MiB = 1024 * 1024;
const budgetMs = quick ? 300 : 1500;

type Exports = Record<string, (...a: number[]) => number>;

interface Row {
  name: string;
  reuse: Timing;
  pooled: Timing;
  native: Timing;
  reused: number;
  declined: Record<string, number>;
}

function cycle(name: string, bytes: Uint8Array<ArrayBuffer>, imports: WebAssembly.Imports, touch: (e: Exports) => void): Row {
  const engine = new Engine();
  const reusable = engine.prepare(bytes, { reuse: true });
  if (!reusable.reuse.enabled) throw new Error(`${name}: not eligible for reuse (${reusable.reuse.reason}: ${reusable.reuse.detail})`);
  const pooled = engine.prepare(bytes);
  const module = new WebAssembly.Module(bytes);
  const t = measureInterleaved(
    {
      reuse: () => {
        const l = reusable.instantiate(imports);
        touch(l.exports as unknown as Exports);
        l.release();
      },
      pooled: () => {
        const l = pooled.instantiate(imports);
        touch(l.exports as unknown as Exports);
        l.release();
      },
      native: () => {
        const i = new WebAssembly.Instance(module, imports);
        touch(i.exports as unknown as Exports);
      },
    },
    { budgetMs, maxIterations: 200_000, warmupMs: quick ? 100 : 300 },
  );
  const s = engine.stats();
  engine.close();
  return { name, ...t, reused: s.instancesReused, declined: s.reuseDeclined as Record<string, number> };
}

/** ns per import call: a loop calling an i32 -> i32 import n times, linked directly (native) and through a reused instance's trampoline. */
function trampolineCost(): { direct: Timing; trampoline: Timing; nsPerCall: number } {
  const n = 100_000;
  // loop(n): for (i = n; i; i--) acc = f(acc)
  const body = [0x02, 0x40, 0x03, 0x40, 0x20, 0, 0x45, 0x0d, 1, 0x20, 1, 0x10, 0, 0x21, 1, 0x20, 0, 0x41, 1, 0x6b, 0x21, 0, 0x0c, 0, 0x0b, 0x0b, 0x20, 1];
  const bytes = buildModule({
    importFuncs: [{ module: 'env', name: 'f', params: [I32], results: [I32] }],
    memories: [{ min: 1 }],
    funcs: [{ export: 'loop', params: [I32], results: [I32], locals: [I32], body }],
  });
  void uleb;
  const f = (x: number): number => (x + 1) | 0;
  const engine = new Engine();
  const p = engine.prepare(bytes, { reuse: true });
  const lease = p.instantiate({ env: { f } });
  const native = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { f } });
  const direct = native.exports['loop'] as (n: number) => number;
  const viaTrampoline = lease.exports['loop'] as (n: number) => number;
  const t = measureInterleaved({ direct: () => void direct(n), trampoline: () => void viaTrampoline(n) }, { budgetMs, maxIterations: 2000, warmupMs: 200 });
  lease.release();
  engine.close();
  return { ...t, nsPerCall: ((t.trampoline.median - t.direct.median) * 1000) / n };
}

/**
 * Restoring a table code mutated: a 521-entry funcref table (sql.js's size)
 * filled by an active segment; a tenant clears 1 entry, or all 521
 * (table.fill), and the release sets back each entry that differs (JS
 * table.set after a table.get per entry).
 */
function tableRestore(): { one: Timing; all: Timing; untouched: Timing } {
  const n = 521;
  const funcs = [{ type: 0, body: [0x41, 7] }];
  const i32c = (v: number): number[] => [0x41, ...sleb(v)];
  const bytes = buildRaw({
    types: [{ params: [], results: [I32] }, { params: [I32], results: [] }],
    funcs: [
      ...funcs,
      { type: 1, body: [0x20, 0, 0xd0, 0x70, 0x26, 0] }, // clear(i): table[i] = null
      { type: 1, body: [...i32c(0), 0xd0, 0x70, 0x20, 0, 0xfc, 17, 0] }, // clearAll(n): table.fill 0 null n
    ],
    tables: [[0x70, 0x00, ...uleb(n)]],
    memories: [[0x00, 1]],
    exports: [
      { name: 'clear', kind: 0, index: 1 },
      { name: 'clearAll', kind: 0, index: 2 },
    ],
    elems: [[0x00, ...i32c(0), 0x0b, ...uleb(n), ...new Array<number>(n).fill(0)]],
  });
  const engine = new Engine({ backgroundReset: false });
  const p = engine.prepare(bytes, { reuse: true });
  const t = measureInterleaved(
    {
      untouched: () => p.instantiate().release(),
      one: () => {
        const l = p.instantiate();
        (l.exports['clear'] as (i: number) => void)(5);
        l.release();
      },
      all: () => {
        const l = p.instantiate();
        (l.exports['clearAll'] as (i: number) => void)(n);
        l.release();
      },
    },
    { budgetMs, maxIterations: 100_000, warmupMs: 200 },
  );
  engine.close();
  return t;
}

const rows: Row[] = [];
const sizes = quick ? [0, MiB, 16 * MiB] : [0, 64 * 1024, MiB, 16 * MiB, 256 * MiB];
for (const size of sizes) {
  const s = synthetic(size);
  rows.push(cycle(s.name, s.bytes, {}, (e) => e['store8']!(65536 + 100, 1)));
}
const skipped: string[] = [];
for (const s of realModules()) {
  const imports = typeof s.imports === 'function' ? s.imports() : s.imports;
  const reuse = new Engine().prepare(s.bytes, { reuse: true }).reuse;
  if (!reuse.enabled) {
    skipped.push(`${s.name}: not eligible (${reuse.reason}: ${reuse.detail})`);
    continue;
  }
  if (quick && s.name !== 'sql.js') continue;
  // sql.js: malloc (Ia in its minified exports) writes the heap's bookkeeping; the others: instantiate and release only.
  rows.push(cycle(s.name, s.bytes, imports, s.name === 'sql.js' ? (e) => void e['Ia']!(64) : () => {}));
}
const tramp = trampolineCost();
const tables = tableRestore();

const f = (x: number): string => (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));
const lines = [
  '| module | reuse median (p99) µs | pooled median (p99) µs | native median (p99) µs | pooled / reuse | native / reuse |',
  '|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.name} | ${f(r.reuse.median)} (${f(r.reuse.p99)}) | ${f(r.pooled.median)} (${f(r.pooled.p99)}) | ${f(r.native.median)} (${f(r.native.p99)}) | ${(r.pooled.median / r.reuse.median).toFixed(1)}x | ${(r.native.median / r.reuse.median).toFixed(0)}x |`,
  ),
  '',
  `Table restore (521-entry funcref table, reuse cycle, inline reset): untouched ${f(tables.untouched.median)} µs, 1 entry changed ${f(tables.one.median)} µs, all 521 changed ${f(tables.all.median)} µs (medians).`,
  `Import trampoline: ${tramp.nsPerCall.toFixed(1)} ns per call (100,000 calls of an i32 -> i32 import: direct ${f(tramp.direct.median)} µs, through the trampoline ${f(tramp.trampoline.median)} µs, medians).`,
];
console.log(lines.join('\n'));
for (const r of rows) if (Object.keys(r.declined).length > 0) console.log(`${r.name}: declined ${JSON.stringify(r.declined)}`);
for (const line of skipped) console.log(line);
const dir = fileURLToPath(new URL('../../benchmarks/results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}reuse.json`, JSON.stringify({ rows, trampoline: tramp, tables, quick, node: process.version }, null, 2));
