/**
 * Child process for the memory benchmark: holds N live instances of the
 * 16 MiB module (native or engine), each having written K pages, and
 * prints the RSS and PSS growth over the baseline as JSON.
 *   node out/benchmarks/memory-child.js <native|engine> <N> <K>
 */
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
// Let the garbage of building the module and its image go first.
const gc = (globalThis as { gc?: () => void }).gc;
for (let i = 0; i < 4; i++) {
  gc?.();
  await new Promise((r) => setTimeout(r, 50));
}
const before = memoryUsage();
for (let i = 0; i < n; i++) touch(instantiate());
// Settle again: garbage made while instantiating goes, the live instances stay.
for (let i = 0; i < 4; i++) {
  gc?.();
  await new Promise((r) => setTimeout(r, 50));
}
const after = memoryUsage();
process.stdout.write(
  JSON.stringify({ mode, n, k, rss: after.rss - before.rss, pss: after.pss - before.pss, backend: engine?.backend ?? 'native' }),
);
