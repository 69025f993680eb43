/**
 * The drop-in instantiate() through a prepared module when the engine fails
 * before V8 is called (an injected mmap failure while the image is mapped
 * into the new memory, as ENOMEM near vm.max_map_count would make it):
 * natively the call succeeds, so the drop-in must too (V8 instantiates the
 * kept module, as the register hook falls back on 'register-engine-error'),
 * and count why. V8's own errors (a LinkError) still reach the caller.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { digest, fns, memoryOf } from './helpers/env.js';
import { buildModule, stdFuncs } from './helpers/wasm.js';

// Must be set before the addon loads: it reads it once.
process.env['WASM_COW_FAULT_INJECTION'] = '1';
const { dropInSettled, getDefaultEngine, instantiate } = await import('../src/index.js');
const { loadBinding } = await import('../src/native/binding.js');

const linux = process.platform === 'linux';
const DATA = new Uint8Array(1 << 20).map((_, i) => (i * 13 + 5) & 0xff || 1);
/** Enough data that the drop-in's prepared module maps an image into each new memory. */
const BYTES = buildModule({
  importFuncs: [{ module: 'env', name: 'f', params: [], results: [] }],
  memories: [{ min: 20, max: 40, export: 'mem' }],
  funcs: stdFuncs,
  data: [{ offset: 4096, bytes: DATA }],
});
const imports = { env: { f: () => {} } };

const settle = async () => {
  await tick();
  await tick();
  await dropInSettled();
};

test('drop-in instantiate(): an engine failure before V8 runs falls back to V8 (counted), never rejects where V8 succeeds', { skip: !linux && 'native backend only' }, async () => {
  const b = loadBinding().binding!;
  const native = await WebAssembly.instantiate(BYTES, imports);
  for (let call = 0; call < 3; call++) {
    await instantiate(BYTES, imports);
    await settle();
  }
  const engine = getDefaultEngine();
  const before = engine.stats();
  await instantiate(BYTES, imports);
  assert.equal(engine.stats().instantiations, before.instantiations + 1, 'the call went through the prepared module');
  await settle(); // the spare that call asked for is made now, not during the calls below

  // Calls take the spare memories made in idle time (no mmap on their
  // path) while there are some: so many calls at once (no turn of the event
  // loop between them, so no spare is made meanwhile) that some must make
  // a memory, and the first of those meets the failure.
  b.setFault('mmap', 0);
  let results: WebAssembly.WebAssemblyInstantiatedSource[];
  try {
    results = await Promise.all(Array.from({ length: 12 }, () => instantiate(BYTES, imports)));
  } finally {
    b.setFault(null);
  }
  for (const result of results) {
    assert.equal(digest(memoryOf(result.instance)), digest(memoryOf(native.instance)), 'each instance as V8 makes it');
    assert.equal(fns(result.instance.exports).load8!(4096), DATA[0]);
  }
  assert.equal(engine.stats().fallbacks['dropin-engine-error'], 1, 'counted');

  // V8's own errors are still the caller's to see.
  await assert.rejects(instantiate(BYTES, { env: { f: 1 } } as never), (e) => e instanceof WebAssembly.LinkError);
  // And the next call goes through the prepared module again.
  const again = engine.stats().instantiations;
  await instantiate(BYTES, imports);
  assert.equal(engine.stats().instantiations, again + 1);
});
