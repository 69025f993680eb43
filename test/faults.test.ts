/**
 * Injected faults: every native step (memfd creation, sizing, writing,
 * sealing, mmap, madvise) and V8 failing to allocate a memory. The engine
 * must fall back or throw a clear error, keep the pool consistent, never
 * leak a file descriptor and never hand out a memory with wrong contents.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { bufferOf } from '../src/memory.js';
import { ResetQueue } from '../src/backend/reset-queue.js';
import { digest, leaseMemory, memoryOf } from './helpers/env.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from './helpers/wasm.js';

// Must be set before the addon and src/fault.ts load: both read it once.
process.env['WASM_COW_FAULT_INJECTION'] = '1';
const { Engine, NativeError } = await import('../src/index.js');
const { loadBinding } = await import('../src/native/binding.js');
const { injectMemoryAllocationFaults } = await import('../src/fault.js');

const linux = process.platform === 'linux';
const openFds = () => readdirSync('/proc/self/fd').length;

const moduleWith = (seed: number) =>
  buildModule({
    memories: [{ min: 2, max: 4, export: 'mem' }],
    funcs: stdFuncs,
    data: [{ offset: 4096, bytes: pseudoRandomBytes(3 * 4096 + 10, seed) }],
  });
const A = moduleWith(1);
const B = moduleWith(2);
const nativeDigest = (bytes: Uint8Array<ArrayBuffer>) => digest(memoryOf(new WebAssembly.Instance(new WebAssembly.Module(bytes))));
const DA = nativeDigest(A);
const DB = nativeDigest(B);

test('fault injection is on in this file', { skip: !linux && 'native backend only' }, () => {
  assert.equal(loadBinding().binding!.faultInjection, true);
});

if (linux) {
  const b = loadBinding().binding!;

  for (const [step, skip] of [
    ['memfd_create', 0],
    ['ftruncate', 0],
    ['write', 0],
    ['write', 2],
    ['seal', 0],
  ] as const) {
    test(`${step} fails (after ${skip} passes): the image falls back to bytes, contents exact, no fd leaked`, () => {
      const engine = new Engine({ backend: 'native' });
      const fds = openFds();
      const images = b.openImages();
      const p = engine.prepare(A);
      b.setFault(step, skip);
      for (let i = 0; i < 3; i++) {
        const lease = p.instantiate();
        assert.equal(digest(leaseMemory(lease)), DA);
        new Uint8Array(leaseMemory(lease).buffer).fill(0xff, 4096, 4100);
        lease.release();
      }
      b.setFault(null);
      assert.equal(engine.stats().imageFallbacks, 1);
      assert.equal(b.openImages(), images);
      assert.equal(openFds(), fds);
      engine.close();
    });
  }

  test('mmap fails placing an image: NativeError, pool consistent, next instance exact', () => {
    const engine = new Engine({ backend: 'native', maxInstances: 1 });
    const p = engine.prepare(A);
    p.instantiate().release(); // build the image
    const q = engine.prepare(B);
    b.setFault('mmap');
    assert.throws(
      () => q.instantiate(),
      (e: unknown) => e instanceof NativeError && e.code === 'ERR_WASM_COW_NATIVE' && e.syscall === 'mmap' && /mapping|unmapping/.test(e.message),
    );
    assert.equal(engine.stats().liveLeases, 0);
    assert.ok(engine.stats().retiredMemories >= 1, 'the slot that failed is retired');
    for (const [prep, d] of [
      [q, DB],
      [p, DA],
      [q, DB],
    ] as const) {
      const lease = prep.instantiate();
      assert.equal(digest(leaseMemory(lease)), d);
      lease.release();
    }
    engine.close();
  });

  test('mmap fails on a fresh memory: NativeError, nothing leaked', () => {
    const engine = new Engine({ backend: 'native' });
    const p = engine.prepare(A);
    b.setFault('mmap');
    assert.throws(() => p.instantiate(), NativeError);
    const lease = p.instantiate();
    assert.equal(digest(leaseMemory(lease)), DA);
    lease.release();
    assert.equal(engine.stats().liveLeases, 0);
    engine.close();
  });

  for (const backgroundReset of [true, false]) {
    test(`madvise fails on reset: release does not throw, the memory is retired, next tenant exact (background reset: ${backgroundReset})`, () => {
      const engine = new Engine({ backend: 'native', keepResident: 0, backgroundReset });
      const p = engine.prepare(A);
      const lease = p.instantiate();
      new Uint8Array(bufferOf(leaseMemory(lease))).fill(0xee, 0, 65536); // unseen: no buffer lent
      b.setFault('madvise');
      lease.release();
      assert.equal(engine.stats().retiredMemories, 1);
      assert.equal(engine.stats().idleMemories, 0);
      const next = p.instantiate();
      assert.equal(digest(leaseMemory(next)), DA);
      next.release();
      engine.close();
    });
  }
}

if (linux) {
  const b = loadBinding().binding!;
  // Written unseen (no buffer lent): the reset may go to the background thread.
  const dirty = (lease: Parameters<typeof leaseMemory>[0], pages: number) => {
    const v = new Uint8Array(bufferOf(leaseMemory(lease)));
    for (let p = 0; p < pages; p++) v[p * 4096 + 7] = 0xee;
  };

  for (const backgroundReset of [true, false]) {
    test(`pagemap_scan fails on reset: madvise instead, next tenant exact (background reset: ${backgroundReset})`, () => {
      const engine = new Engine({ backend: 'native', backgroundReset });
      const p = engine.prepare(A);
      const lease = p.instantiate();
      dirty(lease, 3);
      b.setFault('pagemap_scan');
      lease.release();
      assert.equal(engine.stats().retiredMemories, 0, 'nothing failed that matters');
      assert.equal(engine.stats().backgroundResets, backgroundReset ? 1 : 0, 'reset where asked');
      const next = p.instantiate();
      assert.equal(digest(leaseMemory(next)), DA);
      next.release();
      engine.close();
    });

    test(`restoring image pages fails: release does not throw, the memory is retired, next tenant exact (background reset: ${backgroundReset})`, () => {
      const engine = new Engine({ backend: 'native', backgroundReset });
      const p = engine.prepare(A);
      const lease = p.instantiate();
      dirty(lease, 3); // pages 1 and 2 lie in the image
      b.setFault('restore');
      lease.release();
      assert.equal(engine.stats().retiredMemories, 1);
      const next = p.instantiate();
      assert.equal(digest(leaseMemory(next)), DA);
      next.release();
      engine.close();
    });
  }
}

for (const backend of linux ? (['native', 'copy'] as const) : (['copy'] as const)) {
  test(`V8 fails to allocate a memory: RangeError, pool consistent (${backend})`, () => {
    const engine = new Engine({ backend, maxInstances: 1 });
    const p = engine.prepare(A);
    injectMemoryAllocationFaults(1);
    assert.throws(() => p.instantiate(), RangeError);
    assert.equal(engine.stats().liveLeases, 0);
    const lease = p.instantiate();
    assert.equal(digest(leaseMemory(lease)), DA);
    lease.release();
    engine.close();
  });
}

if (linux) {
  test('a cell freed when its status says done, before the job tag does, is queued again: wait finds the new job', () => {
    const b = loadBinding().binding!;
    new Engine({ backend: 'native' }).close(); // the thread's queue exists
    const q = ResetQueue.get(b)!;
    const m = new WebAssembly.Memory({ initial: 1 });
    const v = new Uint8Array(bufferOf(m));
    // A second reset with real work (16 MiB to discard) on the same cell.
    const big = new WebAssembly.Memory({ initial: 256 });
    const bigView = new Uint8Array(bufferOf(big));
    for (let i = 0; i < 20; i++) {
      v[4096] = 1;
      bigView.fill(0xee);
      b.setFault('publish'); // the first job's done tag lags its status by 2 ms
      const first = q.begin(m, 65536, -1, 0, 0, 65536);
      assert.equal(typeof first, 'number');
      while (q.poll(first as number) === 'pending'); // done by its status: the cell is free
      const second = q.begin(big, 256 * 65536, -1, 0, 0, 0);
      assert.equal(second, first, 'the same cell, reused at once');
      const outcome = q.wait(second as number);
      assert.ok(outcome === 'done' || outcome === 'done-here', `round ${i}: ${outcome}`);
      assert.equal(v[4096], 0);
      assert.equal(b.residentPages(big, 0, 256 * 65536), 0, 'the second reset is done');
    }
    b.setFault(null);
  });
}
