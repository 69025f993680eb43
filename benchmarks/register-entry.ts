/**
 * Cold start + work of the CommonJS package apps (test/fixtures/register)
 * natively, under `node --import wasm-cow/register` (the ESM entry) and
 * under `node --require wasm-cow/register` (the CommonJS entry), default
 * lazy policy: a fresh process per sample, the three variants in rotating
 * order, wall time of the whole process. What it shows: the part of the
 * hook's end-to-end cost that is Node's ESM loader starting for `--import`
 * in a program that is otherwise CommonJS.
 *
 *   node out/benchmarks/register-entry.js [--samples N] [app ...]
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { summarize, type Timing } from '../src/bench/measure.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..', '..');
const apps = join(root, 'test', 'fixtures', 'register');

type Variant = 'native' | 'import' | 'require';
const VARIANTS: Variant[] = ['native', 'import', 'require'];

const APPS: Record<string, string[]> = {
  'swc.cjs': ['swc.cjs'],
  'ffmpeg.cjs': ['ffmpeg.cjs', '1'],
  'esbuild-go.cjs': ['esbuild-go.cjs', '1'],
};

function once(variant: Variant, app: string[]): number {
  const pre = variant === 'native' ? [] : [`--${variant}`, 'wasm-cow/register'];
  const t = performance.now();
  execFileSync(process.execPath, [...pre, join(apps, app[0]!), ...app.slice(1)], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
    env: { ...process.env, WASM_COW_REGISTER: variant === 'native' ? '0' : 'lazy' },
  });
  return performance.now() - t;
}

export function entryBench(samples: number, names: string[]): { app: string; t: Record<Variant, Timing> }[] {
  return names.map((name) => {
    const app = APPS[name]!;
    const xs: Record<Variant, number[]> = { native: [], import: [], require: [] };
    for (const v of VARIANTS) once(v, app); // warm the page cache
    for (let s = 0; s < samples; s++) {
      const order = VARIANTS.map((_, i) => VARIANTS[(i + s) % VARIANTS.length]!);
      for (const v of order) xs[v].push(once(v, app));
    }
    return { app: name, t: { native: summarize(xs.native), import: summarize(xs.import), require: summarize(xs.require) } };
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--samples');
  const samples = at >= 0 ? Number(args[at + 1]) : 15;
  const names = args.filter((a, i) => a in APPS && args[i - 1] !== '--samples');
  const rows = entryBench(samples, names.length > 0 ? names : Object.keys(APPS));
  const cell = (t: Timing): string => `${t.median.toFixed(1)} / ${t.p99.toFixed(1)} ms`;
  const lines = [
    `| app (${samples} processes each) | native | --import | --require | --import / native | --require / native |`,
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.app} | ${cell(r.t.native)} | ${cell(r.t.import)} | ${cell(r.t.require)} | ${(r.t.import.median / r.t.native.median).toFixed(3)}x | ${(r.t.require.median / r.t.native.median).toFixed(3)}x |`,
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
