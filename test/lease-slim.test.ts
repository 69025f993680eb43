/**
 * Leases with no pooled memory (a module run as V8 would, or one that
 * defines no memory): the engine registers them for GC in batches
 * (EngineCore.watchUnpooled), so these check the live-lease accounting across a
 * batch boundary and the lease's revocation, on the slim lease.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine, ReleasedInstanceError } from '../src/index.js';
import { buildRaw } from './helpers/raw-wasm.js';
import { I32 } from './helpers/wasm.js';
import { collectLeases, gcChild } from './helpers/env.js';

/** (func (export "f") (result i32) i32.const 1): no memory, so no lease of it holds a pooled one. */
const noMemory = buildRaw({
  types: [{ params: [], results: [I32] }],
  funcs: [{ type: 0, body: [0x41, 1] }],
  exports: [{ name: 'f', kind: 0, index: 0 }],
});

test('leases with no pooled memory dropped in one synchronous run longer than a registration batch each free their slot after GC; one whose export is still held stays live', () => {
  const code = `
    import { Engine } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    const bytes = new Uint8Array(${JSON.stringify([...noMemory])});
    const engine = new Engine({ maxInstances: 400 });
    const p = engine.prepare(bytes);
    for (let i = 0; i < 300; i++) p.instantiate().exports.f(); // dropped, unreleased
    for (let i = 0; i < 50; i++) p.instantiate().release();
    const keep = p.instantiate().exports.f; // the lease dropped, its function kept
    const before = engine.stats().liveLeases;
    ${collectLeases('engine', 1)}
    console.log(JSON.stringify({ before, after: engine.stats().liveLeases, f: keep() }));`;
  const out = gcChild(code);
  assert.deepEqual(out, { before: 301, after: 1, f: 1 });
});

test('a lease with no pooled memory: exports, wrappers and accessors revoked at release, release() from inside a call, ReleasedInstanceError codes', () => {
  const engine = new Engine({ maxIdle: 0 });
  const p = engine.prepare(noMemory);
  const lease = p.instantiate();
  const exports = lease.exports;
  const f = exports.f as () => number;
  assert.equal(f(), 1);
  assert.equal(exports.f, f, 'a wrapper keeps its identity');
  assert.deepEqual(Object.keys(exports), ['f']);
  assert.equal(engine.stats().liveLeases, 1);
  lease.release();
  lease.release(); // idempotent
  assert.equal(engine.stats().liveLeases, 0);
  assert.equal(lease.released, true);
  const released = (e: unknown) => e instanceof ReleasedInstanceError && e.code === 'ERR_WASM_COW_RELEASED';
  assert.throws(() => f(), released);
  assert.throws(() => lease.exports, released);
  assert.throws(() => lease.instance, released);
  assert.throws(() => lease.memoryBuffer(), released);
  engine.close();
});

test('leases with no pooled memory released out of order, before and after their registration: counted once each, and a released one is not kept alive by those still waiting', () => {
  const code = `
    import { Engine } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    import { unexposedInstance } from ${JSON.stringify(new URL('../src/lease.js', import.meta.url).href)};
    const bytes = new Uint8Array(${JSON.stringify([...noMemory])});
    const engine = new Engine({ maxInstances: 400 });
    const p = engine.prepare(bytes);
    const out = {};
    // One synchronous run (no microtask until the await below): released leases between waiting ones.
    const made = [];
    for (let i = 0; i < 10; i++) made.push(p.instantiate());
    for (const i of [3, 0, 9, 5]) made[i].release();
    out.afterOutOfOrder = engine.stats().liveLeases;
    // A released lease whose neighbours on the list are still waiting: its exports (read, so the lease holds them) are collectable.
    // (A FinalizationRegistry rather than a WeakRef: a WeakRef keeps its target until the synchronous run ends.)
    let collected = false;
    const watcher = new FinalizationRegistry(() => { collected = true; });
    (() => {
      const l = p.instantiate();
      watcher.register(unexposedInstance(l).exports, 0);
      l.exports.f();
      l.release();
    })();
    made.push(p.instantiate());
    globalThis.gc(); // in the same synchronous run: the leases around it are still waiting
    await new Promise((r) => setTimeout(r, 10));
    out.releasedCollected = collected;
    // More than a batch, released after their registration.
    const batch = [];
    for (let i = 0; i < 70; i++) batch.push(p.instantiate());
    out.withBatch = engine.stats().liveLeases;
    for (const l of batch) l.release();
    out.batchReleased = engine.stats().liveLeases;
    batch.length = 0;
    // The six of the first run still held: release two, drop the rest.
    made[1].release();
    made[10].release();
    made.length = 0;
    ${collectLeases()}
    out.after = engine.stats().liveLeases;
    out.next = p.instantiate().exports.f();
    console.log(JSON.stringify(out));`;
  const out = gcChild(code);
  assert.deepEqual(out, { afterOutOfOrder: 6, releasedCollected: true, withBatch: 77, batchReleased: 7, after: 0, next: 1 });
});

test('lease.exports: the Proxy handler util.inspect shows is shared and frozen (one lease cannot change another\'s), its traps answer only for their own lease\'s target; the target prints as {} until the shape is looked at', async () => {
  const util = await import('node:util');
  const engine = new Engine({ maxIdle: 0 });
  const p = engine.prepare(noMemory);
  const a = p.instantiate();
  const b = p.instantiate();
  const ea = a.exports;
  const fa = ea.f;
  assert.equal(util.inspect(ea), '{}');
  // What util.inspect(x, { showProxy: true }) shows: the target and the handler.
  const seen: unknown[] = [];
  const key = util.inspect.custom;
  const proto = Object.prototype as unknown as Record<symbol, unknown>;
  proto[key] = function (this: unknown) {
    seen.push(this);
    return 'x';
  };
  try {
    util.inspect(ea, { showProxy: true });
  } finally {
    delete proto[key];
  }
  const handler = seen.find((v) => typeof (v as { get?: unknown }).get === 'function') as ProxyHandler<object> & Record<string, unknown>;
  const target = seen.find((v) => v !== handler) as object;
  assert.ok(handler !== undefined && target !== undefined);
  assert.ok(Object.isFrozen(handler));
  assert.throws(() => {
    handler['get'] = () => 'hijacked';
  }, TypeError);
  assert.equal((b.exports.f as () => number)(), 1, "another lease's exports read as before");
  assert.equal(handler.get!(target, 'f', ea), fa, "with its lease's target: that lease's wrapper");
  assert.throws(() => handler.get!({}, 'f', ea), TypeError);
  assert.throws(() => handler.ownKeys!({}), TypeError);
  a.release();
  b.release();
  assert.throws(() => (fa as () => number)(), ReleasedInstanceError);
  engine.close();
});

test('a reused instance of a module with no memory: its leases wait on the same list; released before or after registration, or dropped, each counted once', () => {
  const code = `
    import { Engine } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    const bytes = new Uint8Array(${JSON.stringify([...noMemory])});
    const engine = new Engine({ maxInstances: 400 });
    const p = engine.prepare(bytes, { reuse: true });
    const out = { reuse: p.reuse.enabled };
    const a = p.instantiate(); a.exports.f(); a.release(); // released while waiting
    const b = p.instantiate(); b.exports.f();
    const batch = [];
    for (let i = 0; i < 70; i++) batch.push(p.instantiate()); // b and these registered on the way
    b.release(); // released after its registration
    for (const l of batch.splice(0, 35)) l.release();
    out.live = engine.stats().liveLeases;
    out.reused = engine.stats().instancesReused;
    batch.length = 0; // the other 35 dropped unreleased
    ${collectLeases()}
    out.after = engine.stats().liveLeases;
    out.next = p.instantiate().exports.f();
    console.log(JSON.stringify(out));`;
  const out = gcChild(code);
  assert.deepEqual(out, { reuse: true, live: 35, reused: 1, after: 0, next: 1 });
});
