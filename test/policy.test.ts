/**
 * The never-slower-than-native policy (src/policy.ts): the cost model's
 * choice for given inputs, the adaptive choice's decisions, and the engine
 * running a module as V8 would, counted with its reason. No timings.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { CheckStreak, COST, estimateFresh, fate, FreshChoice, type MadeMemory, pagesCovered, PROBE_EVERY, PROBE_MAX, SKIP_AFTER } from '../src/policy.js';
import { Engine, ReleasedInstanceError } from '../src/index.js';
import { BACKENDS, digest, fns, memoryOf } from './helpers/env.js';
import { buildModule, stdFuncs } from './helpers/wasm.js';

test('pagesCovered: distinct pages, overlaps and empty ranges counted once or not at all', () => {
  assert.equal(pagesCovered([], 4096), 0);
  assert.equal(pagesCovered([{ offset: 10, length: 0 }], 4096), 0);
  assert.equal(pagesCovered([{ offset: 4095, length: 2 }], 4096), 2);
  assert.equal(
    pagesCovered(
      [
        { offset: 8192, length: 100 },
        { offset: 0, length: 8192 },
        { offset: 100, length: 10 },
        { offset: 1 << 20, length: 1 },
      ],
      4096,
    ),
    4,
  );
});

test('estimateFresh: the model and its margin', () => {
  const per = COST.copyPerPageUs;
  const threshold = (COST.margin * COST.newMemoryOverheadUs) / per; // pages at break-even with the margin
  assert.equal(estimateFresh({ pages: 0, segments: 0 }).wins, false);
  assert.equal(estimateFresh({ pages: Math.floor(threshold) - 1, segments: 1 }).wins, false);
  assert.equal(estimateFresh({ pages: Math.ceil(threshold), segments: 1 }).wins, true);
  // 100,000 tiny segments on a few pages: the per-segment work counts.
  assert.equal(estimateFresh({ pages: 1, segments: 100_000 }).wins, true);
  assert.equal(estimateFresh({ pages: 1000, segments: 1 }, false).wins, false, 'a backend that copies saves nothing');
  const e = estimateFresh({ pages: 20, segments: 397 });
  assert.equal(e.savedUs, 20 * per + 397 * COST.copyPerSegmentUs);
  assert.equal(e.addedUs, COST.newMemoryOverheadUs);
  // The new memory's size adds, up to sizedPagesMax pages: sql.js's 20 pages of data in a 338-page memory do not win.
  const sql = estimateFresh({ pages: 20, segments: 397, memoryPages: 338 });
  assert.equal(sql.addedUs, COST.newMemoryOverheadUs + 338 * COST.perMemoryPageUs);
  assert.equal(sql.wins, false);
  assert.equal(estimateFresh({ pages: 20, segments: 397, memoryPages: 3 }).wins, true, 'the same data in a small memory wins');
  assert.equal(estimateFresh({ pages: 75, segments: 180, memoryPages: 256 }).wins, true, 'oniguruma: 75 pages of data in 256');
  const huge = estimateFresh({ pages: 512, segments: 512, memoryPages: 8193 });
  assert.equal(huge.addedUs, COST.newMemoryOverheadUs + COST.sizedPagesMax * COST.perMemoryPageUs, 'counted up to sizedPagesMax');
  assert.equal(huge.wins, true);
  assert.equal(estimateFresh({ pages: 20, segments: 1, memoryPages: 338 }, true, true).addedUs, COST.importedOverheadUs, 'an imported memory is not made');
});

test('FreshChoice: make memories while they come back; run natively once they do not, probing now and then', () => {
  const m = (state: MadeMemory['state'], uses: number): MadeMemory => ({ state, uses });
  const c = new FreshChoice();
  assert.equal(c.mayCreate(), true, 'nothing known: make one and see');
  const first = { state: 'leased', uses: 1 } as { state: MadeMemory['state']; uses: number };
  c.made(first);
  assert.equal(c.mayCreate(), true, 'still in its first lease: unknown');
  first.state = 'retired'; // released, and not pooled
  // Probes while memories keep being lost: after PROBE_EVERY native runs, then twice as many each time, up to PROBE_MAX.
  const expected: number[] = [];
  for (let at = 0, gap = PROBE_EVERY; expected.length < 10; gap = Math.min(2 * gap, PROBE_MAX)) expected.push((at += gap) - 1);
  const answers = Array.from({ length: expected.at(-1)! + 1 }, () => c.mayCreate());
  assert.deepEqual(
    answers.flatMap((a, i) => (a ? [i] : [])),
    expected,
    'probes back off',
  );
  assert.equal(expected.at(-1)! - expected.at(-2)!, PROBE_MAX, 'at most PROBE_MAX apart');
  c.made(m('resetting', 1)); // the probe's memory came back to the pool
  assert.equal(c.mayCreate(), true);
  c.made(m('retired', 1)); // lost again: probing starts over at PROBE_EVERY
  const again = Array.from({ length: PROBE_EVERY }, () => c.mayCreate());
  assert.deepEqual(
    again.flatMap((a, i) => (a ? [i] : [])),
    [PROBE_EVERY - 1],
  );
  c.made(m('resetting', 1));
  assert.equal(c.mayCreate(), true);
  c.made(m('retired', 1));
  assert.equal(c.mayCreate(), false, 'the newest known fate decides');
  c.made(m('retired', 5)); // served 5 tenants before it was retired: it did come back
  assert.equal(c.mayCreate(), true);
  c.made(m('leased', 1));
  assert.equal(c.mayCreate(), true, 'pending ones are skipped');
  // The policy holds memories weakly: one collected was dropped.
  assert.equal(fate(undefined), 'lost');
});

const SMALL = buildModule({ memories: [{ min: 2, max: 4, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 100, bytes: [7, 8, 9] }] });
const LARGE = buildModule({
  memories: [{ min: 4, export: 'mem' }],
  funcs: stdFuncs,
  data: [{ offset: 4096, bytes: new Uint8Array(64 * 1024).fill(3) }],
});

test('newMemory: the cost model decides per module', { skip: !BACKENDS.includes('native') && 'no native backend here' }, () => {
  const engine = new Engine({ backend: 'native' });
  assert.deepEqual(engine.prepare(SMALL).newMemory, {
    mode: 'adaptive',
    dataPages: 1,
    segments: 1,
    memoryPages: 2,
    savedUs: COST.copyPerPageUs + COST.copyPerSegmentUs,
    addedUs: COST.newMemoryOverheadUs + COST.perMemoryPageUs * 2,
  });
  assert.equal(engine.prepare(LARGE).newMemory?.mode, 'image');
  assert.equal(engine.prepare(LARGE).newMemory?.addedUs, COST.newMemoryOverheadUs + COST.perMemoryPageUs * 4);
  assert.equal(new Engine({ backend: 'copy' }).prepare(LARGE).newMemory?.mode, 'adaptive', 'the copy backend copies too');
  // The same data in a memory of 400 pages: a new memory of that size costs more than the copy saves.
  const inLarge = buildModule({ memories: [{ min: 400, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 4096, bytes: new Uint8Array(64 * 1024).fill(3) }] });
  assert.equal(engine.prepare(inLarge).newMemory?.mode, 'adaptive');
  // No memory supplied by the engine: no policy.
  const imported = buildModule({ importMemory: { module: 'env', name: 'm', min: 1 }, funcs: stdFuncs });
  assert.equal(engine.prepare(imported).newMemory, null);
  engine.close();
});

for (const backend of BACKENDS) {
  test(`a small-data module whose memories are not pooled runs as V8 would, counted (${backend})`, async () => {
    const engine = new Engine({ backend, maxIdle: 0 });
    const prepared = engine.prepare(SMALL);
    const native = new WebAssembly.Instance(new WebAssembly.Module(SMALL));
    for (let i = 0; i < 10; i++) {
      const lease = i % 2 ? await prepared.instantiateAsync() : prepared.instantiate();
      assert.equal(digest(memoryOf(lease.instance)), digest(memoryOf(native)));
      const store8 = fns(lease.exports).store8!;
      store8(100, 1);
      lease.release();
      assert.throws(() => store8(100, 1), ReleasedInstanceError);
      assert.throws(() => lease.instance, ReleasedInstanceError);
    }
    const s = engine.stats();
    assert.equal(s.memoriesCreated, 1, 'the first instantiation made a memory (and saw it retired)');
    assert.equal(s.instantiations, 10);
    assert.deepEqual(s.nativeInstantiations, { 'small-data': 9, 'unusable-image': 0 });
    assert.equal(s.liveLeases, 0);
    engine.close();
  });

  test(`one-shot instantiations of a small-data module (the register hook's), synchronous as asynchronous, run as V8 would, counted, with no spares (${backend})`, async () => {
    // hash-wasm's modules (2 pages, 4 KiB of data) under WASM_COW_REGISTER=eager: the synchronous
    // one-shot path mapped an image into a new memory (or a spare made for it) every time, where
    // the asynchronous one ran V8, measured 1.17x V8's time per `new WebAssembly.Instance` (1.5x the CPU).
    const engine = new Engine({ backend });
    const prepared = engine.prepare(SMALL);
    assert.equal(prepared.newMemory?.mode, 'adaptive');
    const native = new WebAssembly.Instance(new WebAssembly.Module(SMALL));
    for (let i = 0; i < 6; i++) {
      const instance =
        i % 2
          ? await prepared.instantiateUnpooled(undefined, (m, io) => WebAssembly.instantiate(m, io))
          : prepared.instantiateUnpooledSync(undefined, (m, io) => new WebAssembly.Instance(m, io));
      assert.equal(digest(memoryOf(instance)), digest(memoryOf(native)));
      await new Promise((resolve) => setImmediate(resolve)); // the turn in which a spare would be made
    }
    const s = engine.stats();
    assert.equal(s.instantiations, 6);
    assert.deepEqual(s.nativeInstantiations, { 'small-data': 6, 'unusable-image': 0 });
    assert.equal(s.memoriesCreated, 0, 'no memory made for an instance V8 does better');
    assert.equal(s.sparesMade, 0);
    engine.close();
  });

  test(`the same module pools its memories when they come back (${backend})`, () => {
    const engine = new Engine({ backend });
    const prepared = engine.prepare(SMALL);
    for (let i = 0; i < 20; i++) prepared.instantiate().release();
    const s = engine.stats();
    assert.deepEqual(s.nativeInstantiations, { 'small-data': 0, 'unusable-image': 0 });
    assert.ok(s.memoriesCreated <= 2 && s.pooledReuses >= 18, JSON.stringify(s));
    engine.close();
  });

  test(`a module with enough data uses new memories even unpooled, where images are mapped (${backend})`, () => {
    const engine = new Engine({ backend, maxIdle: 0 });
    const prepared = engine.prepare(LARGE);
    for (let i = 0; i < 5; i++) prepared.instantiate().release();
    const s = engine.stats();
    // The copy backend copies the image itself: nothing gained over V8's copy.
    assert.deepEqual(s.nativeInstantiations, { 'small-data': backend === 'native' ? 0 : 4, 'unusable-image': 0 });
    assert.equal(s.memoriesCreated, backend === 'native' ? 5 : 1);
    engine.close();
  });
}

test('an imported memory with too little data is left to V8, with the reason', { skip: !BACKENDS.includes('native') && 'no native backend here' }, () => {
  const spec = { importMemory: { module: 'env', name: 'memory', min: 2 }, funcs: stdFuncs, data: [{ offset: 70000, bytes: [9, 8] }] };
  const bytes = buildModule(spec);
  const engine = new Engine({ backend: 'native' });
  const p = engine.prepare(bytes);
  assert.equal(p.memories[0]!.excluded?.code, 'imported');
  assert.match(p.memories[0]!.excluded!.message, /its data \(1 page\) is too small for mapping it to beat V8's copy/);
  assert.equal(p.memories[0]!.condition, null);
  const memory = new WebAssembly.Memory({ initial: 2 });
  const native = new WebAssembly.Memory({ initial: 2 });
  p.instantiate({ env: { memory } }).release();
  new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory: native } });
  assert.equal(digest(memory), digest(native));
  assert.equal(engine.stats().bytesMapped, 0);
  // Enough data (about 4 MiB for an imported memory): imaged (conditionally).
  const big = engine.prepare(buildModule({ ...spec, importMemory: { module: 'env', name: 'memory', min: 80 }, data: [{ offset: 70000, bytes: new Uint8Array(4400 * 1024).fill(1) }] }));
  assert.equal(big.memories[0]!.condition, 'imported-untouched');
  // The cost model off: imaged whatever the size.
  const off = new Engine({ backend: 'native', nativeWhenFaster: false });
  assert.equal(off.prepare(bytes).memories[0]!.condition, 'imported-untouched');
  off.close();
  engine.close();
});

test('nativeWhenFaster: false images wherever it can; the option is validated', () => {
  const engine = new Engine({ maxIdle: 0, nativeWhenFaster: false });
  const p = engine.prepare(SMALL);
  assert.equal(p.newMemory?.mode, 'image');
  for (let i = 0; i < 5; i++) p.instantiate().release();
  assert.deepEqual(engine.stats().nativeInstantiations, { 'small-data': 0, 'unusable-image': 0 });
  assert.equal(engine.stats().memoriesCreated, 5);
  engine.close();
  assert.throws(() => new Engine({ nativeWhenFaster: 'yes' as unknown as boolean }), { code: 'ERR_WASM_COW_INVALID_ARGUMENT' });
});

test('CheckStreak: checks skipped after SKIP_AFTER failures in a row, one in PROBE_EVERY checked again', () => {
  const c = new CheckStreak();
  for (let i = 0; i < SKIP_AFTER; i++) {
    assert.equal(c.skip(), false);
    c.checked(false);
  }
  const answers = Array.from({ length: 2 * PROBE_EVERY }, () => c.skip());
  assert.equal(answers.filter((skip) => !skip).length, 2);
  c.checked(true); // a probe found the images usable again
  assert.equal(c.skip(), false);
});

test('an imported memory that keeps holding data: checks skipped, counted, exactly native', { skip: !BACKENDS.includes('native') && 'no native backend here' }, () => {
  const bytes = buildModule({
    importMemory: { module: 'env', name: 'memory', min: 80 },
    funcs: stdFuncs,
    // Enough data for the small-data gate to let it through (about 4 MiB for an imported memory).
    data: [{ offset: 4096, bytes: new Uint8Array(4400 * 1024).map((_, i) => i & 0xff || 1) }],
  });
  const engine = new Engine({ backend: 'native' });
  const p = engine.prepare(bytes);
  const memory = new WebAssembly.Memory({ initial: 80 });
  const native = new WebAssembly.Memory({ initial: 80 });
  const nativeModule = new WebAssembly.Module(bytes);
  const n = SKIP_AFTER + 1 + 2 * PROBE_EVERY;
  for (let i = 0; i < n; i++) {
    const lease = p.instantiate({ env: { memory } });
    fns(lease.exports).store8!(4096 + (i % 100), 0); // the tenant writes into the data
    fns(new WebAssembly.Instance(nativeModule, { env: { memory: native } }).exports).store8!(4096 + (i % 100), 0);
    lease.release();
  }
  // Natively, each instantiation wrote the data again over what the last tenant wrote.
  new WebAssembly.Instance(nativeModule, { env: { memory: native } });
  p.instantiate({ env: { memory } }).release();
  assert.equal(digest(memory), digest(native));
  const s = engine.stats();
  // The first was imaged (untouched memory); the next SKIP_AFTER checked and fell back; then all but the probes skipped.
  assert.equal(s.nativeInstantiations['unusable-image'], n + 1 - 1 - SKIP_AFTER - 2);
  engine.close();
});
