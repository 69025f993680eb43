/**
 * wasm-cow benchmarks: `npm run bench [-- --quick] [--json FILE] [--md FILE] [--svg FILE]`.
 *
 * Everything is measured side by side with native WebAssembly.Instance in
 * the same run. Writes a Markdown report, a JSON file and an SVG chart
 * (default: benchmarks/results/). Memory is measured in child processes.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { compareInstantiation, type CompareResult } from '../src/bench/compare.js';
import { fmtBytes, fmtRatio, fmtUs, summarize, type Timing } from '../src/bench/measure.js';
import { lineChartSvg } from '../src/bench/svg.js';
import { Engine } from '../src/index.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from '../src/bench/builder.js';
import { coldStart } from './cold-start.js';
import { label, realModules, sparse, synthetic, tinySegments, type Scenario } from './scenarios.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = args.includes('--quick');
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const outDir = join(repo, 'benchmarks', 'results');
const jsonPath = flag('--json') ?? join(outDir, 'results.json');
const mdPath = flag('--md') ?? join(outDir, 'results.md');
const svgPath = flag('--svg') ?? join(outDir, 'instantiation.svg');
const MiB = 1024 * 1024;
const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface InstRow {
  scenario: string;
  kind: string;
  dataBytes: number;
  result: CompareResult;
}

// 1. Instantiation.
const sizes = quick ? [0, 64 * 1024, MiB, 16 * MiB] : [0, 64 * 1024, MiB, 16 * MiB, 64 * MiB, 256 * MiB];
const scenarios: (() => Scenario)[] = [
  ...sizes.map((s) => () => synthetic(s)),
  ...(quick ? [] : [sparse, tinySegments]),
  ...realModules().map((s) => () => s),
];
const rows: InstRow[] = [];
for (const make of scenarios) {
  const s = make();
  log(`instantiation: ${s.name} ...`);
  const budgetMs = quick ? 300 : s.dataBytes >= 64 * MiB ? 3000 : 1000;
  const result = compareInstantiation(s.bytes, { imports: s.imports, touch: s.touch, budgetMs, inline: true, raw: true });
  rows.push({ scenario: s.name, kind: s.kind, dataBytes: s.dataBytes, result });
}

// 2. Memory, in child processes.
interface MemRow {
  mode: string;
  n: number;
  k: number;
  rss: number;
  pss: number;
}
const child = (mode: string, n: number, k: number): MemRow => {
  const out = execFileSync(process.execPath, ['--expose-gc', join(here, 'memory-child.js'), mode, String(n), String(k)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
    // A fixed mmap threshold: glibc then returns large freed blocks (the
    // module's bytes) at once, instead of at some later point during the
    // measurement, which made the baseline drift by tens of MiB.
    env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072' },
  });
  return JSON.parse(out) as MemRow;
};
const NATIVE_MAX = 100;
const counts = quick ? [1, 10, 100] : [1, 10, 100, 1000];
const memRows: MemRow[] = [];
for (const n of counts) {
  log(`memory: ${n} live instances ...`);
  if (n <= NATIVE_MAX) memRows.push(child('native', n, 1));
  memRows.push(child('engine', n, 1));
}
const perPage: MemRow[] = [];
for (const k of [0, 1, 16, 256]) {
  log(`memory: 100 instances writing ${k} pages ...`);
  perPage.push(child('engine', 100, k));
}

// 3. Reset cost against pages dirtied.
interface ResetRow {
  heap: string;
  pages: number;
  release: Timing;
}
const resetRows: ResetRow[] = [];
for (const [heapName, heapPages] of [
  ['16 MiB', 256],
  ['1 GiB', 16384],
] as const) {
  const bytes = buildModule({
    memories: [{ min: heapPages, export: 'mem' }],
    funcs: stdFuncs,
    data: [{ offset: 0, bytes: pseudoRandomBytes(MiB, 5) }],
  });
  // The work of a reset, timed inside release() (backgroundReset: false);
  // with background resets release() only queues it (timed too, below).
  const engine = new Engine({ memoryReuseLimit: 1 << 30, backgroundReset: false });
  const prepared = engine.prepare(bytes);
  for (const pages of [0, 1, 16, 256, 4096]) {
    log(`reset: ${heapName} heap, ${pages} pages dirtied ...`);
    const times: number[] = [];
    const iterations = quick ? 50 : pages >= 4096 ? 100 : 400;
    for (let i = 0; i < iterations + 5; i++) {
      const lease = prepared.instantiate();
      // Dirty pages from wasm (store8), as a tenant whose JS holds no view.
      const store8 = lease.exports['store8'] as (a: number, v: number) => void;
      for (let p = 0; p < pages; p++) store8(p * 4096, 1);
      const t0 = process.hrtime.bigint();
      lease.release();
      if (i >= 5) times.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    resetRows.push({ heap: heapName, pages, release: summarize(times) });
  }
  engine.close();
}
// release() with background resets (the default), in the steady state of
// a pooled loop (1 page dirtied, 16 MiB heap): the share of resets that
// went to the reset thread, and what release() cost the caller.
const queued = (() => {
  const engine = new Engine({ memoryReuseLimit: 1 << 30 });
  const prepared = engine.prepare(buildModule({ memories: [{ min: 256, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 0, bytes: pseudoRandomBytes(MiB, 5) }] }));
  const times: number[] = [];
  const warm = 2000;
  let before = engine.stats();
  for (let i = 0; i < (quick ? 2000 : 20000) + warm; i++) {
    if (i === warm) before = engine.stats();
    const lease = prepared.instantiate();
    (lease.exports['store8'] as (a: number, v: number) => void)(0, 1);
    const t0 = process.hrtime.bigint();
    lease.release();
    if (i >= warm) times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  const after = engine.stats();
  engine.close();
  const share = (after.backgroundResets - before.backgroundResets) / (after.resets - before.resets);
  return { release: summarize(times), share };
})();

// 4. Throughput on worker threads.
interface ThroughputRow {
  mode: string;
  threads: number;
  perSecond: number;
}
const throughput: ThroughputRow[] = [];
const ms = quick ? 500 : 2000;
for (const mode of ['native', 'engine', 'engine-inline'] as const) {
  for (const threads of [1, 2]) {
    log(`throughput: ${mode}, ${threads} thread(s) ...`);
    const counts = await Promise.all(
      Array.from(
        { length: threads },
        () =>
          new Promise<number>((resolve, reject) => {
            const w = new Worker(join(here, 'throughput-worker.js'), { workerData: { mode, ms } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    throughput.push({ mode, threads, perSecond: (counts.reduce((a, b) => a + b, 0) * 1000) / ms });
  }
}

// 5. Emscripten cold start.
log('cold start: sql.js and QuickJS ...');
const cold = await coldStart(quick ? 20 : 100);

// Output.
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${fmtBytes(totalmem())}, Linux ${safe(() => execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim())}, Node ${process.version}`;
const backend = rows[0]?.result.backend ?? 'unknown';
const cell = (t: Timing | undefined) => (t ? `${fmtUs(t.median)} / ${fmtUs(t.p99)}` : 'n/a');
const md: string[] = [];
md.push(`# wasm-cow benchmark results`, '');
md.push(`Machine: ${machine}. Backend: ${backend}. Command: \`npm run bench${quick ? ' -- --quick' : ''}\`.`, '');
md.push('## Instantiation (median / p99 per instance, each including one write into the data)', '');
md.push(
  '| module | active data | native | engine, fresh memory | engine, pooled | floor (V8, ready memory) | pooled vs native | pooled / floor | pooled, inline reset | inline / floor | raw access (lease.instance) | raw / pooled |',
);
md.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const t = r.result.timings;
  md.push(
    `| ${r.scenario} | ${label(r.dataBytes)} | ${cell(t.native)} | ${cell(t.fresh)} | ${cell(t.pooled)} | ${cell(t.floor)} | ` +
      `${r.result.speedup ? fmtRatio(r.result.speedup) + ' faster' : 'n/a'} | ${r.result.overFloor ? fmtRatio(r.result.overFloor) : 'n/a'} | ` +
      `${cell(t.inline)} | ${r.result.inlineOverFloor ? fmtRatio(r.result.inlineOverFloor) : 'n/a'} | ` +
      `${cell(t.raw)} | ${r.result.rawOverPooled ? fmtRatio(r.result.rawOverPooled) : 'n/a'} |`,
  );
}
for (const r of rows) {
  for (const variant of ['fresh', 'pooled'] as const) {
    const s = r.result.stats[variant];
    const native = s.nativeInstantiations['small-data'];
    if (native > 0) {
      md.push(
        '',
        `${r.scenario}, engine ${variant}: ${native} of ${s.instantiations} instantiations ran as V8 would (too little data for an image ` +
          'in a new memory to beat V8, and the memories were not reused; see PreparedModule.newMemory).',
      );
    }
  }
}
md.push(
  '',
  '"pooled" is the default: release() queues the reset to a background thread (one per Node.js thread, at idle priority) ' +
    'and returns; "pooled, inline reset" is `backgroundReset: false`, the reset done inside release(). ' +
    'Both measure the calling thread; the background reset uses a second core when one is idle. ' +
    'Both go through `lease.exports`, which release() revokes (the write stands for the module\'s own code: its store ' +
    'export, or for a real package a write the benchmark makes unseen; `lease.memoryBuffer()` would retire the memory). "raw access" touches the ' +
    'instance through `lease.instance.exports`, which it cannot revoke: each memory is retired at release and the next ' +
    'instance gets a new one (the image still mapped copy-on-write).',
);
md.push('', '## Memory: N live instances of the 16 MiB module, each having written one page', '');
md.push('| live instances | native RSS | native PSS | engine RSS | engine PSS |', '|---|---|---|---|---|');
for (const n of counts) {
  const nat = memRows.find((m) => m.mode === 'native' && m.n === n);
  const eng = memRows.find((m) => m.mode === 'engine' && m.n === n)!;
  md.push(
    `| ${n} | ${nat ? fmtBytes(nat.rss) : `not run (~${fmtBytes(n * 16 * MiB)})`} | ${nat ? fmtBytes(nat.pss) : 'not run'} | ${fmtBytes(eng.rss)} | ${fmtBytes(eng.pss)} |`,
  );
}
md.push('', `Native is measured up to ${NATIVE_MAX} instances; beyond that it would need about 16 MiB per instance.`, '');
md.push('Engine, 100 live instances, cost per instance against pages each wrote:', '');
md.push('| pages written | RSS per instance | PSS per instance |', '|---|---|---|');
for (const m of perPage) md.push(`| ${m.k} | ${fmtBytes(m.rss / m.n)} | ${fmtBytes(m.pss / m.n)} |`);
md.push('', '## Reset (release) cost against pages dirtied (median / p99)', '');
md.push(
  'Pages dirtied by the wasm code. A tenant whose JavaScript read `memory.buffer` also pays for V8\'s `memory.grow(0)`, ' +
    'which detaches that buffer: under a microsecond for small memories, tens of microseconds for GiB-sized ones.',
  '',
);
md.push('The work of a reset, timed inside `release()` with `backgroundReset: false`:', '');
md.push('| pages dirtied | 16 MiB heap | 1 GiB heap |', '|---|---|---|');
for (const pages of [0, 1, 16, 256, 4096]) {
  const a = resetRows.find((r) => r.heap === '16 MiB' && r.pages === pages)!;
  const b = resetRows.find((r) => r.heap === '1 GiB' && r.pages === pages)!;
  md.push(`| ${pages} | ${cell(a.release)} | ${cell(b.release)} |`);
}
md.push(
  '',
  `With background resets (the default), in a pooled loop (16 MiB heap, 1 page dirtied each time), ${(queued.share * 100).toFixed(0)}% of ` +
    `the resets were queued, and \`release()\` cost the caller ${cell(queued.release)}.`,
);
md.push('', '## Throughput: instantiate + call + release of the 16 MiB module, per second', '');
md.push('| threads | native | engine | ratio | engine, inline reset | ratio |', '|---|---|---|---|---|---|');
for (const threads of [1, 2]) {
  const n = throughput.find((t) => t.mode === 'native' && t.threads === threads)!;
  const e = throughput.find((t) => t.mode === 'engine' && t.threads === threads)!;
  const i = throughput.find((t) => t.mode === 'engine-inline' && t.threads === threads)!;
  md.push(
    `| ${threads} | ${n.perSecond.toFixed(0)} | ${e.perSecond.toFixed(0)} | ${fmtRatio(e.perSecond / n.perSecond)} | ` +
      `${i.perSecond.toFixed(0)} | ${fmtRatio(i.perSecond / n.perSecond)} |`,
  );
}
md.push('', 'On 2 cores with 2 busy threads no core is idle: the reset threads (idle priority) rarely run and the resets are done inline.');
md.push('', '## Emscripten cold start: fresh module instance to first result (median / p99)', '');
md.push('| work | native | wasm-cow | ratio (median) |', '|---|---|---|---|');
for (const c of cold) md.push(`| ${c.module} | ${cell(c.native)} | ${cell(c.engine)} | ${fmtRatio(c.native.median / c.engine.median)} faster |`);
md.push('');

const synth = rows.filter((r) => r.kind === 'synthetic' && r.dataBytes > 0 && r.scenario.startsWith('synthetic'));
const svg = lineChartSvg({
  title: 'Instantiation time against data size (median, log-log)',
  xLabel: 'active data',
  yLabel: 'time per instance (µs)',
  xFormat: label,
  yFormat: (v) => fmtUs(v),
  series: [
    { name: 'native WebAssembly.Instance', color: '#d62728', points: synth.map((r) => [r.dataBytes, r.result.timings.native?.median ?? NaN]) },
    { name: 'wasm-cow, fresh memory', color: '#ff7f0e', points: synth.map((r) => [r.dataBytes, r.result.timings.fresh?.median ?? NaN]) },
    { name: 'wasm-cow, pooled', color: '#1f77b4', points: synth.map((r) => [r.dataBytes, r.result.timings.pooled?.median ?? NaN]) },
    { name: 'wasm-cow, pooled, inline reset', color: '#2ca02c', points: synth.map((r) => [r.dataBytes, r.result.timings.inline?.median ?? NaN]) },
    { name: 'floor (V8, ready memory)', color: '#7f7f7f', points: synth.map((r) => [r.dataBytes, r.result.timings.floor?.median ?? NaN]) },
  ],
});

for (const p of [jsonPath, mdPath, svgPath]) mkdirSync(dirname(p), { recursive: true });
writeFileSync(
  jsonPath,
  JSON.stringify({ machine, backend, quick, instantiation: rows, memory: memRows, perPage, reset: resetRows, releaseQueued: queued, throughput, coldStart: cold }, null, 2),
);
writeFileSync(mdPath, md.join('\n'));
writeFileSync(svgPath, svg);
process.stdout.write(md.join('\n') + '\n');
log(`wrote ${mdPath}, ${jsonPath}, ${svgPath}`);

function safe(f: () => string): string {
  try {
    return f();
  } catch {
    return '?';
  }
}
