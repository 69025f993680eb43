/**
 * Conditional images: position-independent data (segments at an imported
 * global, resolved per instantiation) and images mapped into imported
 * memories when untouched. Every instance must equal a native one.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/index.js';
import { BACKENDS, digest, fns, leaseDigest, outcome } from './helpers/env.js';
import { buildModule, pseudoRandomBytes, stdFuncs, type ModuleSpec } from './helpers/wasm.js';

const picSpec: ModuleSpec = {
  importGlobals: [
    { module: 'env', name: '__memory_base' },
    { module: 'env', name: 'second' },
  ],
  memories: [{ min: 4, max: 8, export: 'mem' }],
  funcs: stdFuncs,
  data: [
    { offset: 16, bytes: [7, 7, 7] },
    { offset: { global: 0 }, bytes: pseudoRandomBytes(9000, 1) },
    { offset: { global: 1 }, bytes: pseudoRandomBytes(300, 2) },
  ],
};
const PIC = buildModule(picSpec);
const PIC_NATIVE = new WebAssembly.Module(PIC);

for (const backend of BACKENDS) {
  test(`position-independent data: an image per base, equal to native (${backend})`, () => {
    // Inline resets: one memory serves every tenant, so the fast-path count below is exact.
    // nativeWhenFaster off: every base gets an image, even the first time it is seen.
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    const p = engine.prepare(PIC);
    assert.equal(p.memories[0]!.condition, 'position-independent');
    const bases = [1024, 65536 + 17, 1024, 5000, 1024];
    for (const base of bases) {
      for (const g of [base, new WebAssembly.Global({ value: 'i32', mutable: false }, base)]) {
        const imports = { env: { __memory_base: g, second: base + 20000 } };
        const native = new WebAssembly.Instance(PIC_NATIVE, imports);
        const lease = p.instantiate(imports);
        assert.equal(leaseDigest(lease), digest(native.exports['mem'] as WebAssembly.Memory), `base ${base}`);
        fns(lease.exports).store8!(base + 3, 0);
        lease.release();
      }
    }
    assert.equal(engine.stats().imagesBuilt, 3, 'one image per distinct base');
    assert.ok(engine.stats().fastPathHits >= 4);
    assert.notEqual(p.memories[0]!.image, null);
    engine.close();
  });

  test(`position-independent data out of bounds, or a bad import: exactly native (${backend})`, () => {
    const engine = new Engine({ backend });
    const p = engine.prepare(PIC);
    const cases: unknown[] = [
      { env: { __memory_base: 4 * 65536 - 100, second: 0 } }, // segment runs past the end: traps
      { env: { __memory_base: 0, second: -1 } },
      { env: { second: 0 } },
      { env: { __memory_base: 'x', second: 0 } },
      { env: { __memory_base: 1n, second: 0 } },
      {},
    ];
    for (const imports of cases) {
      const want = outcome(() => new WebAssembly.Instance(PIC_NATIVE, imports as WebAssembly.Imports));
      assert.notEqual(want, 'ok');
      assert.equal(outcome(() => p.instantiate(imports as WebAssembly.Imports)), want, JSON.stringify(imports, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)));
    }
    assert.equal(engine.stats().liveLeases, 0);
    // Still fine afterwards.
    const lease = p.instantiate({ env: { __memory_base: 1024, second: 50000 } });
    assert.equal(fns(lease.exports).load8!(16), 7);
    lease.release();
    engine.close();
  });
}

const importedSpec = (start?: boolean): ModuleSpec => ({
  importMemory: { module: 'env', name: 'memory', min: 2, max: 10 },
  funcs: [...stdFuncs, ...(start ? [{ body: [] }] : [])],
  start: start ? stdFuncs.length : undefined,
  data: [
    { offset: 4096 + 5, bytes: pseudoRandomBytes(10000, 3) },
    { offset: 70000, bytes: [1, 2, 3] },
  ],
});

test('imported memory: the image is mapped into an untouched memory', () => {
  const bytes = buildModule(importedSpec());
  // Small data: imaged only with the cost model off (it would leave it to V8).
  const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
  const p = engine.prepare(bytes);
  assert.equal(p.memories[0]!.condition, 'imported-untouched');
  for (let i = 0; i < 3; i++) {
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 10 });
    const nativeMemory = new WebAssembly.Memory({ initial: 2, maximum: 10 });
    new Uint8Array(memory.buffer)[100_000] = 9; // beyond the data's pages: still untouched where it matters
    new Uint8Array(nativeMemory.buffer)[100_000] = 9;
    const before = engine.stats().bytesMapped;
    const lease = p.instantiate({ env: { memory } });
    new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory: nativeMemory } });
    assert.equal(digest(memory), digest(nativeMemory));
    assert.ok(engine.stats().bytesMapped > before, 'mapped, not copied by V8');
    lease.release();
    assert.equal(digest(memory), digest(nativeMemory), 'release leaves a caller’s memory alone');
  }
  assert.notEqual(p.memories[0]!.image, null);
  engine.close();
});

test('imported memory: touched, with a start function, asynchronous, or failing: exactly native', async () => {
  // Small data: imaged only with the cost model off (it would leave it to V8).
  const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
  const check = async (spec: ModuleSpec, prepareMemory: (m: WebAssembly.Memory) => void, extra: Record<string, unknown>, async_: boolean) => {
    const bytes = buildModule(spec);
    const p = engine.prepare(bytes);
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 10 });
    const nativeMemory = new WebAssembly.Memory({ initial: 2, maximum: 10 });
    prepareMemory(memory);
    prepareMemory(nativeMemory);
    const imports = { env: { memory, ...extra } };
    const want = outcome(() => new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory: nativeMemory, ...extra } }));
    let got: string;
    if (async_) {
      try {
        (await p.instantiateAsync(imports)).release();
        got = 'ok';
      } catch (e) {
        got = `${(e as Error).constructor.name}: ${(e as Error).message}`;
      }
    } else {
      got = outcome(() => p.instantiate(imports).release());
    }
    assert.equal(got.replace(/^(\w+): WebAssembly\.\w+\(\)/, '$1'), want.replace(/^(\w+): WebAssembly\.\w+\(\)/, '$1'));
    assert.equal(digest(memory), digest(nativeMemory));
    return p;
  };
  // A byte inside the data's pages: the segments are written on that page, the image mapped on the others.
  const touched = await check(importedSpec(), (m) => (new Uint8Array(m.buffer)[4096 + 20_000] = 5), {}, false);
  assert.notEqual(touched.memories[0]!.image, null, 'the zero pages got the image');
  // Every page of the data's span holds something: all written, as V8 would.
  const full = await check(importedSpec(), (m) => new Uint8Array(m.buffer).fill(5), {}, false);
  assert.equal(full.memories[0]!.image, null, 'nothing mapped');
  // A start function: mapped; a start function that traps keeps the data, as natively.
  const started = await check(importedSpec(true), () => {}, {}, false);
  assert.notEqual(started.memories[0]!.image, null);
  const trapping = importedSpec(true);
  trapping.funcs = [...stdFuncs, { body: [0x00] }];
  await check(trapping, () => {}, {}, false);
  // Asynchronous: fall back.
  await check(importedSpec(), () => {}, {}, true);
  // A link error after the memory: nothing written, as natively.
  await check({ ...importedSpec(), importFuncs: [{ module: 'env', name: 'f' }] }, () => {}, { f: 5 }, false);
  // Too small a memory for the data (the image does not fit): V8's trap.
  await check({ ...importedSpec(), data: [{ offset: 2 * 65536 - 1, bytes: [1, 2] }] }, () => {}, {}, false);
  engine.close();
});
