/**
 * Real npm packages, natively against the register hook
 * (`node --require wasm-cow/register` for CommonJS apps, `--import` for ES
 * module ones; its default lazy policy), in the same run: a fresh child
 * process per sample and variant, variants alternating.
 * Per package:
 *  - cold start + work: the app of test/fixtures/register (the package's own
 *    glue, unmodified), wall time of the whole process;
 *  - first instantiation: compile + instantiate, in a fresh process, through
 *    the API the package's glue uses;
 *  - instantiate alone: `new WebAssembly.Instance(module, stub imports)`
 *    once the hook has prepared the module (or decided not to);
 *  - 50 live instances: RSS and PSS growth, and the images (memfd Shmem).
 *
 *   npm run bench:packages [-- --samples N]     (also part of `npm run bench`)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { fmtBytes, summarize, type Timing } from '../src/bench/measure.js';
import { buildModule, stdFuncs } from '../src/bench/builder.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..', '..');
const child = join(here, 'packages-child.js');
const apps = join(root, 'test', 'fixtures', 'register');

export interface PackageSpec {
  name: string;
  /** The app (test/fixtures/register) and its arguments: cold start + work. */
  app: string[];
  work: string;
  /** The package's modules, and the API its glue instantiates them with. */
  files: string[];
  api: 'async' | 'sync';
}

export const PACKAGES: PackageSpec[] = [
  {
    name: 'esbuild-wasm 0.28.2',
    app: ['esbuild-go.cjs', '1'],
    work: 'minify a TS file (Go glue, wasm_exec.js)',
    files: ['node_modules/esbuild-wasm/esbuild.wasm'],
    api: 'async',
  },
  {
    name: '@swc/wasm 1.16.18',
    app: ['swc.cjs'],
    work: 'transform a TS file (wasm-bindgen glue, at require time)',
    files: ['node_modules/@swc/wasm/wasm_bg.wasm'],
    api: 'sync',
  },
  {
    name: '@ffmpeg/core 0.12.10',
    app: ['ffmpeg.cjs', '1'],
    work: 'encode a lavfi sine to WAV (Emscripten glue)',
    files: ['node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.wasm'],
    api: 'async',
  },
  {
    name: 'web-tree-sitter 0.27.1 + tree-sitter-javascript 0.25.0',
    app: ['tree-sitter.mjs'],
    work: 'parse a JS file (main module + grammar side module)',
    files: ['node_modules/web-tree-sitter/web-tree-sitter.wasm', 'node_modules/tree-sitter-javascript/tree-sitter-javascript.wasm'],
    api: 'async',
  },
];

type Variant = 'native' | 'hook';
const VARIANTS: Variant[] = ['native', 'hook'];

/**
 * How the hook is loaded into `file`: `--require` (the CommonJS entry) for a
 * CommonJS app, which then never starts Node's ESM loader (an `--import`
 * costs such an app 4-10 ms of its cold start); `--import` for ES modules.
 */
export const hookFlag = (file: string): '--require' | '--import' => (file.endsWith('.cjs') ? '--require' : '--import');

function node(variant: Variant, args: string[], extra: string[] = [], flag: '--require' | '--import' = '--import'): string {
  const pre = variant === 'hook' ? [flag, 'wasm-cow/register'] : [];
  return execFileSync(process.execPath, [...extra, ...pre, ...args], {
    cwd: root, // where wasm-cow/register resolves (the package's own export)
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
    env: { ...process.env, WASM_COW_REGISTER: variant === 'hook' ? 'lazy' : '0', MALLOC_MMAP_THRESHOLD_: '131072' },
  });
}

export interface Pair<T> {
  native: T;
  hook: T;
}
interface MemResult {
  n: number;
  rss: number;
  pss: number;
  image: number;
  total: number;
  through: number;
  of: number;
}
export interface PackageRow {
  spec: PackageSpec;
  /** Cold start + work, ms per process. */
  coldStart: Pair<Timing>;
  /** First compile + instantiation in a fresh process, ms. */
  first: Pair<Timing>;
  /** Later instantiations (all the package's modules), ms. */
  later: Pair<Timing>;
  /** Of the hook's later instantiations, how many went through a prepared module. */
  laterThrough: { through: number; of: number };
  memory: Pair<MemResult>;
  /**
   * `WebAssembly.instantiate(bytes)` (native) against the drop-in
   * `instantiate(bytes)` of 'wasm-cow' (hook: not loaded), 12 calls on the
   * same bytes per process: call 1, call 2, call 3, calls 4-12, ms.
   */
  dropIn: Pair<{ call1: Timing; call2: Timing; call3: Timing; later: Timing }>;
}

interface DropInRun {
  calls: number[];
  counts?: { cachedCompiles: number; deferredCopies: number; deferredDropped: number };
}
export interface DropInCalls {
  call1: Timing;
  call2: Timing;
  call3: Timing;
  later: Timing;
}

const calls = (xs: DropInRun[]): DropInCalls => ({
  call1: summarize(xs.map((x) => x.calls[0]!)),
  call2: summarize(xs.map((x) => x.calls[1]!)),
  call3: summarize(xs.map((x) => x.calls[2]!)),
  later: summarize(xs.flatMap((x) => x.calls.slice(3))),
});

/** `WebAssembly.instantiate(bytes)` (native) against the drop-in (hook column), fresh processes alternating. */
function dropInRuns(samples: number, files: string[]): Pair<DropInRun[]> {
  return alternate(samples, (v) => JSON.parse(node('native', [child, 'dropin', v === 'hook' ? '1' : '0', ...files])) as DropInRun);
}

/** Modules timed through the drop-in only (besides PACKAGES): mostly code, and mostly data. */
export interface DropInRow {
  name: string;
  calls: Pair<DropInCalls>;
  /** How the drop-in's second calls went, summed over its processes. */
  counts: { cachedCompiles: number; deferredCopies: number; deferredDropped: number };
}

export function dropInBench(options: { samples?: number; log?: (m: string) => void } = {}): DropInRow[] {
  const samples = options.samples ?? 3;
  const log = options.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-dropin-'));
  try {
    // 16 MiB of data (one word in four non-zero), little code.
    const data = new Uint8Array(16 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4) data[i] = Math.imul(i, 0x9e3779b1) >>> 24 || 1;
    const synthetic = join(dir, 'data16.wasm');
    writeFileSync(synthetic, buildModule({ memories: [{ min: 300, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 65536, bytes: data }] }));
    const modules: [string, string][] = [
      ['sql.js 1.x (sql-wasm.wasm, mostly code)', join(root, 'node_modules/sql.js/dist/sql-wasm.wasm')],
      ['synthetic: 16 MiB of data, little code', synthetic],
    ];
    return modules.map(([name, file]) => {
      log(`drop-in: ${name} ...`);
      const runs = dropInRuns(samples, [file]);
      const counts = { cachedCompiles: 0, deferredCopies: 0, deferredDropped: 0 };
      for (const r of runs.hook) for (const k of Object.keys(counts) as (keyof typeof counts)[]) counts[k] += r.counts?.[k] ?? 0;
      return { name, calls: both(runs, calls), counts };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function dropInMarkdown(rows: DropInRow[], options: { samples?: number } = {}): string[] {
  const md = [
    '### Drop-in `instantiate(bytes)` on more modules',
    '',
    "The drop-in `instantiate(bytes, imports)` of 'wasm-cow' against `WebAssembly.instantiate(bytes, imports)`, 12 calls on the same bytes per " +
      `process, a turn of the event loop between (${options.samples ?? 3} processes per variant, alternating). "second calls": how the drop-in's ` +
      'second calls went (compiled from V8\'s cache and copied within the call, for bytes mostly of code; native and copied afterwards, for the rest).',
    '',
    '| module | call | native | drop-in | drop-in / native |',
    '|---|---|---|---|---|',
  ];
  for (const r of rows) {
    for (const k of ['call1', 'call2', 'call3', 'later'] as const) {
      const what = { call1: 'call 1', call2: 'call 2', call3: 'call 3', later: 'calls 4-12' }[k];
      md.push(`| ${r.name} | ${what} | ${msCell(r.calls.native[k])} | ${msCell(r.calls.hook[k])} | ${ratio(r.calls.hook[k].median, r.calls.native[k].median)} |`);
    }
    md.push(`| ${r.name} | second calls | | ${r.counts.cachedCompiles} from V8's cache, ${r.counts.deferredCopies} copied afterwards (${r.counts.deferredDropped} dropped) | |`);
  }
  return md;
}

/** Runs `f(variant)` `samples` times per variant, alternating which goes first. */
function alternate<T>(samples: number, f: (v: Variant) => T): Pair<T[]> {
  const out: Pair<T[]> = { native: [], hook: [] };
  for (let s = 0; s < samples; s++) {
    const order = s % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
    for (const v of order) out[v].push(f(v));
  }
  return out;
}

const both = <T, U>(p: Pair<T>, f: (x: T) => U): Pair<U> => ({ native: f(p.native), hook: f(p.hook) });

export function packageBench(
  options: { samples?: number; instSamples?: number; dropInSamples?: number; live?: number; log?: (m: string) => void } = {},
): PackageRow[] {
  const samples = options.samples ?? 7;
  const instSamples = options.instSamples ?? 5;
  const live = options.live ?? 50;
  const dropInSamples = options.dropInSamples ?? 3;
  const log = options.log ?? (() => {});
  const rows: PackageRow[] = [];
  for (const spec of PACKAGES) {
    log(`packages: ${spec.name}: cold start + work ...`);
    const [app, ...args] = spec.app;
    const cold = alternate(samples, (v) => {
      const t = performance.now();
      node(v, [join(apps, app!), ...args], [], hookFlag(app!));
      return performance.now() - t;
    });
    log(`packages: ${spec.name}: instantiation ...`);
    const files = spec.files.map((f) => join(root, f));
    const inst = alternate(instSamples, (v) => JSON.parse(node(v, [child, 'inst', spec.api, ...files])) as { first: number; later: number[]; through: number; of: number });
    log(`packages: ${spec.name}: ${live} live instances ...`);
    const mem = alternate(1, (v) => JSON.parse(node(v, [child, 'mem', String(live), ...files], ['--expose-gc'])) as MemResult);
    log(`packages: ${spec.name}: drop-in instantiate(bytes) ...`);
    const drop = dropInRuns(dropInSamples, files);
    rows.push({
      spec,
      coldStart: both(cold, summarize),
      first: both(inst, (xs) => summarize(xs.map((x) => x.first))),
      later: both(inst, (xs) => summarize(xs.flatMap((x) => x.later))),
      laterThrough: { through: inst.hook.reduce((a, x) => a + x.through, 0), of: inst.hook.reduce((a, x) => a + x.of, 0) },
      memory: both(mem, (xs) => xs[0]!),
      dropIn: both(drop, calls),
    });
  }
  return rows;
}

const msCell = (t: Timing): string => `${fmt(t.median)} / ${fmt(t.p99)} ms`;
const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
/** hook against native: "0.91x (faster)". */
const ratio = (hook: number, native: number): string => `${(hook / native).toFixed(2)}x`;

export function packagesMarkdown(rows: PackageRow[], options: { samples?: number; instSamples?: number; dropInSamples?: number; live?: number } = {}): string[] {
  const samples = options.samples ?? 7;
  const instSamples = options.instSamples ?? 5;
  const live = options.live ?? 50;
  const md: string[] = [];
  md.push(
    '## Real packages: native against the register hook',
    '',
    'Each package natively (`node app`) and under the hook (default lazy policy): `node --require wasm-cow/register app` for the ' +
      'CommonJS apps (.cjs: swc, esbuild, ffmpeg), `node --import wasm-cow/register app` for the ES module one (tree-sitter); the ' +
      'instantiation and memory measures run in an ES module child, under `--import`; ' +
      'in the same run, a fresh process per sample, variants alternating. Times are median / p99 (with few samples, p99 is ' +
      `the slowest). "hook / native" below 1 is faster. Cold start + work: the package's own glue, unmodified (${samples} ` +
      `processes per variant). First instantiation: compile + instantiate through the API the glue uses, in a fresh process ` +
      `(${instSamples} processes). Instantiate alone: \`new WebAssembly.Instance(module, imports)\` with stub imports, of a module ` +
      'compiled again from the same bytes after the first instantiation (as glue that runs again compiles it: the hook keeps no ' +
      "copy of bytes at their first sight, so a module compiled once stays V8's under the lazy policy), once the " +
      `hook has prepared the module or decided not to (40 per process, a turn of the event loop after every 4: under the hook, each takes a spare memory made in such a turn, holding the image, or makes one when none is left). ${live} live instances (of a module compiled twice, as above): each wrote one byte into page 0 of its ` +
      'memory; RSS and PSS (/proc/self/smaps_rollup) are the growth over a baseline taken after compiling (and preparing); ' +
      '"+ images" adds the memfd images (Shmem, once per module, outside RSS until mapped and read); "process RSS" is the total at the end. ' +
      "Drop-in: the drop-in `instantiate(bytes, imports)` of 'wasm-cow' (no hook) in the hook column, against " +
      `\`WebAssembly.instantiate(bytes, imports)\`, 12 calls on the same bytes per process, a turn of the event loop between (${options.dropInSamples ?? 3} processes).`,
  );
  for (const r of rows) {
    const m = r.memory;
    md.push(
      '',
      `### ${r.spec.name}: ${r.spec.work}`,
      '',
      '| measure | native | hook | hook / native |',
      '|---|---|---|---|',
      `| cold start + work (\`${hookFlag(r.spec.app[0]!)}\`) | ${msCell(r.coldStart.native)} | ${msCell(r.coldStart.hook)} | ${ratio(r.coldStart.hook.median, r.coldStart.native.median)} |`,
      `| first instantiation (${r.spec.api === 'async' ? 'WebAssembly.instantiate(bytes)' : 'new Module + new Instance'}) | ${msCell(r.first.native)} | ${msCell(r.first.hook)} | ${ratio(r.first.hook.median, r.first.native.median)} |`,
      `| instantiate alone${r.spec.files.length > 1 ? ` (${r.spec.files.length} modules)` : ''} | ${msCell(r.later.native)} | ${msCell(r.later.hook)} (${r.laterThrough.through} of ${r.laterThrough.of} prepared) | ${ratio(r.later.hook.median, r.later.native.median)} |`,
      `| RSS, ${live} live instances | ${fmtBytes(m.native.rss)} | ${fmtBytes(m.hook.rss)} | ${ratio(m.hook.rss, m.native.rss)} |`,
      `| RSS + images | ${fmtBytes(m.native.rss + m.native.image)} | ${fmtBytes(m.hook.rss + m.hook.image)} (${fmtBytes(m.hook.image)} of images) | ${ratio(m.hook.rss + m.hook.image, m.native.rss + m.native.image)} |`,
      `| PSS + images | ${fmtBytes(m.native.pss + m.native.image)} | ${fmtBytes(m.hook.pss + m.hook.image)} | ${ratio(m.hook.pss + m.hook.image, m.native.pss + m.native.image)} |`,
      `| process RSS at the end | ${fmtBytes(m.native.total)} | ${fmtBytes(m.hook.total)} | ${ratio(m.hook.total, m.native.total)} |`,
      ...(['call1', 'call2', 'call3', 'later'] as const).map((k) => {
        const d = r.dropIn;
        const what = { call1: 'call 1', call2: 'call 2', call3: 'call 3', later: 'calls 4-12' }[k];
        return `| drop-in \`instantiate(bytes)\`, ${what} | ${msCell(d.native[k])} | ${msCell(d.hook[k])} | ${ratio(d.hook[k].median, d.native[k].median)} |`;
      }),
    );
  }
  return md;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--samples');
  const samples = at >= 0 ? Number(args[at + 1]) : 5;
  const opts = { samples, instSamples: samples, dropInSamples: Math.min(3, samples), live: 50 };
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const rows = packageBench({ ...opts, log });
  const extra = dropInBench({ samples: opts.dropInSamples, log });
  process.stdout.write([...packagesMarkdown(rows, opts), '', ...dropInMarkdown(extra, { samples: opts.dropInSamples })].join('\n') + '\n');
}
