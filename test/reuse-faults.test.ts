/**
 * Instance reuse under injected faults, at every step of a cycle: the
 * memory's allocation (first instance), its reset at release (madvise,
 * PAGEMAP_SCAN, restoring image pages; inline and on the reset thread),
 * mapping the image, linking (a missing import) and the start function.
 * The engine must throw what V8 would or count the drop, keep its
 * accounting, and the next tenant must equal a fresh native instance.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { unexposedInstance } from '../src/lease.js';
import { referenceModule, reuseModule, stateOf } from './helpers/reuse-module.js';

// Must be set before the addon and src/fault.ts load: both read it once.
process.env['WASM_COW_FAULT_INJECTION'] = '1';
const { Engine } = await import('../src/index.js');
const { loadBinding } = await import('../src/native/binding.js');
const { injectMemoryAllocationFaults } = await import('../src/fault.js');

const linux = process.platform === 'linux';
const bytes = reuseModule(21);
const reference = referenceModule(bytes);
const importsFor = (t: number) => ({ env: { f: (x: number) => (x * 31 + t) | 0, k: 1234 } });
type Engine = InstanceType<typeof Engine>;
type Lease = ReturnType<ReturnType<Engine['prepare']>['instantiate']>;
const store = (l: Lease, a: number, v: number) => (l.exports['store'] as (a: number, v: number) => void)(a, v);

function assertFresh(lease: Lease, t: number, what: string): void {
  assert.deepEqual(stateOf(unexposedInstance(lease)), stateOf(new WebAssembly.Instance(reference, importsFor(t))), what);
}

/** Dirties pages 0..n-1 (data lies on several of them) through the module's own store. */
function dirty(lease: Lease, pages: number): void {
  for (let p = 0; p < pages; p++) store(lease, p * 4096 + 7, 0xee);
  (lease.exports['setg32'] as (v: number) => number)(77);
  (lease.exports['tset'] as (i: number, j: number) => void)(0, 2);
}

for (const backend of linux ? (['native', 'copy'] as const) : (['copy'] as const)) {
  test(`reuse: V8 fails to allocate the first instance’s memory: RangeError, nothing leaked, next instance exact (${backend})`, () => {
    const engine = new Engine({ backend, maxInstances: 1, backgroundReset: false });
    const p = engine.prepare(bytes, { reuse: true });
    injectMemoryAllocationFaults(1);
    assert.throws(() => p.instantiate(importsFor(0)), RangeError);
    assert.equal(engine.stats().liveLeases, 0);
    const a = p.instantiate(importsFor(1));
    assertFresh(a, 1, 'after the fault');
    dirty(a, 16);
    a.release();
    const b = p.instantiate(importsFor(2));
    assertFresh(b, 2, 'reused after the fault');
    assert.equal(engine.stats().instancesReused, 1);
    b.release();
    engine.close();
  });

  test(`reuse: a link error and a start trap leave the pool consistent (${backend})`, () => {
    const engine = new Engine({ backend, maxInstances: 1, backgroundReset: false });
    const p = engine.prepare(bytes, { reuse: true });
    p.instantiate(importsFor(0)).release();
    assert.throws(() => p.instantiate({ env: { k: 1234 } } as never), WebAssembly.LinkError);
    assert.throws(() => p.instantiate({ env: { f: () => { throw new Error('x'); }, k: 1234 } }), /x/);
    assert.equal(engine.stats().liveLeases, 0);
    const c = p.instantiate(importsFor(3));
    assertFresh(c, 3, 'after both');
    c.release();
    engine.close();
  });
}

if (linux) {
  const b = loadBinding().binding!;
  for (const backgroundReset of [false, true]) {
    for (const [step, options] of [
      ['madvise', { keepResident: 0 }],
      ['pagemap_scan', {}],
      ['restore', {}],
    ] as const) {
      test(`reuse: ${step} fails resetting a released instance’s memory: release does not throw, next tenant exact (background reset: ${backgroundReset})`, () => {
        const engine = new Engine({ backend: 'native', backgroundReset, ...options });
        const p = engine.prepare(bytes, { reuse: true });
        const a = p.instantiate(importsFor(1));
        dirty(a, 16);
        b.setFault(step);
        try {
          a.release();
          const next = p.instantiate(importsFor(2));
          b.setFault(null);
          assertFresh(next, 2, `after a failed ${step}`);
          const s = engine.stats();
          // With background resets the failure is found when the instance is next looked at, and an
          // instance still resetting is not waited for: only the inline case has exact counts.
          if (backgroundReset) {
            assert.ok(s.instancesReused <= 1);
          } else if (step === 'pagemap_scan') {
            assert.equal(s.instancesReused, 1, 'madvise instead: the instance is reused');
          } else {
            assert.equal(s.instancesReused, 0, 'the instance was dropped');
            assert.equal(s.reuseDeclined['reset-failed'], 1);
          }
          dirty(next, 3);
          next.release();
          const last = p.instantiate(importsFor(3));
          assertFresh(last, 3, 'the cycle after');
          last.release();
          assert.equal(engine.stats().liveLeases, 0);
        } finally {
          b.setFault(null);
          engine.close();
        }
      });
    }
  }

  test('reuse: mmap fails placing the image of the first instance: the error, nothing leaked, next instance exact', () => {
    const engine = new Engine({ backend: 'native', backgroundReset: false });
    const p = engine.prepare(bytes, { reuse: true });
    b.setFault('mmap');
    try {
      assert.throws(() => p.instantiate(importsFor(0)));
    } finally {
      b.setFault(null);
    }
    assert.equal(engine.stats().liveLeases, 0);
    const a = p.instantiate(importsFor(1));
    assertFresh(a, 1, 'after the fault');
    a.release();
    engine.close();
  });
}
