/**
 * Instance reuse, differential: random tenants (seeded) change memory,
 * globals and tables (from wasm and from JavaScript), grow, trap; each
 * tenant of a reused instance must equal a fresh native instance of the
 * same module given the same imports: memory, every global (read through
 * the private exports on both sides), table entries, and every export's
 * result, call by call, in lockstep.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine, type Lease, ReleasedInstanceError } from '../src/index.js';
import { unexposedInstance } from '../src/lease.js';
import { BACKENDS, outcome } from './helpers/env.js';
import { referenceModule, reuseModule, stateOf } from './helpers/reuse-module.js';
import { rng } from './helpers/wasm.js';

type Fn = (...args: unknown[]) => unknown;
type Imports = { env: { f: (x: number) => number; k: number } };

/** Tenant `t`'s imports: its own function (the start function calls it), the shared constant global. */
function importsFor(t: number): Imports {
  return {
    env: {
      f: (x: number) => {
        if (x === 666) throw new Error(`tenant ${t} refuses`);
        return (x * 31 + t) | 0;
      },
      k: 1234,
    },
  };
}

/** One operation on a tenant: applied to ours and to the native instance; whether it makes the instance unreusable. */
interface Op {
  readonly name: string;
  readonly run: (exports: Record<string, unknown>) => unknown;
  /** The instance is dropped after this (if it ran on ours). */
  readonly drops?: (result: string) => boolean;
}

function randomOp(r: () => number): Op {
  const int = (n: number): number => Math.floor(r() * n);
  const call = (name: string, ...args: unknown[]) => (e: Record<string, unknown>) => (e[name] as Fn)(...args);
  const x = r();
  if (x < 0.3) {
    const a = int(3 * 65536 + 16) - 8; // may be out of bounds: traps
    return { name: `store(${a})`, run: call('store', a, int(256)), drops: (o) => !o.startsWith('ok') };
  }
  if (x < 0.4) return { name: 'setg32', run: call('setg32', int(1e6)) };
  if (x < 0.45) return { name: 'setg64', run: call('setg64', BigInt(int(1e9)) * -7n) };
  if (x < 0.5) return { name: 'setgf', run: call('setgf', r() < 0.2 ? NaN : r() * 1e6) };
  if (x < 0.6) return { name: 'tset', run: call('tset', int(6), int(3)), drops: (o) => !o.startsWith('ok') };
  if (x < 0.65) return { name: 'tfill', run: call('tfill', int(5), int(4)), drops: (o) => !o.startsWith('ok') };
  if (x < 0.7) return { name: 'setfr', run: call('setfr', int(3)) };
  if (x < 0.78) return { name: 'callt', run: call('callt', int(5)), drops: (o) => !o.startsWith('ok') };
  if (x < 0.84) return { name: 'callf', run: call('callf', r() < 0.15 ? 666 : int(100)), drops: (o) => !o.startsWith('ok') };
  if (x < 0.88) return { name: 'minit', run: call('minit', int(3 * 65536)), drops: (o) => !o.startsWith('ok') };
  if (x < 0.9) return { name: 'load', run: call('load', int(65536)) };
  if (x < 0.92) return { name: 'tgrow', run: call('tgrow', 1 + int(2)), drops: () => true };
  if (x < 0.94) return { name: 'mgrow', run: call('mgrow', 1 + int(2)), drops: () => true };
  if (x < 0.95) return { name: 'trap', run: call('trap'), drops: () => true };
  if (x < 0.965) {
    const i = int(4);
    return {
      name: 'tab.set from JS',
      run: (e) => {
        (e['tab'] as WebAssembly.Table).set(i, null);
      },
      drops: () => true,
    };
  }
  if (x < 0.98) {
    const v = int(1000);
    return {
      name: 'g6 from JS',
      run: (e) => {
        (e['g6'] as WebAssembly.Global).value = v;
      },
      drops: () => true,
    };
  }
  return { name: 'one', run: call('one') };
}

const result = (f: () => unknown): string => {
  try {
    const v = f();
    return `ok ${typeof v === 'bigint' ? `${v}n` : String(v)}`;
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
};

interface RunOptions {
  backend: (typeof BACKENDS)[number];
  backgroundReset: boolean;
  seed: number;
  tenants: number;
  /** Compare each tenant's state at its start (else only the last tenant's: nothing reads memory between). */
  compareEach: boolean;
}

function run(o: RunOptions): void {
  const bytes = reuseModule(o.seed);
  const reference = referenceModule(bytes);
  const engine = new Engine({ backend: o.backend, backgroundReset: o.backgroundReset });
  try {
    const prepared = engine.prepare(bytes, { reuse: true });
    assert.deepEqual(prepared.reuse, { enabled: true, reason: null, detail: null });
    const r = rng(o.seed);
    let expectReused = 0;
    let previousClean = false;
    for (let t = 0; t < o.tenants; t++) {
      const lease = prepared.instantiate(importsFor(t));
      if (previousClean) expectReused++;
      const native = new WebAssembly.Instance(reference, importsFor(t));
      if (o.compareEach || t === o.tenants - 1) {
        assert.deepEqual(stateOf(unexposedInstance(lease)), stateOf(native), `seed ${o.seed} tenant ${t}: state at start`);
      }
      let clean = true;
      const ops = 1 + Math.floor(r() * 8);
      for (let k = 0; k < ops; k++) {
        const op = randomOp(r);
        const ours = result(() => op.run(lease.exports as Record<string, unknown>));
        const theirs = result(() => op.run(native.exports as Record<string, unknown>));
        assert.equal(ours, theirs, `seed ${o.seed} tenant ${t} op ${op.name}`);
        if (op.drops?.(ours)) clean = false;
      }
      if (r() < 0.05) {
        void lease.instance; // raw access
        clean = false;
      }
      lease.release();
      previousClean = clean;
    }
    const reused = engine.stats().instancesReused;
    if (o.backgroundReset) {
      // An instance still being reset on the reset thread is not waited for: one more is made (pool.ts).
      assert.ok(reused <= expectReused && (expectReused < 4 || reused > 0), `seed ${o.seed}: ${reused} reused, at most ${expectReused}`);
    } else {
      assert.equal(reused, expectReused, `seed ${o.seed}: instances reused`);
    }
  } finally {
    engine.close();
  }
}

for (const backend of BACKENDS) {
  for (const backgroundReset of backend === 'native' ? [false, true] : [false]) {
    test(`reuse: random tenants equal a fresh native instance, state compared at each tenant (${backend}${backgroundReset ? ', background resets' : ''})`, () => {
      for (let seed = 1; seed <= 12; seed++) run({ backend, backgroundReset, seed, tenants: 30, compareEach: true });
    });
    test(`reuse: random tenants with nothing read between them; the last equals native (${backend}${backgroundReset ? ', background resets' : ''})`, () => {
      for (let seed = 100; seed <= 120; seed++) run({ backend, backgroundReset, seed, tenants: 1 + (seed % 9), compareEach: false });
    });
  }
}

test('each lease brings its own function imports; other imports must be identical, else another instance', () => {
  const engine = new Engine({ backgroundReset: false });
  try {
    const prepared = engine.prepare(reuseModule(5), { reuse: true });
    const a = prepared.instantiate(importsFor(1));
    assert.equal((a.exports['callf'] as Fn)(2), 63);
    a.release();
    const b = prepared.instantiate(importsFor(2));
    assert.equal((b.exports['callf'] as Fn)(2), 64, 'the trampoline calls the current lease’s import');
    b.release();
    assert.equal(engine.stats().instancesReused, 1);
    // A different value for the imported global: a new instance, counted.
    const c = prepared.instantiate({ env: { f: importsFor(3).env.f, k: 99 } });
    const native = new WebAssembly.Instance(referenceModule(reuseModule(5)), { env: { f: importsFor(3).env.f, k: 99 } });
    assert.deepEqual(stateOf(unexposedInstance(c)), stateOf(native));
    c.release();
    assert.equal(engine.stats().reuseDeclined['imports-differ'], 1);
    assert.equal(engine.stats().instancesReused, 1);
    // Both instances are idle now: each import set finds its own.
    prepared.instantiate({ env: { f: importsFor(4).env.f, k: 99 } }).release();
    prepared.instantiate(importsFor(5)).release();
    assert.equal(engine.stats().instancesReused, 3);
  } finally {
    engine.close();
  }
});

test('an import V8 would link directly (a wasm function, a bound or native function) gets an instance of its own', () => {
  const engine = new Engine({ backgroundReset: false });
  try {
    const bytes = reuseModule(6);
    const prepared = engine.prepare(bytes, { reuse: true });
    prepared.instantiate(importsFor(1)).release();
    const helper = new WebAssembly.Instance(new WebAssembly.Module(bytes), importsFor(9));
    for (const f of [helper.exports['load'], importsFor(2).env.f.bind(null), Math.abs]) {
      const lease = prepared.instantiate({ env: { f: f as (x: number) => number, k: 1234 } });
      const native = new WebAssembly.Instance(referenceModule(bytes), { env: { f: f as (x: number) => number, k: 1234 } });
      assert.deepEqual(stateOf(unexposedInstance(lease)), stateOf(native));
      assert.equal(result(() => (lease.exports['callf'] as Fn)(-5)), result(() => (native.exports['callf'] as Fn)(-5)));
      lease.release();
    }
    assert.equal(engine.stats().reuseDeclined['import-not-js'], 3);
    assert.equal(engine.stats().instancesReused, 0);
    // A missing import throws V8's own LinkError.
    const native = outcome(() => new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { k: 1234 } }));
    assert.equal(outcome(() => prepared.instantiate({ env: { k: 1234 } } as unknown as Imports)), native);
    assert.equal(engine.stats().liveLeases, 0);
    prepared.instantiate(importsFor(3)).release();
    assert.equal(engine.stats().instancesReused, 1, 'the idle instance is still there');
  } finally {
    engine.close();
  }
});

test('isolation: after release, old exports and lease.instance throw; a lent buffer is detached and its instance dropped', () => {
  const engine = new Engine({ backgroundReset: false });
  try {
    const prepared = engine.prepare(reuseModule(7), { reuse: true });
    const a = prepared.instantiate(importsFor(1));
    const store = a.exports['store'] as Fn;
    const exportsA = a.exports;
    a.release();
    assert.throws(() => store(0, 1), ReleasedInstanceError);
    assert.throws(() => a.exports, ReleasedInstanceError);
    assert.throws(() => a.instance, ReleasedInstanceError);
    const b = prepared.instantiate(importsFor(2));
    assert.equal(engine.stats().instancesReused, 1);
    assert.throws(() => (exportsA['store'] as Fn)(0, 1), ReleasedInstanceError, 'A’s wrappers stay revoked while B holds the instance');
    const buffer = b.memoryBuffer();
    assert.ok(buffer.byteLength > 0);
    b.release();
    assert.equal(buffer.byteLength, 0, 'detached');
    assert.equal(engine.stats().reuseDeclined['exposed'], 1);
    const c = prepared.instantiate(importsFor(3));
    assert.equal(engine.stats().instancesReused, 1, 'the lent memory’s instance was not reused');
    c.release();
  } finally {
    engine.close();
  }
});

test('what drops an instance is counted by reason', () => {
  const engine = new Engine({ backgroundReset: false });
  try {
    const prepared = engine.prepare(reuseModule(8), { reuse: true });
    const cases: [string, (l: Lease) => void][] = [
      ['exposed', (l) => void l.instance],
      ['exposed', (l) => assert.throws(() => (l.exports['trap'] as Fn)())],
      ['exposed', (l) => void l.exports['tab']],
      ['exposed', (l) => void l.exports['g6']],
      ['exposed', (l) => void l.exports['mem']],
      ['grown', (l) => (l.exports['mgrow'] as Fn)(1)],
      ['table-grown', (l) => (l.exports['tgrow'] as Fn)(1)],
    ];
    const want: Record<string, number> = {};
    for (const [reason, act] of cases) {
      const l = prepared.instantiate(importsFor(1));
      act(l);
      l.release();
      want[reason] = (want[reason] ?? 0) + 1;
      assert.deepEqual(engine.stats().reuseDeclined, want, reason);
    }
    assert.equal(engine.stats().instancesReused, 0);
  } finally {
    engine.close();
  }
});

test('a start function that traps: instantiate throws as natively, the instance is not reused', () => {
  const engine = new Engine({ backgroundReset: false });
  try {
    const bytes = reuseModule(9);
    const prepared = engine.prepare(bytes, { reuse: true });
    prepared.instantiate(importsFor(1)).release();
    const bad = { env: { f: () => { throw new RangeError('no'); }, k: 1 } };
    const native = outcome(() => new WebAssembly.Instance(new WebAssembly.Module(bytes), bad));
    assert.equal(outcome(() => prepared.instantiate(bad)), native);
    assert.equal(engine.stats().reuseDeclined['start-trap'], 1);
    assert.equal(engine.stats().liveLeases, 0);
    const l = prepared.instantiate(importsFor(2));
    assert.deepEqual(stateOf(unexposedInstance(l)), stateOf(new WebAssembly.Instance(referenceModule(bytes), importsFor(2))));
    l.release();
  } finally {
    engine.close();
  }
});

test('release during a call returns the instance when the call ends; dispose and close drop idle instances', () => {
  const engine = new Engine({ backgroundReset: false });
  const bytes = reuseModule(10);
  const prepared = engine.prepare(bytes, { reuse: true });
  let lease: Lease | null = null;
  let releaseInF = false;
  const imports = { env: { f: (x: number) => { if (releaseInF) lease!.release(); return x; }, k: 1234 } };
  lease = prepared.instantiate(importsFor(0));
  lease.release();
  lease = prepared.instantiate(imports);
  (lease.exports['store'] as Fn)(100, 42);
  releaseInF = true;
  assert.equal((lease.exports['callf'] as Fn)(7), 7); // f releases the lease inside the call
  assert.equal(lease.released, true);
  assert.equal(engine.stats().instancesReused, 1);
  const next = prepared.instantiate(importsFor(3));
  assert.deepEqual(stateOf(unexposedInstance(next)), stateOf(new WebAssembly.Instance(referenceModule(bytes), importsFor(3))));
  next.release();
  prepared.dispose();
  assert.throws(() => prepared.instantiate(importsFor(1)));
  engine.close();
});

test('prepared.reuse says why a module is not eligible; such a module runs as without reuse', () => {
  const engine = new Engine({ backgroundReset: false });
  try {
    const plain = engine.prepare(reuseModule(11));
    assert.deepEqual(plain.reuse, { enabled: false, reason: 'not-requested', detail: null });
    assert.throws(() => engine.prepare(reuseModule(11), { reuse: 1 as unknown as boolean }));
    const exported = engine.prepare(reuseModule(11), { reuse: true });
    assert.deepEqual(exported.exports.map((e) => e.name).filter((n) => n.includes('wasm-cow')), [], 'private exports are not listed');
    assert.ok(!Object.keys(exported.instantiate(importsFor(1)).exports).some((n) => n.includes('wasm-cow')));
  } finally {
    engine.close();
  }
});

test('ineligible modules: the reason at prepare, counted per instantiation, and they run as without reuse', async () => {
  const { buildRaw, FUNCREF, V128 } = await import('./helpers/raw-wasm.js');
  const { buildModule, dropFunc, I32: i32, initFunc, stdFuncs } = await import('./helpers/wasm.js');
  const engine = new Engine({ backgroundReset: false });
  try {
    const cases: [string, Uint8Array<ArrayBuffer>, WebAssembly.Imports][] = [
      [
        'dropped-segment',
        buildModule({ memories: [{ min: 1, export: 'mem' }], funcs: [...stdFuncs, initFunc(0), dropFunc(0)], dataCount: true, data: [{ passive: true, bytes: [1, 2, 3] }] }),
        {},
      ],
      ['imported-memory-data', buildModule({ importMemory: { module: 'env', name: 'm', min: 1 }, funcs: stdFuncs, data: [{ offset: 0, bytes: [1] }] }), { env: { m: new WebAssembly.Memory({ initial: 1 }) } }],
      ['shared-memory', buildModule({ memories: [{ min: 1, max: 1, shared: true }] }), {}],
      ['v128-global', buildRaw({ globals: [{ type: [V128], mutable: true, init: [0xfd, 12, ...new Array<number>(16).fill(0)] }] }), {}],
      [
        'exposure',
        buildRaw({ types: [{ params: [FUNCREF], results: [] }], imports: [{ module: 'env', name: 'f', desc: [0x00, 0] }] }),
        { env: { f: () => {} } },
      ],
    ];
    for (const [reason, bytes, imports] of cases) {
      const before = engine.stats().reuseDeclined[reason as 'exposure'] ?? 0;
      const p = engine.prepare(bytes, { reuse: true });
      assert.equal(p.reuse.enabled, false, reason);
      assert.equal(p.reuse.reason, reason);
      assert.equal(typeof p.reuse.detail, 'string');
      const lease = p.instantiate(imports);
      const native = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
      assert.deepEqual(Object.keys(lease.exports), Object.keys(native.exports), reason);
      lease.release();
      void i32;
      assert.equal(engine.stats().reuseDeclined[reason as 'exposure'], before + 1, 'counted per instantiation');
    }
    // An opcode the scanner does not know (here GC's prefix, which this V8 rejects anyway): the plan says why.
    const { planReuse } = await import('../src/reuse/plan.js');
    const { parseModule } = await import('../src/binary/reader.js');
    const { ALL_RAW } = await import('../src/exposure.js');
    const gc = buildRaw({ types: [{ params: [], results: [] }], funcs: [{ type: 0, body: [0xfb, 0x00, 0, 0x1a] }] });
    const plan = planReuse(gc, parseModule(gc), [], { ...ALL_RAW, atInstantiation: false }, true);
    assert.equal(plan.enabled, false);
    assert.equal(!plan.enabled && plan.reason, 'scanner-unknown');
  } finally {
    engine.close();
  }
});

test('a float global that starts as NaN is not restored through JavaScript: the instance is dropped', async () => {
  const { buildRaw, F64 } = await import('./helpers/raw-wasm.js');
  const bytes = buildRaw({
    types: [{ params: [F64], results: [] }],
    funcs: [{ type: 0, body: [0x20, 0, 0x24, 0] }],
    globals: [{ type: [F64], mutable: true, init: [0x44, 1, 0, 0, 0, 0, 0, 0xf8, 0x7f] }], // a NaN with a payload
    exports: [{ name: 'set', kind: 0, index: 0 }],
  });
  const engine = new Engine({ backgroundReset: false });
  try {
    const p = engine.prepare(bytes, { reuse: true });
    assert.equal(p.reuse.enabled, true);
    const a = p.instantiate();
    (a.exports['set'] as Fn)(1.5);
    a.release();
    assert.equal(engine.stats().reuseDeclined['nan-global'], 1);
    p.instantiate().release();
    assert.equal(engine.stats().instancesReused, 0);
  } finally {
    engine.close();
  }
});

test('table restore: segments at constant offsets with gaps before, between and after them; a non-constant offset', async () => {
  const { buildRaw, FUNCREF } = await import('./helpers/raw-wasm.js');
  const { readInternalState, internalExports } = await import('../src/reuse/internal.js');
  const { readModuleInfo } = await import('../src/reuse/module-info.js');
  const { parseModule } = await import('../src/binary/reader.js');
  const { rewriteModule } = await import('../src/binary/rewriter.js');
  const { I32: i32 } = await import('./helpers/wasm.js');
  for (const offsets of [[[0x41, 2], [0x41, 5]], [[0x23, 0], [0x41, 5]]]) {
    const bytes = buildRaw({
      types: [{ params: [], results: [i32] }, { params: [], results: [] }],
      imports: [{ module: 'env', name: 'base', desc: [0x03, i32, 0] }],
      funcs: [
        { type: 0, body: [0x41, 1] },
        { type: 0, body: [0x41, 2] },
        { type: 1, body: [0x41, 0, 0xd2, 1, 0x41, 8, 0xfc, 17, 0] }, // table.fill 0 (ref.func 1) 8
      ],
      tables: [[FUNCREF, 0x00, 8]],
      exports: [{ name: 'smash', kind: 0, index: 2 }],
      elems: [
        [0x00, ...offsets[0]!, 0x0b, 2, 0, 0],
        [0x00, ...offsets[1]!, 0x0b, 1, 0],
        [0x03, 0x00, 1, 1], // declares ref.func 1
      ],
    });
    const imports = { env: { base: 2 } };
    const parsed = parseModule(bytes);
    const extra = internalExports(parsed, readModuleInfo(bytes, parsed)!, false);
    const reference = new WebAssembly.Module(rewriteModule(bytes, parsed, { importMemories: false, convert: new Set(), extraExports: extra }).bytes);
    const entries = (i: WebAssembly.Instance) => {
      const t = [...readInternalState(i).tables.values()][0]!;
      return Array.from({ length: t.length }, (_, k) => (t.get(k) as { name?: string } | null)?.name ?? null);
    };
    const engine = new Engine({ backgroundReset: false });
    try {
      const p = engine.prepare(bytes, { reuse: true });
      assert.equal(p.reuse.enabled, true);
      for (let t = 0; t < 3; t++) {
        const lease = p.instantiate(imports);
        assert.deepEqual(entries(unexposedInstance(lease)), entries(new WebAssembly.Instance(reference, imports)), `tenant ${t}`);
        (lease.exports['smash'] as Fn)();
        lease.release();
      }
      assert.equal(engine.stats().instancesReused, 2);
    } finally {
      engine.close();
    }
  }
});
