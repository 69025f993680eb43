/**
 * Grown memories at pooled speed (issue 11, item 2): esbuild-wasm's minify
 * run in a loop through Go's own glue (wasm_exec.js), each run a new Go
 * runtime on a pooled instance. esbuild grows its memory on every run and
 * the glue reads `exports.mem`, so no memory it used can be reused: the
 * next run either makes a new memory itself (spareMemories: false) or takes
 * the spare the pool made in idle time (the default).
 *
 * Per run: the time of the instantiation alone (median), and of the whole
 * run (instantiate + minify + release). Variants alternate run by run, in
 * one process:
 *   native       new WebAssembly.Instance(original module)
 *   spares       engine default: prepared, pooled, spares on
 *   no spares    engine with spareMemories: false (before this change)
 *   no growth    the same prepared esbuild, instantiated and released
 *                without running it: its memory neither grows nor is handed
 *                out, so it is reused as is (the pooled figure to match)
 * Every run's output must equal native's (checked).
 *
 * Then the same four variants on a synthetic module with 16 MiB of data
 * whose every tenant grows its memory by one page, in a loop that yields
 * to the event loop between instantiations (as a server between requests):
 * instantiate + grow + release, medians of `--synthetic N` (default 400).
 *
 *   tsc -p tsconfig.json && node out/benchmarks/grown.js [--runs N] [--synthetic N]
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Engine } from '../src/index.js';
import type { Lease } from '../src/index.js';
import { synthetic } from './scenarios.js';
import { type GoRuntime, loadGoGlue } from '../src/bench/go-glue.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(`${root}package.json`);
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 40);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const glue = loadGoGlue(require);
const bytes = readFileSync(require.resolve('esbuild-wasm/esbuild.wasm'));
const input = `${root}test/fixtures/register/input.ts`;
const original = new WebAssembly.Module(bytes);

type Variant = 'native' | 'spares' | 'no spares' | 'no growth';
const engines = {
  spares: new Engine(),
  'no spares': new Engine({ spareMemories: false }),
  'no growth': new Engine(),
};
const prepared = {
  spares: engines.spares.prepare(bytes),
  'no spares': engines['no spares'].prepare(bytes),
  'no growth': engines['no growth'].prepare(bytes),
};

function newGo(): GoRuntime {
  return glue.esbuild(input, (code) => {
    if (code !== 0) throw new Error(`esbuild exited ${code}`);
  });
}

/** One run; returns [instantiate ms, whole run ms, output]. */
async function run(variant: Variant): Promise<[number, number, string]> {
  glue.takeOutput();
  const go = newGo();
  const t0 = performance.now();
  if (variant === 'native') {
    const instance = new WebAssembly.Instance(original, go.importObject);
    const t1 = performance.now();
    await go.run(instance);
    return [t1 - t0, performance.now() - t0, glue.takeOutput()];
  }
  const lease: Lease = prepared[variant].instantiate(go.importObject);
  const t1 = performance.now();
  // The glue checks `instanceof WebAssembly.Instance`; it gets the lease's exports (so the pool sees what it reads).
  const view = Object.create(WebAssembly.Instance.prototype, { exports: { value: lease.exports } }) as WebAssembly.Instance;
  if (variant !== 'no growth') await go.run(view);
  lease.release();
  return [t1 - t0, performance.now() - t0, glue.takeOutput()];
}

const variants: Variant[] = ['native', 'spares', 'no spares', 'no growth'];
const inst: Record<Variant, number[]> = { native: [], spares: [], 'no spares': [], 'no growth': [] };
const whole: Record<Variant, number[]> = { native: [], spares: [], 'no spares': [], 'no growth': [] };
let expected: string | null = null;
for (let i = 0; i < runs + 2; i++) {
  for (const v of i % 2 === 0 ? variants : [...variants].reverse()) {
    const [a, b, text] = await run(v);
    if (v !== 'no growth') {
      expected ??= text;
      if (text !== expected || text.length === 0) throw new Error(`${v}: output differs from native's`);
    }
    if (i >= 2) {
      // The first two rounds warm up (V8's tiers, the pools).
      inst[v].push(a);
      whole[v].push(b);
    }
  }
}
const f = (x: number): string => (x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3));
console.log(`esbuild-wasm ${require('esbuild-wasm/package.json').version}, minify ${input.slice(root.length)} through Go's glue, ${runs} runs per variant, alternating (medians):\n`);
console.log('| variant | instantiate | whole run | pooledReuses | sparesUsed | memoriesCreated |');
console.log('|---|---|---|---|---|---|');
for (const v of variants) {
  const s = v === 'native' ? null : engines[v].stats();
  const c = s ? `${s.pooledReuses} | ${s.sparesUsed} | ${s.memoriesCreated}` : '- | - | -';
  console.log(`| ${v} | ${f(median(inst[v]))} ms | ${v === 'no growth' ? '-' : `${f(median(whole[v]))} ms`} | ${c} |`);
}
for (const e of Object.values(engines)) e.close();

// ---- synthetic: 16 MiB of data, every tenant grows by one page ----
const synthRuns = Number(process.argv[process.argv.indexOf('--synthetic') + 1] || 400);
const synth = synthetic(16 * 1024 * 1024).bytes;
const synthModule = new WebAssembly.Module(synth);
const synthEngines = { spares: new Engine(), 'no spares': new Engine({ spareMemories: false }), 'no growth': new Engine() };
const synthPrepared = {
  spares: synthEngines.spares.prepare(synth),
  'no spares': synthEngines['no spares'].prepare(synth),
  'no growth': synthEngines['no growth'].prepare(synth),
};
const grow = (e: WebAssembly.Exports) => (e['grow'] as (n: number) => number)(1);
const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const synthTimes: Record<Variant, number[]> = { native: [], spares: [], 'no spares': [], 'no growth': [] };
for (let i = 0; i < synthRuns + 20; i++) {
  for (const v of i % 2 === 0 ? variants : [...variants].reverse()) {
    const t0 = performance.now();
    if (v === 'native') {
      const instance = new WebAssembly.Instance(synthModule, {});
      const t1 = performance.now();
      grow(instance.exports);
      if (i >= 20) synthTimes[v].push(t1 - t0);
    } else {
      const lease = synthPrepared[v].instantiate();
      const t1 = performance.now();
      if (v !== 'no growth') grow(lease.exports);
      lease.release();
      if (i >= 20) synthTimes[v].push(t1 - t0);
    }
    await yieldTurn();
  }
}
console.log(`\nSynthetic module, 16 MiB of data, each tenant grows by 1 page; the loop yields a turn between instantiations; ${synthRuns} per variant, alternating (medians):\n`);
console.log('| variant | instantiate | pooledReuses | sparesUsed | memoriesCreated |');
console.log('|---|---|---|---|---|');
const us = (ms: number): string => (ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`);
for (const v of variants) {
  const s = v === 'native' ? null : synthEngines[v].stats();
  const c = s ? `${s.pooledReuses} | ${s.sparesUsed} | ${s.memoriesCreated}` : '- | - | -';
  console.log(`| ${v} | ${us(median(synthTimes[v]))} | ${c} |`);
}
for (const e of Object.values(synthEngines)) e.close();
