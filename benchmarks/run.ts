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
import { fmtBytes, fmtRatio, fmtUs, fmtVersus, summarize, type Timing } from '../src/bench/measure.js';
import { lineChartSvg } from '../src/bench/svg.js';
import { Engine } from '../src/index.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from '../src/bench/builder.js';
import { coldStart } from './cold-start.js';
import { snapshotBench, snapshotTable } from './snapshot.js';
import { reuseBench, reuseMarkdown } from './reuse.js';
import { dropInBench, dropInMarkdown, packageBench, packagesMarkdown } from './packages.js';
import { label, realModules, sparse, synthetic, tinySegments, type Scenario } from './scenarios.js';
import { parseModule } from '../src/binary/reader.js';
import type { EngineStats } from '../src/stats.js';

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
  /** The module's exports (the floor instantiates them too: V8's cost grows with them). */
  exports: string[];
  /** The module imports its memory (the caller's): wasm-cow pools none of it. */
  importsMemory: boolean;
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
  const parsed = parseModule(s.bytes);
  const exports = parsed.exports.map((e) => e.name);
  const importsMemory = parsed.imports.some((i) => i.kind === 'memory');
  rows.push({ scenario: s.name, kind: s.kind, dataBytes: s.dataBytes, exports, importsMemory, result });
}

// 2. Memory, in child processes.
interface MemRow {
  mode: string;
  n: number;
  k: number;
  rss: number;
  pss: number;
  /** The images' memfds (allocated bytes, Shmem), once per imaged memory of the module: outside rss/pss. */
  imageBytes: number;
  imageCount: number;
  /** RssShmem at the end, and its growth over the baseline (part of rss). */
  rssShmem: number;
  rssShmemDelta: number;
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

// 6. Snapshots against Wizer (benchmarks/snapshot.ts).
log('snapshots: the WASI fixture to its first result, five ways ...');
const snapshots = snapshotBench(quick);

// 7. Instance reuse (benchmarks/reuse.ts): reuse against pooled, native and the floor.
const reuse = reuseBench(quick, log);

// 8. Real npm packages, native against the register hook, in child processes.
const packageOptions = { samples: quick ? 2 : 11, instSamples: quick ? 2 : 3, dropInSamples: quick ? 1 : 3, live: 50 };
const packages = packageBench({ ...packageOptions, log });
const dropIns = dropInBench({ samples: packageOptions.dropInSamples, log });

// Output.
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${fmtBytes(totalmem())}, Linux ${safe(() => execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim())}, Node ${process.version}`;
const backend = rows[0]?.result.backend ?? 'unknown';
const cell = (t: Timing | undefined) => (t ? `${fmtUs(t.median)} / ${fmtUs(t.p99)}` : 'n/a');
const md: string[] = [];
md.push(`# wasm-cow benchmark results`, '');
md.push(`Machine: ${machine}. Backend: ${backend}. Command: \`npm run bench${quick ? ' -- --quick' : ''}\`.`, '');
md.push('## Instantiation (median / p99 per instance, each including one write into the data)', '');
md.push(
  '| module | active data | exports | native | engine, fresh memory | engine, pooled | floor (V8, ready memory) | pooled vs native | pooled / floor | ' +
    'pooled: resets on the background thread | pooled, inline reset | inline / floor | raw access (lease.instance) | raw / pooled |',
);
md.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
/** Instantiations an engine ran as V8 would (its policy; all reasons). */
const asV8 = (s: EngineStats | undefined): number => (s ? Object.values(s.nativeInstantiations).reduce((a, b) => a + b, 0) : 0);
/** A cell, marked where the engine's policy ran some of its instantiations as V8 would. */
const engineCell = (t: Timing | undefined, s: EngineStats | undefined): string => {
  const n = asV8(s);
  if (!s || n === 0) return cell(t);
  return `${cell(t)} (${n === s.instantiations ? 'as V8' : `${((n / s.instantiations) * 100).toFixed(0)}% as V8`})`;
};
const share = (r: InstRow): string => {
  const s = r.result.stats.pooled;
  if (s.resets > 0) return `${((s.backgroundResets / s.resets) * 100).toFixed(0)}%`;
  return r.importsMemory ? 'n/a (memory imported)' : 'n/a';
};
for (const r of rows) {
  const t = r.result.timings;
  const st = r.result.stats;
  // Nothing of the module imaged: every engine cell is V8's own instantiation of the original, plus the lease.
  const own = r.result.rewritten ? '' : ' (nothing imaged: V8\'s own + the lease)';
  md.push(
    `| ${r.scenario} | ${label(r.dataBytes)} | ${r.exports.length} | ${cell(t.native)} | ${engineCell(t.fresh, st.fresh)} | ${engineCell(t.pooled, st.pooled)} | ${cell(t.floor)} | ` +
      `${fmtVersus(r.result.speedup)}${own} | ${r.result.overFloor ? fmtRatio(r.result.overFloor) : 'n/a'} | ` +
      `${share(r)} | ${engineCell(t.inline, st.inline)} | ${r.result.inlineOverFloor ? fmtRatio(r.result.inlineOverFloor) : 'n/a'} | ` +
      `${engineCell(t.raw, st.raw)} | ${r.result.rawOverPooled ? fmtRatio(r.result.rawOverPooled) : 'n/a'} |`,
  );
}
const synthRows = rows.filter((r) => r.kind === 'synthetic');
const synthExports = synthRows[0]?.exports ?? [];
const sameExports = synthRows.every((r) => r.exports.join('\0') === synthExports.join('\0'));
md.push(
  '',
  '"floor" is V8 instantiating the module the engine instantiates (the rewritten one: its memories imported, its data ' +
    'segments empty) into a ready memory: the least any instantiation of that module can cost. It depends on the module, ' +
    'mostly on how many exports V8 makes (the "exports" column). ' +
    (synthExports.length && sameExports
      ? `The synthetic modules (${synthRows.map((r) => r.scenario).join('; ')}) each export ${synthExports.map((e) => `\`${e}\``).join(', ')} ` +
        '(one memory and five small functions) and import nothing: their floor is that of a tiny module. '
      : '') +
    "A real module's floor is its own, with stub imports (functions returning 0, globals, tables and memories of the declared types).",
);
const unimaged = rows.filter((r) => !r.result.rewritten);
if (unimaged.length) {
  md.push(
    '',
    `"nothing imaged" (${unimaged.map((r) => r.scenario).join(', ')}): the policy gives the module no image (\`wasm-cow inspect\` ` +
      'says why, and that it is slower through the engine): each engine instantiation is V8\'s own on the original module plus ' +
      'the lease, a few µs. Its "floor" is then the same work as "native"; ' +
      unimaged
        .map((r) => (r.result.timings.native && r.result.timings.floor ? `${r.scenario}: native ${cell(r.result.timings.native).split(' / ')[0]}, floor ${cell(r.result.timings.floor).split(' / ')[0]}` : ''))
        .filter(Boolean)
        .join('; ') +
      ' in this run: the difference between identical work is this run\'s noise for that module.',
  );
}
const policyNotes: string[] = [];
const VARIANT_NAME = { fresh: 'engine, fresh memory', pooled: 'engine, pooled', inline: 'pooled, inline reset', raw: 'raw access' } as const;
for (const r of rows) {
  for (const variant of ['fresh', 'pooled', 'inline', 'raw'] as const) {
    const s = r.result.stats[variant];
    if (!s || asV8(s) === 0) continue;
    const reasons = Object.entries(s.nativeInstantiations)
      .filter(([, n]) => n > 0)
      .map(([why, n]) => `${n} '${why}'`)
      .join(', ');
    policyNotes.push(`- ${r.scenario}, ${VARIANT_NAME[variant]}: ${asV8(s)} of ${s.instantiations} instantiations (${reasons})`);
  }
}
if (policyNotes.length) {
  md.push(
    '',
    'Cells marked "as V8" are instantiations the engine\'s policy ran as V8 would (the original module, in a memory V8 makes ' +
      "and fills: `stats().nativeInstantiations`), so they time V8's own path. 'small-data': no idle memory could be reused, " +
      "the module's memories were not coming back to the pool, and its data is too small for an image in a new memory to beat " +
      "V8's copy (PreparedModule.newMemory); 'unusable-image': the image could not be used. Counts include the warm-up:",
    '',
    ...policyNotes,
  );
}
const bySize = (bytes: number) => rows.find((r) => r.kind === 'synthetic' && r.scenario === `synthetic ${label(bytes)}`);
const r16 = bySize(16 * MiB);
const r256 = bySize(256 * MiB);
md.push(
  '',
  '"pooled" is the default: release() queues the reset to a background thread (one per Node.js thread, at idle priority) ' +
    'and returns; "pooled, inline reset" is `backgroundReset: false`, the reset done inside release(). ' +
    'Both measure the calling thread only. The pooled figure holds only while a core is idle for the reset thread: ' +
    '"resets on the background thread" is the share of this run\'s pooled resets that got there; when none is idle the ' +
    'engine resets inline, release() takes longer, and the cycle costs about what "pooled, inline reset" shows. Take that ' +
    'column as the number for a busy machine. A module that imports its memory (the glue ' +
    "makes it: quickjs, pglite) gets its image mapped into the caller's memory, which wasm-cow does not pool: no reset at all.",
  '',
  'The cycle is not the same at every size: a reset finds the dirty pages with `PAGEMAP_SCAN` over the whole memory, ' +
    'which takes longer the larger the range, and the background thread falls behind once a reset takes longer than an ' +
    'instantiation' +
    (rows.some((r) => r.scenario.startsWith('sparse')) ? ' (the sparse module: 512 MiB).' : '.') +
    (r16 && r256
      ? ` In this run: 16 MiB ${cell(r16.result.timings.pooled)} pooled, ${cell(r16.result.timings.inline)} inline; ` +
        `256 MiB ${cell(r256.result.timings.pooled)} pooled, ${cell(r256.result.timings.inline)} inline.`
      : ''),
  '',
  'Both go through `lease.exports`, which release() revokes (the write stands for the module\'s own code: its store ' +
    'export, or for a real package a write the benchmark makes unseen; `lease.memoryBuffer()` would retire the memory). "raw access" touches the ' +
    'instance through `lease.instance.exports`, which it cannot revoke: each memory is retired at release and the next ' +
    'instance gets a new one (the image still mapped copy-on-write).',
);
md.push('', '## Memory: N live instances of the 16 MiB module, each having written one page', '');
md.push(
  '| live instances | native RSS | native PSS | engine RSS | engine PSS | engine image (memfd in Shmem, once per module) | engine PSS + image |',
  '|---|---|---|---|---|---|---|',
);
for (const n of counts) {
  const nat = memRows.find((m) => m.mode === 'native' && m.n === n);
  const eng = memRows.find((m) => m.mode === 'engine' && m.n === n)!;
  md.push(
    `| ${n} | ${nat ? fmtBytes(nat.rss) : `not run (~${fmtBytes(n * 16 * MiB)})`} | ${nat ? fmtBytes(nat.pss) : 'not run'} | ` +
      `${fmtBytes(eng.rss)} | ${fmtBytes(eng.pss)} | ${fmtBytes(eng.imageBytes)} (${eng.imageCount} memfd) | ${fmtBytes(eng.pss + eng.imageBytes)} |`,
  );
}
const natShmem = Math.max(0, ...memRows.filter((m) => m.mode === 'native').map((m) => m.rssShmemDelta));
const engShmem = Math.max(0, ...memRows.filter((m) => m.mode === 'engine').map((m) => m.rssShmemDelta));
const natImage = Math.max(0, ...memRows.filter((m) => m.mode === 'native').map((m) => m.imageBytes));
md.push(
  '',
  'RSS and PSS are the growth over a baseline taken once the module was compiled and, for the engine, its image built. ' +
    'The image is not in them: it is a sealed memfd whose pages the kernel keeps in Shmem (page cache), in no ' +
    "process's RSS until they are mapped and read, once per imaged memory of a prepared module however many instances " +
    'use it. "engine image" is its allocated size (fstat of the memfd, through /proc/self/fd); "engine PSS + image" is ' +
    `what the engine costs in all. The read-only view each image keeps mapped (and image pages the memories mapped and read) ` +
    `appear as RssShmem: it grew by at most ${fmtBytes(engShmem)} for the engine, ${fmtBytes(natShmem)} for native, ` +
    `which holds ${natImage ? fmtBytes(natImage) + ' of' : 'no'} images.`,
  '',
  `Native is measured up to ${NATIVE_MAX} instances; beyond that it would need about 16 MiB per instance.`,
  '',
);
md.push(
  `Engine, 100 live instances, cost per instance against pages each wrote (not including the image, ${fmtBytes(perPage[0]?.imageBytes ?? 0)} once):`,
  '',
);
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
for (const c of cold) md.push(`| ${c.module} | ${cell(c.native)} | ${cell(c.engine)} | ${fmtVersus(c.native.median / c.engine.median)} |`);
md.push(
  '',
  'Each run starts from a compiled module and a fresh copy of the glue (`emscriptenAdapter` on the wasm-cow side), after a turn of the ' +
    'event loop, as a server between two requests; native and wasm-cow runs alternate. The glue keeps the raw instance and its memory, ' +
    'so each wasm-cow memory is retired at release: the next run takes a spare made in that turn (a new memory already holding the ' +
    'image). QuickJS imports its memory from the glue: it gets no image (too little data to beat V8\'s copy in an imported memory), and ' +
    'wasm-cow runs it as V8 does.',
);
md.push('', '## Snapshots against Wizer: the WASI fixture (a 30 ms init) to its first result', '');
md.push(...snapshotTable(snapshots));
md.push(
  '',
  `test/fixtures/snapshot/dictionary.c; Wizer 10.0.0. RSS / PSS: growth per live instance over ${snapshots.instances} instances, ` +
    'each after its first result (child processes). "snapshot": prepared.snapshot(lease) after _initialize() and init().',
  '',
);
md.push('## Instance reuse (median / p99 per cycle)', '');
md.push(...reuseMarkdown(reuse), '');
md.push(...packagesMarkdown(packages, packageOptions), '', ...dropInMarkdown(dropIns, { samples: packageOptions.dropInSamples }), '');

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
  JSON.stringify({ machine, backend, quick, instantiation: rows, memory: memRows, perPage, reset: resetRows, releaseQueued: queued, throughput, coldStart: cold, snapshots, reuse, packages, dropIns }, null, 2),
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
