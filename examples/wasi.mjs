// A WASI program (C, 8 MiB of initialised static data) run 100 times, each
// in a fresh instance whose memory starts as the program's image, mapped
// copy-on-write. node:wasi keeps the instance's memory object, which cannot
// be revoked, so each memory is retired after its run, never reused. Run it
// from the repository (it uses the test fixture
// test/fixtures/wasi/static-data.wasm).
//   node examples/wasi.mjs
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { WASI } from 'node:wasi';
import { Engine } from 'wasm-cow';

// Node 20's node:wasi fast API calls can crash the process when WASI
// programs run on many memories, with or without wasm-cow
// (nodejs/node#46777, #53087); this turns them off.
if (process.versions.node.startsWith('20.')) setFlagsFromString('--no-turbo-fast-api-calls');

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
