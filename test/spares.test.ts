/**
 * Spare memories (src/spares.ts): a pooled memory retired at release (it
 * grew, or was handed out) is replaced in idle time by a new memory holding
 * the same image, which the next tenant takes from the pool. Every tenant
 * must start exactly as natively: memory.size is the declared initial
 * size, contents are the module's data and zeros.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine, type BackendKind } from '../src/index.js';
import { BACKENDS, binding, digest, fns, leaseDigest, memoryOf } from './helpers/env.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from './helpers/wasm.js';
import { SPARES_PER_KEY } from '../src/spares.js';

const PAGE = 65536;
const idle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Two pages, data in both, may grow to 16. */
const bytes = buildModule({
  memories: [{ min: 2, max: 16, export: 'mem' }],
  funcs: stdFuncs,
  data: [
    { offset: 100, bytes: pseudoRandomBytes(9000, 7) },
    { offset: PAGE + 4000, bytes: pseudoRandomBytes(3000, 8) },
  ],
});
const native = new WebAssembly.Instance(new WebAssembly.Module(bytes));
const NATIVE_START = { size: fns(native.exports).size!(), digest: digest(memoryOf(native)) };

/** One tenant's work: it dirties image and zero pages, then grows (and writes the new pages). */
function work(exports: WebAssembly.Exports, grow: boolean): void {
  const f = fns(exports);
  f.store8!(150, 1);
  f.store8!(PAGE + 4100, 2);
  f.store8!(2 * PAGE - 1, 3);
  if (grow) {
    assert.equal(f.grow!(3), 2, 'grow returns the initial size');
    f.store8!(4 * PAGE + 5, 4);
  }
}

/** What a tenant starts with: memory.size and contents (read without handing the memory out). */
function start(lease: Parameters<typeof leaseDigest>[0]): { size: number; digest: string } {
  return { size: fns(lease.exports).size!(), digest: leaseDigest(lease) };
}

const modes = BACKENDS.flatMap((kind): { kind: BackendKind; background: boolean }[] =>
  kind === 'native' ? [{ kind, background: false }, { kind, background: true }] : [{ kind, background: false }],
);

for (const { kind, background } of modes) {
  const label = `${kind}${background ? ', background resets' : ''}`;
  const engine = (options: { maxIdle?: number } = {}): Engine =>
    new Engine({ backend: kind, backgroundReset: background, nativeWhenFaster: false, ...options });

  test(`a module that grows every run takes spares from the pool; every tenant equals native (${label})`, async () => {
    const e = engine();
    const m = e.prepare(bytes);
    const runs = 12;
    for (let i = 0; i < runs; i++) {
      const lease = m.instantiate();
      assert.deepEqual(start(lease), NATIVE_START, `tenant ${i} starts as natively`);
      work(lease.exports, true);
      lease.release();
      await idle(); // the turn that makes the spare
    }
    const s = e.stats();
    // The first tenant makes its memory; each later one takes the spare made after its predecessor grew.
    assert.equal(s.sparesUsed, runs - 1);
    assert.equal(s.pooledReuses, runs - 1);
    assert.equal(s.fastPathHits, runs - 1, 'a spare holds its image already: no system call at acquire');
    assert.equal(s.sparesMade, runs);
    assert.equal(s.memoriesCreated, runs + 1, 'the first tenant\'s memory and one spare per grown memory, no more');
    assert.equal(s.retiredMemories, runs, 'every grown memory retired');
    assert.equal(s.idleMemories, 1, 'one spare waits');
    e.close();
    assert.equal(e.stats().idleMemories, 0);
  });

  test(`a tight synchronous loop makes no spare and stays exact; the next idle turn makes a bounded stock (${label})`, async () => {
    const e = engine();
    const m = e.prepare(bytes);
    const runs = 20;
    for (let i = 0; i < runs; i++) {
      const lease = m.instantiate();
      assert.deepEqual(start(lease), NATIVE_START, `tenant ${i} starts as natively`);
      work(lease.exports, i % 3 !== 2); // most grow; every third is pooled as usual
      lease.release();
    }
    let s = e.stats();
    assert.equal(s.sparesMade, 0, 'no idle turn: no spare');
    assert.equal(s.sparesUsed, 0);
    const idleBefore = s.idleMemories;
    await idle();
    s = e.stats();
    assert.ok(s.sparesMade > 0, 'the idle turn made spares');
    assert.ok(s.idleMemories <= SPARES_PER_KEY, `at most ${SPARES_PER_KEY} idle memories of one size and image`);
    assert.ok(s.idleMemories >= idleBefore);
    // Tenants that take them, and the pooled ones, still start as natively.
    for (let i = 0; i < 2 * SPARES_PER_KEY; i++) {
      const lease = m.instantiate();
      assert.deepEqual(start(lease), NATIVE_START, `tenant ${i} after the idle turn`);
      work(lease.exports, false);
      lease.release();
    }
    assert.ok(e.stats().sparesUsed > 0);
    e.close();
  });

  test(`spares count against maxIdle; maxIdle 0 makes none; close() and dispose() drop those asked for (${label})`, async () => {
    const e = engine({ maxIdle: 2 });
    const m = e.prepare(bytes);
    const leases = Array.from({ length: 6 }, () => m.instantiate());
    for (const l of leases) work(l.exports, true);
    for (const l of leases) l.release();
    await idle();
    let s = e.stats();
    assert.equal(s.sparesMade, 2, 'up to maxIdle');
    assert.equal(s.idleMemories, 2);
    e.close();

    const none = engine({ maxIdle: 0 });
    const m0 = none.prepare(bytes);
    const l0 = m0.instantiate();
    work(l0.exports, true);
    l0.release();
    await idle();
    assert.equal(none.stats().sparesMade, 0);
    none.close();

    const closing = engine();
    const l1 = closing.prepare(bytes).instantiate();
    work(l1.exports, true);
    l1.release();
    closing.close(); // before the idle turn
    await idle();
    s = closing.stats();
    assert.equal(s.sparesMade, 0, 'nothing made after close()');
    assert.equal(s.idleMemories, 0);

    const disposing = engine();
    const md = disposing.prepare(bytes);
    const l2 = md.instantiate();
    work(l2.exports, true);
    l2.release();
    md.dispose(); // its image is gone: no spare for it
    await idle();
    assert.equal(disposing.stats().sparesMade, 0);
    assert.equal(disposing.stats().idleMemories, 0);
    disposing.close();
  });

  test(`one-shot instantiations (the register hook's and the drop-in's) take idle memories and spares made in idle time, never give them back (${label})`, async () => {
    const e = engine();
    const m = e.prepare(bytes);
    const oneShot = (): WebAssembly.Instance => m.instantiateUnpooledSync(undefined, (module, io) => new WebAssembly.Instance(module, io));
    const startOf = (i: WebAssembly.Instance) => ({ size: fns(i.exports).size!(), digest: digest(memoryOf(i)) });
    // A pooled tenant dirties its memory and releases it: reset, idle.
    const lease = m.instantiate();
    work(lease.exports, false);
    lease.release();
    let s = e.stats();
    const created = s.memoriesCreated;
    const kept: WebAssembly.Instance[] = [];
    const first = oneShot();
    assert.deepEqual(startOf(first), NATIVE_START, 'a reset pooled memory, taken by a one-shot tenant');
    s = e.stats();
    assert.equal(s.memoriesCreated, created, 'no memory made on the call');
    assert.equal(s.idleMemories, 0, 'taken out of the pool');
    work(first.exports, true);
    kept.push(first);
    await idle();
    assert.equal(e.stats().sparesMade, 0, 'the first one-shot instantiation asks for no spare (the module may never come again)');
    const second = oneShot();
    assert.deepEqual(startOf(second), NATIVE_START);
    assert.equal(e.stats().memoriesCreated, created + 1, 'none idle: the second makes its memory');
    work(second.exports, false);
    kept.push(second);
    for (let i = 0; i < 6; i++) {
      await idle(); // the turn that makes the spare asked for by the last one-shot
      assert.equal(e.stats().idleMemories, 1, `a spare waits before one-shot ${i}`);
      const made = e.stats().memoriesCreated;
      const inst = oneShot();
      assert.deepEqual(startOf(inst), NATIVE_START, `one-shot ${i} starts as natively`);
      assert.equal(e.stats().memoriesCreated, made, `one-shot ${i} made no memory`);
      assert.equal(e.stats().idleMemories, 0);
      work(inst.exports, i % 2 === 0);
      kept.push(inst);
    }
    s = e.stats();
    assert.equal(s.sparesUsed, 6);
    // A burst with no turn between: the first takes nothing (none idle), all make their own, all exact.
    for (let i = 0; i < 3; i++) assert.deepEqual(startOf(oneShot()), NATIVE_START);
    assert.equal(e.stats().memoriesCreated, s.memoriesCreated + 3);
    // The one-shot tenants' memories were never handed to anyone else.
    assert.equal(new Uint8Array((kept[0]!.exports['mem'] as WebAssembly.Memory).buffer)[150], 1);
    for (const k of kept) assert.equal(new Uint8Array((k.exports['mem'] as WebAssembly.Memory).buffer)[PAGE + 4100], 2);
    e.close();
  });

  test(`a memory handed out is replaced by a spare; the old one keeps its tenant's data (${label})`, async () => {
    const e = engine();
    const m = e.prepare(bytes);
    const lease = m.instantiate();
    const held = lease.exports['mem'] as WebAssembly.Memory; // handed out: retired at release
    work(lease.exports, false);
    lease.release();
    await idle();
    assert.equal(e.stats().sparesMade, 1);
    const next = m.instantiate();
    assert.deepEqual(start(next), NATIVE_START);
    assert.equal(e.stats().sparesUsed, 1);
    assert.equal(new Uint8Array(held.buffer)[150], 1, 'the handed-out memory is left as its tenant left it');
    next.release();
    e.close();
  });
}

if (process.platform === 'linux') {
  test('spares share the module image: no memfd is made for them', async () => {
    const b = binding();
    const e = new Engine({ backend: 'native', nativeWhenFaster: false });
    const m = e.prepare(bytes);
    const first = m.instantiate();
    const open = b.openImages();
    first.release();
    for (let i = 0; i < 5; i++) {
      const l = m.instantiate();
      work(l.exports, true);
      l.release();
      await idle();
    }
    assert.equal(b.openImages(), open);
    const s = e.stats();
    assert.ok(s.sparesMade >= 5 && s.pooledReuses >= 4, JSON.stringify(s));
    e.close();
  });
}

test('spareMemories is validated, and false makes no spares', async () => {
  assert.throws(() => new Engine({ spareMemories: 1 as unknown as boolean }), { code: 'ERR_WASM_COW_INVALID_ARGUMENT' });
  const e = new Engine({ spareMemories: false, nativeWhenFaster: false });
  const m = e.prepare(bytes);
  for (let i = 0; i < 3; i++) {
    const lease = m.instantiate();
    assert.deepEqual(start(lease), NATIVE_START);
    work(lease.exports, true);
    lease.release();
    await idle();
  }
  const s = e.stats();
  assert.deepEqual([s.sparesMade, s.sparesUsed, s.pooledReuses, s.memoriesCreated], [0, 0, 0, 3]);
  e.close();
});
