/**
 * One image per content across worker threads (issue 11, item 4): 4 worker
 * threads each hold 50 live instances of one module (each instance has
 * written 1 page), natively and through the engine; the main thread
 * measures the process. Each mode runs in a fresh child process, modes
 * alternating, medians of `--samples` (default 3).
 *
 * Columns: growth of RSS and PSS (smaps_rollup) over the baseline taken
 * before the workers start (so the 4 isolates count in both modes);
 * RssShmem growth (image pages mapped in the process); the memfd images
 * open (count, and their allocated size: Shmem, page cache that no
 * process's RSS shows until mapped); and RSS + Shmem = RSS growth + the
 * images' bytes not already counted as mapped (max(0, image bytes -
 * RssShmem growth)).
 *
 * With `--wasm FILE`, the module is that file (a real package's, e.g.
 * node_modules/esbuild-wasm/esbuild.wasm; its function imports are stubbed:
 * nothing runs, the instances are only made) and the page each instance
 * writes is not written.
 *
 *   tsc -p tsconfig.json && node out/benchmarks/shared-images.js [--samples N] [--mib M | --wasm FILE]
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Engine, type Lease } from '../src/index.js';
import { fmtBytes, memoryUsage } from '../src/bench/measure.js';
import { synthetic } from './scenarios.js';

const WORKERS = 4;
const INSTANCES = 50;
const self = fileURLToPath(import.meta.url);

type Mode = 'native' | 'engine';
interface Sample {
  rss: number;
  pss: number;
  rssShmem: number;
  images: number;
  imageBytes: number;
  total: number;
}

if (!isMainThread) {
  // A worker: 50 live instances, each having written one page; then wait.
  const { mode, mib, wasm } = workerData as { mode: Mode; mib: number; wasm: string };
  const bytes = wasm ? new Uint8Array(readFileSync(wasm)) : synthetic(mib * 1024 * 1024).bytes;
  const keep: unknown[] = [];
  const touch = (e: WebAssembly.Exports) => {
    if (!wasm) (e['store8'] as (a: number, v: number) => void)(65536 + 100, 1);
  };
  // Function imports stubbed (nothing runs); any other kind of import is not supported here.
  const imports: Record<string, Record<string, unknown>> = {};
  for (const i of WebAssembly.Module.imports(new WebAssembly.Module(bytes))) {
    if (i.kind !== 'function') throw new Error(`import ${i.module}.${i.name} is a ${i.kind}`);
    (imports[i.module] ??= {})[i.name] = () => 0;
  }
  if (mode === 'native') {
    const module = new WebAssembly.Module(bytes);
    for (let i = 0; i < INSTANCES; i++) {
      const instance = new WebAssembly.Instance(module, imports as WebAssembly.Imports);
      touch(instance.exports);
      keep.push(instance);
    }
  } else {
    const engine = new Engine({ backend: 'native', maxInstances: INSTANCES + 1 });
    const prepared = engine.prepare(bytes);
    for (let i = 0; i < INSTANCES; i++) {
      const lease: Lease = prepared.instantiate(imports as WebAssembly.Imports);
      touch(lease.exports);
      keep.push(lease);
    }
  }
  for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.(); // the garbage of preparing goes (--expose-gc reaches workers)
  parentPort!.postMessage('ready');
  parentPort!.once('message', () => {
    parentPort!.close();
    keep.length = 0;
  });
} else if (process.argv[2] === 'child') {
  const mode = process.argv[3] as Mode;
  const mib = Number(process.argv[4]);
  const wasm = process.argv[5] ?? '';
  const rssShmem = (): number => Number(/^RssShmem:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
  const images = (): { count: number; bytes: number } => {
    let count = 0;
    let bytes = 0;
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (!readlinkSync(`/proc/self/fd/${fd}`).startsWith('/memfd:wasm-cow-image')) continue;
        count++;
        bytes += statSync(`/proc/self/fd/${fd}`).blocks * 512;
      } catch {
        // the fd of readdir itself
      }
    }
    return { count, bytes };
  };
  const settle = async () => {
    for (let i = 0; i < 4; i++) {
      (globalThis as { gc?: () => void }).gc?.();
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await new Promise((resolve) => new Worker('', { eval: true }).once('exit', resolve)); // Node's own first-worker setup
  await settle();
  const before = memoryUsage();
  const shmemBefore = rssShmem();
  const workers = Array.from({ length: WORKERS }, () => new Worker(self, { workerData: { mode, mib, wasm } }));
  await Promise.all(workers.map((w) => new Promise((resolve, reject) => (w.once('message', resolve), w.once('error', reject)))));
  await settle();
  const after = memoryUsage();
  const shmem = rssShmem() - shmemBefore;
  const image = images();
  const sample: Sample = {
    rss: after.rss - before.rss,
    pss: after.pss - before.pss,
    rssShmem: shmem,
    images: image.count,
    imageBytes: image.bytes,
    total: after.rss - before.rss + Math.max(0, image.bytes - shmem),
  };
  for (const w of workers) w.postMessage('end');
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once('exit', resolve))));
  process.stdout.write(JSON.stringify(sample));
} else {
  const arg = (name: string, dflt: number): number => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const samples = arg('--samples', 3);
  const mib = arg('--mib', 4);
  const w = process.argv.indexOf('--wasm');
  const wasm = w > 0 ? process.argv[w + 1]! : '';
  const got: Record<Mode, Sample[]> = { native: [], engine: [] };
  for (let s = 0; s < samples; s++) {
    for (const mode of s % 2 === 0 ? (['native', 'engine'] as const) : (['engine', 'native'] as const)) {
      const out = execFileSync(process.execPath, ['--expose-gc', self, 'child', mode, String(mib), wasm], { encoding: 'utf8' });
      got[mode].push(JSON.parse(out) as Sample);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const m = (mode: Mode, k: keyof Sample): number => median(got[mode].map((x) => x[k]));
  const what = wasm ? `${wasm} (instantiated only)` : `one module with ${mib} MiB of data (each instance wrote 1 page)`;
  console.log(`${WORKERS} worker threads x ${INSTANCES} live instances of ${what}; median of ${samples} processes per mode:\n`);
  console.log('| mode | RSS growth | PSS growth | RssShmem growth | memfd images | their Shmem | RSS + Shmem |');
  console.log('|---|---|---|---|---|---|---|');
  for (const mode of ['native', 'engine'] as const) {
    console.log(
      `| ${mode} | ${fmtBytes(m(mode, 'rss'))} | ${fmtBytes(m(mode, 'pss'))} | ${fmtBytes(m(mode, 'rssShmem'))} | ${m(mode, 'images')} | ${fmtBytes(m(mode, 'imageBytes'))} | ${fmtBytes(m(mode, 'total'))} |`,
    );
  }
  console.log(`\nengine / native, RSS + Shmem: ${(m('engine', 'total') / m('native', 'total')).toFixed(3)}`);
}
