// A WASI program (C, 8 MiB of initialised static data) run 100 times, each
// in a fresh instance on a pooled memory. Run it from the repository (it
// uses the test fixture test/fixtures/wasi/static-data.wasm).
//   node examples/wasi.mjs
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';
import { Engine } from 'wasm-cow';

const wasm = readFileSync(new URL('../test/fixtures/wasi/static-data.wasm', import.meta.url));
const engine = new Engine();
const prepared = engine.prepare(wasm);

const t0 = performance.now();
for (let i = 0; i < 100; i++) {
  const wasi = new WASI({ version: 'preview1', args: ['static-data'], returnOnExit: true });
  const lease = prepared.instantiate(wasi.getImportObject());
  try {
    const code = wasi.start(lease.instance); // prints one line
    if (code !== 0) throw new Error(`exit ${code}`);
  } finally {
    lease.release();
  }
}
console.error(`100 runs in ${(performance.now() - t0).toFixed(0)} ms; stats:`, engine.stats());
engine.close();
