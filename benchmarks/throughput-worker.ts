/**
 * Worker for the throughput benchmark: instantiate + call + release
 * (background or inline resets), or native instantiate + call, for `ms`
 * milliseconds; posts the count.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Engine } from '../src/index.js';
import { synthetic } from './scenarios.js';

const { mode, ms } = workerData as { mode: 'native' | 'engine' | 'engine-inline'; ms: number };
const scenario = synthetic(16 * 1024 * 1024);
const call = (e: WebAssembly.Exports) => (e['load8'] as (a: number) => number)(65536 + 100);
let count = 0;
if (mode === 'native') {
  const module = new WebAssembly.Module(scenario.bytes);
  const end = performance.now() + ms;
  while (performance.now() < end) {
    call(new WebAssembly.Instance(module, {}).exports);
    count++;
  }
} else {
  const engine = new Engine({ backgroundReset: mode === 'engine' });
  const prepared = engine.prepare(scenario.bytes);
  prepared.instantiate().release();
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const lease = prepared.instantiate();
    call(lease.exports);
    lease.release();
    count++;
  }
  engine.close();
}
parentPort!.postMessage(count);
