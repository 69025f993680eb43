/**
 * Child process for the memory benchmark: holds N live instances of the
 * 16 MiB module (native or engine), each having written K pages, and
 * prints as JSON the RSS and PSS growth over the baseline, and what the
 * images cost apart from that: the baseline is taken after the image is
 * built, and an image is a memfd whose pages live in Shmem (page cache),
 * not in any process's RSS until mapped. So also:
 *   imageBytes  the memfds' allocated size (fstat st_blocks, through
 *               /proc/self/fd), once per imaged memory of a module;
 *   imageCount  how many such memfds the process holds;
 *   rssShmem    RssShmem (/proc/self/status) at the end: the image pages
 *               mapped in this process (the read-only view each image
 *               keeps, and image pages the memories map and have read);
 *               part of RSS; rssShmemDelta is its growth over the baseline.
 *   node out/benchmarks/memory-child.js <native|engine> <N> <K>
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { Engine, type Lease } from '../src/index.js';
import { memoryUsage } from '../src/bench/measure.js';
import { synthetic } from './scenarios.js';

const [mode = 'engine', nArg = '1', kArg = '1'] = process.argv.slice(2);
const n = Number(nArg);
const k = Number(kArg);
let scenario: { bytes: Uint8Array<ArrayBuffer> } | null = synthetic(16 * 1024 * 1024);
const store8 = (e: WebAssembly.Exports) => e['store8'] as (a: number, v: number) => void;
const touch = (e: WebAssembly.Exports) => {
  for (let p = 0; p < k; p++) store8(e)(65536 + p * 4096, 1);
};

const keep: unknown[] = [];
let engine: Engine | null = null;
let instantiate: () => WebAssembly.Exports;
if (mode === 'native') {
  const module = new WebAssembly.Module(scenario!.bytes);
  instantiate = () => {
    const i = new WebAssembly.Instance(module, {});
    keep.push(i);
    return i.exports;
  };
} else {
  engine = new Engine({ maxInstances: n + 1 });
  const prepared = engine.prepare(scenario!.bytes);
  prepared.instantiate().release(); // build the image before the baseline
  instantiate = () => {
    const l: Lease = prepared.instantiate();
    keep.push(l);
    return l.exports;
  };
}
scenario = null;

/** The memfd images this process holds open: count and allocated bytes. */
function images(): { count: number; bytes: number } {
  let count = 0;
  let bytes = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (!readlinkSync(`/proc/self/fd/${fd}`).startsWith('/memfd:wasm-cow-image')) continue;
      const st = statSync(`/proc/self/fd/${fd}`);
      count++;
      bytes += st.blocks * 512;
    } catch {
      // the fd of readdir itself, or one closed meanwhile
    }
  }
  return { count, bytes };
}
/** RssShmem of this process, bytes (0 where /proc/self/status lacks it). */
function rssShmem(): number {
  try {
    return Number(/^RssShmem:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}
// Let the garbage of building the module and its image go first.
const gc = (globalThis as { gc?: () => void }).gc;
for (let i = 0; i < 4; i++) {
  gc?.();
  await new Promise((r) => setTimeout(r, 50));
}
const before = memoryUsage();
const shmemBefore = rssShmem();
for (let i = 0; i < n; i++) touch(instantiate());
// Settle again: garbage made while instantiating goes, the live instances stay.
for (let i = 0; i < 4; i++) {
  gc?.();
  await new Promise((r) => setTimeout(r, 50));
}
const after = memoryUsage();
const shmemAfter = rssShmem();
const image = images();
process.stdout.write(
  JSON.stringify({
    mode,
    n,
    k,
    rss: after.rss - before.rss,
    pss: after.pss - before.pss,
    imageBytes: image.bytes,
    imageCount: image.count,
    rssShmem: shmemAfter,
    rssShmemDelta: shmemAfter - shmemBefore,
    backend: engine?.backend ?? 'native',
  }),
);
