// A plain module with 16 MiB of initialised data, instantiated 10,000 times
// through wasm-cow, then (for comparison) 100 times natively.
//   node examples/plain.mjs
import { Engine } from 'wasm-cow';
import { buildModule, stdFuncs } from '../dist/bench/builder.js';

const data = new Uint8Array(16 * 1024 * 1024).map((_, i) => (i % 251) + 1);
const bytes = buildModule({
  memories: [{ min: 258, export: 'mem' }],
  funcs: stdFuncs, // load8, store8, size, grow, load32
  data: [{ offset: 65536, bytes: data }],
});

const engine = new Engine();
const prepared = engine.prepare(bytes);
console.log('backend:', engine.backend, '| memories:', JSON.stringify(prepared.memories));

let t0 = performance.now();
for (let i = 0; i < 10_000; i++) {
  const lease = prepared.instantiate();
  try {
    const { load8, store8 } = lease.exports;
    if (load8(65536 + i) !== data[i]) throw new Error('wrong data');
    store8(65536 + i, 0); // private to this tenant
  } finally {
    lease.release();
  }
}
const perCow = (performance.now() - t0) / 10_000;

const module = new WebAssembly.Module(bytes);
t0 = performance.now();
for (let i = 0; i < 100; i++) new WebAssembly.Instance(module).exports.store8(65536 + i, 0);
const perNative = (performance.now() - t0) / 100;

console.log(`wasm-cow: ${(perCow * 1000).toFixed(1)} us per instance; native: ${(perNative * 1000).toFixed(0)} us`);
console.log('stats:', engine.stats());
engine.close();
