/**
 * Instance reuse: regressions for review 3 (issue 12): each test fails on
 * the code before its fix.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine, EngineClosedError, WasmCowError } from '../src/index.js';
import { SnapshotError } from '../src/snapshot/errors.js';
import { BACKENDS, gcChild, collectLeases } from './helpers/env.js';
import { reuseModule } from './helpers/reuse-module.js';
import { buildRaw, F64 } from './helpers/raw-wasm.js';
import { I32, I64 } from './helpers/wasm.js';

const importsFor = (t: number) => ({ env: { f: (x: number) => (x * 31 + t) | 0, k: 1234 } });

for (const backend of BACKENDS) {
  test(`reuse: maxIdle bounds idle instances engine-wide, their memories counted in idleMemories (${backend})`, () => {
    const maxIdle = 8;
    const engine = new Engine({ backend, maxIdle, maxInstances: Infinity });
    const mods = Array.from({ length: 12 }, (_, m) => engine.prepare(reuseModule(100 + m), { reuse: true }));
    for (const p of mods) {
      const leases = Array.from({ length: 4 }, (_, t) => p.instantiate(importsFor(t)));
      for (const l of leases) l.release();
    }
    const st = engine.stats();
    assert.equal(st.idleInstances, maxIdle, 'one memory each: maxIdle instances');
    assert.equal(st.idleMemories, maxIdle);
    assert.equal(st.memoriesCreated - st.retiredMemories, maxIdle, 'every memory beyond the bound was dropped');
    assert.equal(st.reuseDeclined['pool-full'], 12 * 4 - maxIdle);
    // The most recently released stay: the last two modules' instances are reused.
    const last = mods[11]!.instantiate(importsFor(9));
    assert.equal(engine.stats().instancesReused, 1);
    last.release();
    // The first module's were evicted.
    mods[0]!.instantiate(importsFor(9)).release();
    assert.equal(engine.stats().instancesReused, 1);
    engine.close();
  });

  test(`reuse: an idle memory released later evicts the least recently released idle instance (${backend})`, () => {
    const engine = new Engine({ backend, maxIdle: 2, maxInstances: Infinity, spareMemories: false });
    const r = engine.prepare(reuseModule(7), { reuse: true });
    const plain = engine.prepare(reuseModule(8));
    const a = r.instantiate(importsFor(1));
    const b = r.instantiate(importsFor(2));
    a.release();
    b.release();
    assert.deepEqual([engine.stats().idleInstances, engine.stats().idleMemories], [2, 2]);
    plain.instantiate(importsFor(3)).release();
    const st = engine.stats();
    assert.deepEqual([st.idleInstances, st.idleMemories], [1, 2], 'the pool memory stays, the older instance went');
    engine.close();
    assert.deepEqual([engine.stats().idleInstances, engine.stats().idleMemories], [0, 0]);
  });
}

for (const backend of BACKENDS) {
  test(`reuse: tenants whose non-function imports all differ fall back to pooled memories, not new ones (${backend})`, () => {
    const engine = new Engine({ backend, maxIdle: 16, maxInstances: Infinity, backgroundReset: false });
    const p = engine.prepare(reuseModule(31), { reuse: true });
    const native = new WebAssembly.Module(reuseModule(31));
    const withK = (t: number, k: number) => ({ env: { f: (x: number) => (x * 31 + t) | 0, k } });
    for (let t = 0; t < 40; t++) {
      const l = p.instantiate(withK(t, 5000 + t));
      const n = new WebAssembly.Instance(native, withK(t, 5000 + t));
      const load = (e: WebAssembly.Exports) => (e['load'] as (a: number) => number)(0);
      assert.equal(load(l.exports), load(n.exports), `tenant ${t}`);
      l.release();
    }
    const st = engine.stats();
    assert.ok((st.reuseDeclined['imports-vary'] ?? 0) >= 30, JSON.stringify(st.reuseDeclined));
    assert.ok(st.memoriesCreated <= 8, `memories created: ${st.memoriesCreated}`);
    assert.equal(st.retiredMemories, 0, 'no memory retired: the direct instances returned theirs to the pool');
    // A tenant whose imports match a kept instance is still served by it.
    const again = p.instantiate(withK(99, 5001));
    assert.equal(engine.stats().instancesReused, 1);
    again.release();
    engine.close();
  });
}

/** run(): calls import f inside try/catch_all (legacy exception handling); with `start`, also the start function. */
function catchingModule(start: boolean): Uint8Array<ArrayBuffer> {
  return buildRaw({
    types: [{ params: [], results: [] }],
    imports: [{ module: 'env', name: 'f', desc: [0x00, 0] }],
    funcs: [{ type: 0, body: [0x06, 0x40, 0x10, 0x00, 0x19, 0x0b] }],
    memories: [[0x00, 1]],
    exports: [{ name: 'run', kind: 0, index: 1 }],
    ...(start ? { start: 1 } : {}),
  });
}

for (const backend of BACKENDS) {
  for (const where of ['call', 'start'] as const) {
    test(`reuse: an import that throws through the instance (caught by wasm, ${where}) keeps the instance and its memory from the next tenant (${backend})`, () => {
      const engine = new Engine({ backend, backgroundReset: false });
      const p = engine.prepare(catchingModule(where === 'start'), { reuse: true });
      const quiet = { env: { f: () => {} } };
      // Control: a tenant whose import returns normally leaves the instance reusable.
      const c = p.instantiate(quiet);
      (c.exports['run'] as () => void)();
      c.release();
      const c2 = p.instantiate(quiet);
      assert.equal(engine.stats().instancesReused, 1);
      let kept: unknown = null;
      const throwing = {
        env: {
          f: () => {
            kept = new Error('kept by the import');
            throw kept;
          },
        },
      };
      c2.release();
      const a = p.instantiate(throwing);
      assert.equal(engine.stats().instancesReused, 2);
      if (where === 'call') (a.exports['run'] as () => void)();
      assert.ok(kept instanceof Error, 'the import threw');
      a.release();
      const before = engine.stats();
      const b = p.instantiate(quiet);
      const after = engine.stats();
      assert.equal(after.instancesReused, before.instancesReused, 'the next tenant got a new instance');
      assert.equal(after.reuseDeclined['exposed'], 1);
      assert.equal(after.retiredExposed, 1, "the thrower's memory was retired, not reset");
      b.release();
      engine.close();
    });
  }
}

for (const backend of BACKENDS) {
  test(`reuse: an imported float global given as NaN never matches an idle instance: each tenant sees its own payload (${backend})`, () => {
    const bytes = buildRaw({
      types: [{ params: [], results: [I64] }],
      imports: [{ module: 'env', name: 'g', desc: [0x03, F64, 0] }],
      funcs: [{ type: 0, body: [0x23, 0, 0xbd] }], // i64.reinterpret_f64(global.get 0)
      memories: [[0x00, 1]],
      exports: [{ name: 'bits', kind: 0, index: 0 }],
    });
    const engine = new Engine({ backend, backgroundReset: false });
    const p = engine.prepare(bytes, { reuse: true });
    const native = new WebAssembly.Module(bytes);
    const nan = (payload: bigint) => new Float64Array(new BigUint64Array([0x7ff8000000000000n | payload]).buffer)[0]!;
    for (const payload of [1n, 2n, 3n]) {
      const imports = { env: { g: nan(payload) } };
      const l = p.instantiate(imports);
      const expected = (new WebAssembly.Instance(native, imports).exports['bits'] as () => bigint)();
      assert.equal((l.exports['bits'] as () => bigint)(), expected, `payload ${payload}`);
      l.release();
    }
    assert.equal(engine.stats().instancesReused, 0);
    // Numbers that are not NaN still match.
    p.instantiate({ env: { g: 1.5 } }).release();
    p.instantiate({ env: { g: 1.5 } }).release();
    assert.equal(engine.stats().instancesReused, 1);
    engine.close();
  });
}

for (const backend of BACKENDS) {
  for (const what of ['dispose', 'close'] as const) {
    test(`reuse: ${what} from an imports getter during instantiate() throws a typed error, nothing leaked (${backend})`, () => {
      const engine = new Engine({ backend });
      const p = engine.prepare(reuseModule(41), { reuse: true });
      p.instantiate(importsFor(0)).release();
      const imports = {
        get env() {
          if (what === 'dispose') p.dispose();
          else engine.close();
          return importsFor(1).env;
        },
      };
      assert.throws(() => p.instantiate(imports), what === 'close' ? EngineClosedError : WasmCowError);
      const st = engine.stats();
      assert.equal(st.liveLeases, 0);
      assert.equal(st.idleInstances, 0);
      engine.close();
    });
  }
}

for (const backend of BACKENDS) {
  test(`snapshot: a module exporting a name with the engine's private prefix is refused ('reserved-name'), not read from its decoy (${backend})`, () => {
    const decoy = '\u0000wasm-cow:global:0';
    const bytes = buildRaw({
      types: [{ params: [], results: [] }],
      funcs: [{ type: 0, body: [0x41, 5, 0x24, 0] }], // global 0 = 5
      memories: [[0x00, 1]],
      globals: [
        { type: [I32], mutable: true, init: [0x41, 0] },
        { type: [I32], mutable: false, init: [0x41, 0xd2, 0x09] }, // 1234
      ],
      exports: [
        { name: 'set', kind: 0, index: 0 },
        { name: decoy, kind: 3, index: 1 },
      ],
    });
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const p = engine.prepare(bytes, { snapshots: true });
    const lease = p.instantiate();
    (lease.exports['set'] as () => void)();
    assert.equal((lease.exports[decoy] as WebAssembly.Global).value, 1234, "the module's own export is there");
    assert.throws(() => p.snapshot(lease), (e: unknown) => e instanceof SnapshotError && e.reason === 'reserved-name');
    lease.release();
    engine.close();
  });
}

test('a lease of a module without memory, dropped without release, stops counting as live after GC (with and without reuse)', () => {
  const bytes = buildRaw({
    types: [{ params: [], results: [I32] }],
    funcs: [{ type: 0, body: [0x41, 1] }],
    exports: [{ name: 'f', kind: 0, index: 0 }],
  });
  const code = `
    import { Engine } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    const bytes = new Uint8Array(${JSON.stringify([...bytes])});
    const out = {};
    for (const reuse of [false, true]) {
      const engine = new Engine({ maxInstances: 5 });
      const p = engine.prepare(bytes, { reuse });
      const drop = () => { p.instantiate().exports.f(); };
      for (let i = 0; i < 5; i++) drop();
      let threw = false;
      try { p.instantiate(); } catch (e) { threw = e.constructor.name; }
      ${collectLeases('engine', 0, 20)}
      const live = engine.stats().liveLeases;
      const l = p.instantiate();
      out[reuse] = { threw, live, f: l.exports.f() };
      l.release();
      engine.close();
    }
    console.log(JSON.stringify(out));`;
  const out = gcChild(code);
  const expected = { threw: 'PoolExhaustedError', live: 0, f: 1 };
  assert.deepEqual(out, { false: expected, true: expected });
});
