/**
 * The register hook against native, on real modules: the cost of a
 * program's first instantiation (compile + instantiate, in a fresh process)
 * and of later instantiations, natively, under the lazy policy (default)
 * and under the eager one. Samples alternate between modes; medians.
 * Also the cost of recognising a module's bytes (ContentCache) against
 * hashing them, on a 10 MiB buffer.
 *
 *   npm run bench:register  [-- --samples N]
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ContentCache, fingerprint } from '../src/register/cache.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const child = fileURLToPath(new URL('./register-child.js', import.meta.url));
const samples = Number(process.argv[process.argv.indexOf('--samples') + 1] || 7);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const ms = (x: number): string => (x >= 10 ? x.toFixed(1) : x.toFixed(2));

// ---- recognising bytes ----
const ten = new Uint8Array(10 * 1024 * 1024);
const es = readFileSync(`${root}node_modules/esbuild-wasm/esbuild.wasm`);
ten.set(es.subarray(0, ten.length));
const time = (f: () => unknown): number => {
  const xs: number[] = [];
  for (let i = 0; i < 15; i++) {
    const a = performance.now();
    f();
    xs.push(performance.now() - a);
  }
  return median(xs);
};
const cache = new ContentCache();
const copy = ten.slice();
cache.add(copy, new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])));
console.log('Recognising a 10 MiB module (median of 15):\n');
console.log('| operation | time |\n|---|---|');
console.log(`| fingerprint (length + 2,304 sampled bytes) | ${ms(time(() => fingerprint(ten)))} ms |`);
console.log(`| ContentCache.get, a hit (fingerprint + memcmp) | ${ms(time(() => cache.get(ten)))} ms |`);
console.log(`| ContentCache.get, a miss | ${ms(time(() => cache.get(es)))} ms |`);
console.log(`| copy of the bytes (kept for a new content) | ${ms(time(() => ten.slice()))} ms |`);
console.log(`| sha256 | ${ms(time(() => createHash('sha256').update(ten).digest()))} ms |`);
console.log(`| sha1 | ${ms(time(() => createHash('sha1').update(ten).digest()))} ms |`);

// ---- first and later instantiations ----
const modules: [string, string][] = [
  ['esbuild-wasm 0.28.2 (13.3 MiB)', 'node_modules/esbuild-wasm/esbuild.wasm'],
  ['@swc/wasm 1.16.18 (17.2 MiB)', 'node_modules/@swc/wasm/wasm_bg.wasm'],
  ['@ffmpeg/core 0.12.10 (30.7 MiB)', 'node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.wasm'],
];
type Sample = { first: number; settle: number; later: number };
const modes = ['native', 'lazy', 'eager'] as const;
console.log(`\nFirst instantiation in a fresh process, and later ones (median of ${samples} processes each, modes alternating):\n`);
console.log('| module | API | native first | lazy first | eager first | native later | hook later (lazy) | eager later |');
console.log('|---|---|---|---|---|---|---|---|');
for (const [name, file] of modules) {
  for (const api of ['async', 'sync'] as const) {
    const got: Record<string, Sample[]> = { native: [], lazy: [], eager: [] };
    for (let s = 0; s < samples; s++) {
      for (const mode of modes) {
        const pre = mode === 'native' ? [] : ['--import', 'wasm-cow/register'];
        const out = execFileSync(process.execPath, [...pre, child, `${root}${file}`, api], {
          cwd: root,
          encoding: 'utf8',
          env: { ...process.env, WASM_COW_REGISTER: mode },
        });
        got[mode]!.push(JSON.parse(out) as Sample);
      }
    }
    const m = (mode: string, k: keyof Sample) => median(got[mode]!.map((x) => x[k]));
    const apiName = api === 'async' ? 'instantiate(bytes)' : 'new Module + Instance';
    console.log(
      `| ${name} | ${apiName} | ${ms(m('native', 'first'))} ms | ${ms(m('lazy', 'first'))} ms | ${ms(m('eager', 'first'))} ms | ` +
        `${ms(m('native', 'later'))} ms | ${ms(m('lazy', 'later'))} ms | ${ms(m('eager', 'later'))} ms |`,
    );
  }
}

// ---- end to end: the package apps of test/fixtures/register ----
const apps: [string, string, string[]][] = [
  ['@swc/wasm: transform a TS file', 'swc.cjs', []],
  ['esbuild-wasm (Go glue): minify a TS file', 'esbuild-go.cjs', ['1']],
  ['web-tree-sitter: parse a JS file', 'tree-sitter.mjs', []],
  ['@ffmpeg/core: 3 runs, sine to WAV', 'ffmpeg.cjs', ['3']],
  ['@ffmpeg/core: 10 runs, sine to WAV', 'ffmpeg.cjs', ['10']],
];
console.log(`\nEnd to end, a fresh process each (cold start + work; median of ${samples}, modes alternating):\n`);
console.log('| app | native | hook (lazy) | hook (eager) | lazy / native |');
console.log('|---|---|---|---|---|');
for (const [name, app, args] of apps) {
  const got: Record<string, number[]> = { native: [], lazy: [], eager: [] };
  for (let s = 0; s < samples; s++) {
    for (const mode of modes) {
      const pre = mode === 'native' ? [] : ['--import', 'wasm-cow/register'];
      const a = performance.now();
      execFileSync(process.execPath, [...pre, `${root}test/fixtures/register/${app}`, ...args], {
        cwd: root,
        env: { ...process.env, WASM_COW_REGISTER: mode },
        stdio: 'ignore',
      });
      got[mode]!.push(performance.now() - a);
    }
  }
  const m = (mode: string) => median(got[mode]!);
  console.log(`| ${name} | ${ms(m('native'))} ms | ${ms(m('lazy'))} ms | ${ms(m('eager'))} ms | ${(m('lazy') / m('native')).toFixed(2)} |`);
}
