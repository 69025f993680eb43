/**
 * Injected faults on the paths that place images into imported memories and
 * that undo another module's mapping at reset: the result must still equal
 * native, the fallback be counted, and a memory that could not be restored
 * never be handed out again.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { digest, leaseMemory } from './helpers/env.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from './helpers/wasm.js';

// Must be set before the addon loads: it reads it once.
process.env['WASM_COW_FAULT_INJECTION'] = '1';
const { Engine } = await import('../src/index.js');
const { loadBinding } = await import('../src/native/binding.js');

const PAGE = 4096;
const linux = process.platform === 'linux';

const IMPORTING = buildModule({
  importMemory: { module: 'env', name: 'memory', min: 1, max: 8 },
  funcs: stdFuncs,
  data: [{ offset: 3 * PAGE + 7, bytes: pseudoRandomBytes(6 * PAGE, 21) }],
});
const IMPORTING_NATIVE = new WebAssembly.Module(IMPORTING);

if (linux) {
  const b = loadBinding().binding!;

  // pagemap_scan after 0 passes: before V8 (V8 writes the data); after 1: after V8 (the engine writes it).
  for (const [step, skip, reason] of [
    ['mmap', 0, 'mmap'],
    ['pagemap_scan', 0, 'unclassifiable'],
    ['pagemap_scan', 1, 'unclassifiable'],
  ] as const) {
    test(`${step} fails (after ${skip} passes) while placing an image into an imported memory: the data is written as V8 writes it, counted '${reason}'`, () => {
      const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
      const p = engine.prepare(IMPORTING);
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 8 });
      const nativeMemory = new WebAssembly.Memory({ initial: 1, maximum: 8 });
      b.setFault(step, skip);
      const lease = p.instantiate({ env: { memory } });
      b.setFault(null);
      new WebAssembly.Instance(IMPORTING_NATIVE, { env: { memory: nativeMemory } });
      assert.equal(digest(memory), digest(nativeMemory));
      assert.deepEqual(engine.stats().fallbacks, { [reason]: 1 });
      lease.release();
      engine.close();
    });
  }

  // Under the default policy the residency check (presentPages) scans first:
  // it cannot tell, so the check is skipped (a cost signal only) and the
  // placement goes on; a scan failing next leaves the data to V8.
  const LARGE = buildModule({
    importMemory: { module: 'env', name: 'memory', min: 8, max: 16 },
    funcs: stdFuncs,
    data: [{ offset: 65536, bytes: pseudoRandomBytes(100 * PAGE, 23) }],
  });
  const LARGE_NATIVE = new WebAssembly.Module(LARGE);
  for (const [skip, want] of [
    [0, {}],
    [1, { unclassifiable: 1 }],
  ] as const) {
    test(`default policy: pagemap_scan fails after ${skip} passes: the residency check or the placement gives up, the result equals native`, () => {
      const engine = new Engine({ backend: 'native' });
      const p = engine.prepare(LARGE);
      assert.equal(p.memories[0]!.excluded, null);
      const memory = new WebAssembly.Memory({ initial: 8, maximum: 16 });
      const nativeMemory = new WebAssembly.Memory({ initial: 8, maximum: 16 });
      b.setFault('pagemap_scan', skip);
      const lease = p.instantiate({ env: { memory } });
      b.setFault(null);
      new WebAssembly.Instance(LARGE_NATIVE, { env: { memory: nativeMemory } });
      assert.equal(digest(memory), digest(nativeMemory));
      assert.deepEqual(engine.stats().fallbacks, want);
      assert.equal(engine.stats().bytesMapped, skip === 0 ? 100 * PAGE : 0);
      lease.release();
      engine.close();
    });
  }

  test('mmap fails undoing another image mapped into a pooled memory: the memory is retired, the next tenant exact', () => {
    const A = buildModule({
      memories: [{ min: 1, max: 4, export: 'mem' }],
      funcs: stdFuncs,
      data: [{ offset: PAGE, bytes: pseudoRandomBytes(PAGE, 22) }],
    });
    const want = digest(new WebAssembly.Instance(new WebAssembly.Module(A)).exports['mem'] as WebAssembly.Memory);
    const engine = new Engine({ backend: 'native', backgroundReset: false, nativeWhenFaster: false });
    const a = engine.prepare(A);
    const importing = engine.prepare(IMPORTING);
    const lease = a.instantiate();
    const memory = leaseMemory(lease);
    importing.instantiate({ env: { memory } }).release();
    const retired = engine.stats().retiredMemories;
    b.setFault('mmap', 0);
    lease.release();
    b.setFault(null);
    assert.equal(engine.stats().retiredMemories, retired + 1, 'the reset failed: the memory is not reused');
    const next = a.instantiate();
    assert.notEqual(leaseMemory(next), memory);
    assert.equal(digest(leaseMemory(next)), want);
    next.release();
    engine.close();
  });
}
