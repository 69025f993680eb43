/**
 * Review 9 (adversarial): failing reproducers for what today's changes
 * (one-shot instantiations taking idle memories and asking for spares,
 * 3e92d77; leases without pooled memory on a linked waiting list, 349c7da)
 * left open. Each test states what the docs promise and fails on main at
 * 349c7da.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/index.js';
import { BACKENDS, gcChild, collectLeases } from './helpers/env.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from './helpers/wasm.js';

const idle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A module of `pages` pages (its own size class) with 20 KB of data. */
const sized = (pages: number, seed: number): Uint8Array<ArrayBuffer> =>
  buildModule({ memories: [{ min: pages, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 100, bytes: pseudoRandomBytes(20000, seed) }] });

for (const kind of BACKENDS) {
  // docs/api.md, spareMemories: "so a program that instantiates a module again
  // and again, with a turn of the event loop between, never makes a memory on
  // an instantiation's path". Once maxIdle idle memories are spares asked for
  // by other modules' one-shot instantiations (each module instantiated once,
  // e.g. by the register hook), MemoryPool.#makeSpare refuses every new spare
  // (idle >= maxIdle) and nothing evicts the old ones (trim() runs only when a
  // released memory is adopted or an instance is kept idle): the stock is
  // frozen for good and the module used in a loop never gets a spare again.
  test(`one-shot instantiations of a module in a loop still get spares once the pool is full of other modules' spares (${kind})`, async () => {
    const e = new Engine({ backend: kind, nativeWhenFaster: false, maxIdle: 8 });
    const oneShot = (bytes: Uint8Array<ArrayBuffer>, p = e.prepare(bytes)): WebAssembly.Instance =>
      p.instantiateUnpooledSync(undefined, (module, io) => new WebAssembly.Instance(module, io));
    // Ten other modules, each instantiated twice (one size class each; the
    // second one-shot of a module asks for a spare), a turn after each.
    for (let i = 0; i < 10; i++) {
      const p = e.prepare(sized(2 + i, i));
      oneShot(sized(2 + i, i), p);
      oneShot(sized(2 + i, i), p);
      await idle();
    }
    assert.equal(e.stats().idleMemories, 8, 'the pool holds maxIdle spares of modules no longer used');
    const hot = e.prepare(sized(40, 99));
    const before = e.stats();
    const runs = 10;
    for (let i = 0; i < runs; i++) {
      oneShot(sized(40, 99), hot);
      await idle();
    }
    const after = e.stats();
    assert.ok(
      after.sparesUsed - before.sparesUsed >= runs - 2,
      `every one-shot after the second (the first asks for no spare) takes a spare; took ${after.sparesUsed - before.sparesUsed} of ${runs} (idle ${after.idleMemories}, sparesMade +${after.sparesMade - before.sparesMade})`,
    );
    e.close();
  });
}

// docs/guarantees.md: "a lease is never released: ... its instance slot is
// freed" once V8 has collected it. A lease of a reused instance ({ reuse: true })
// is reachable from the instance's entry (src/reuse/pool.ts #lease sets
// e.cur[n] = the lease's CallState), and the entry from every earlier lease of
// that instance (its tenancy's `complete` closure holds the entry). So a
// program that still holds an earlier, released lease (harmless by the docs)
// keeps the later, dropped one alive for good: liveLeases never comes down, and
// maxInstances runs out. Pre-existing (also at b1111fb), with or without memory.
test('a reused instance\'s lease dropped unreleased frees its slot after GC even while an earlier released lease of that instance is still held', () => {
  const noMemory = buildModule({ funcs: [{ export: 'f', params: [0x7f], results: [0x7f], body: [0x20, 0] }] });
  const withMemory = buildModule({ memories: [{ min: 1, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 0, bytes: [1, 2, 3] }] });
  const code = `
    import { Engine } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    const out = {};
    for (const [name, bytes] of [['noMemory', ${JSON.stringify([...noMemory])}], ['withMemory', ${JSON.stringify([...withMemory])}]]) {
      const engine = new Engine({ nativeWhenFaster: false, backgroundReset: false });
      const p = engine.prepare(new Uint8Array(bytes), { reuse: true });
      const old = p.instantiate();
      old.release(); // released, and kept by the program
      (() => { p.instantiate(); })(); // takes old's instance; dropped unreleased
      ${collectLeases()}
      out[name] = { reused: engine.stats().instancesReused, live: engine.stats().liveLeases, held: old.released };
      engine.close();
    }
    console.log(JSON.stringify(out));`;
  const out = gcChild(code);
  assert.deepEqual(out, {
    noMemory: { reused: 1, live: 0, held: true },
    withMemory: { reused: 1, live: 0, held: true },
  });
});

// The same frozen stock starves the pooled path: a module whose tenants grow
// its memory every run (esbuild does) gets its retired memory replaced by a
// spare (MemoryPool.#replace), unless one-shot instantiations of other modules
// (the register hook, the drop-in: new since 3e92d77) filled the pool with
// their spares first; then every run makes its memory on its own path.
test('a pooled module that grows every run still gets replacement spares after one-shot instantiations of other modules filled the pool', async () => {
  const e = new Engine({ nativeWhenFaster: false, maxIdle: 8 });
  const growing = (pages: number, seed: number): Uint8Array<ArrayBuffer> =>
    buildModule({ memories: [{ min: pages, max: 1000, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 100, bytes: pseudoRandomBytes(20000, seed) }] });
  for (let i = 0; i < 10; i++) {
    e.prepare(growing(2 + i, i)).instantiateUnpooledSync(undefined, (module, io) => new WebAssembly.Instance(module, io));
    await idle();
  }
  const m = e.prepare(growing(50, 999));
  const before = e.stats();
  const runs = 10;
  for (let i = 0; i < runs; i++) {
    const lease = m.instantiate();
    (lease.exports['grow'] as (n: number) => number)(1);
    lease.release();
    await idle();
  }
  const took = e.stats().sparesUsed - before.sparesUsed;
  assert.ok(took >= runs - 1, `every run after the first takes the spare made for its predecessor's grown memory; took ${took} of ${runs}`);
  e.close();
});
