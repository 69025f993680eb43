/**
 * Instance reuse: how a lease's imports are read (src/reuse/read-imports.ts).
 * Under reuse V8 never reads the imports (the instance is linked once, to
 * trampolines), so the engine's read is the only one and must be V8's:
 * the same Gets in the same order, getters and Proxy traps run as often,
 * the same failures at the same read, the same values linked. Compared with
 * native for a lease that makes an instance, one that reuses an idle one,
 * and one that falls back to an instance of its own (V8 then gets the
 * pinned object: nothing is read twice). Frozen import objects (read once,
 * kept) and values unchanged since the last read (compared by identity)
 * must never hide a change that a fresh instantiation would see.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine, type Imports } from '../src/index.js';
import { buildModule, I32 } from '../src/bench/builder.js';
import { BACKENDS } from './helpers/env.js';
import { F64 } from './helpers/raw-wasm.js';

type Fn = (...args: unknown[]) => unknown;

/**
 * (import "a" "f" (func (param i32) (result i32))) (import "b" "g" (func (result i32)))
 * (import "a" "h" (func (param i32) (result i32))) (import "a" "k" (global i32)) (import "c" "z" (global f64))
 * and exports calling or reading each; a memory with data (so that it is pooled).
 */
const BYTES = buildModule({
  importFuncs: [
    { module: 'a', name: 'f', params: [I32], results: [I32] },
    { module: 'b', name: 'g', results: [I32] },
    { module: 'a', name: 'h', params: [I32], results: [I32] },
  ],
  importGlobals: [
    { module: 'a', name: 'k', type: I32 },
    { module: 'c', name: 'z', type: F64 },
  ],
  memories: [{ min: 1 }],
  data: [{ offset: 16, bytes: [1, 2, 3] }],
  funcs: [
    { export: 'callf', params: [I32], results: [I32], body: [0x20, 0, 0x10, 0] },
    { export: 'callg', results: [I32], body: [0x10, 1] },
    { export: 'callh', params: [I32], results: [I32], body: [0x20, 0, 0x10, 2] },
    { export: 'k', results: [I32], body: [0x23, 0] },
    { export: 'z', results: [F64], body: [0x23, 1] },
  ],
});
const NATIVE = new WebAssembly.Module(BYTES);

/** What an instance's exports give (the sign of zero kept: 1/z). */
function results(exports: WebAssembly.Exports): unknown[] {
  const e = exports as Record<string, Fn>;
  return [e['callf']!(5), e['callg']!(), e['callh']!(7), e['k']!(), 1 / (e['z']!() as number)];
}

function plain(tag = 0): Record<string, Record<string, unknown>> {
  return {
    a: { f: (x: number) => x * 2 + tag, h: (x: number) => x - 3 - tag, k: 11 + tag },
    b: { g: () => 42 + tag },
    c: { z: -0 },
  };
}

/** Import objects whose reads are logged; a new one per call (its counters start again). */
const VARIANTS: Record<string, (log: string[]) => unknown> = {
  'plain data': () => plain(1),
  'a getter for a module, answering a new object each read': (log) => {
    let n = 0;
    return {
      get a() {
        log.push('a');
        return { f: (x: number) => x + n, h: (x: number) => x * n, k: n++ };
      },
      b: { g: () => 1 },
      c: { z: 2.5 },
    };
  },
  'getters for names, answering differently': (log) => {
    let n = 0;
    return {
      a: {
        get f() {
          log.push('f');
          return (x: number) => x + 100 * ++n;
        },
        get h() {
          log.push('h');
          return (x: number) => x + 1000 * ++n;
        },
        get k() {
          log.push('k');
          return ++n;
        },
      },
      b: { g: () => 2 },
      c: {
        get z() {
          log.push('z');
          return n % 2 === 0 ? -0 : 0;
        },
      },
    };
  },
  'Proxies for the imports and the modules': (log) => {
    const ns = (name: string, o: Record<string, unknown>) =>
      new Proxy(o, {
        get: (t, k, r) => {
          log.push(`${name}.${String(k)}`);
          return Reflect.get(t, k, r);
        },
        getOwnPropertyDescriptor: (t, k) => {
          log.push(`gopd ${name}.${String(k)}`);
          return Reflect.getOwnPropertyDescriptor(t, k);
        },
        has: (t, k) => {
          log.push(`has ${name}.${String(k)}`);
          return Reflect.has(t, k);
        },
        getPrototypeOf: (t) => {
          log.push(`proto ${name}`);
          return Reflect.getPrototypeOf(t);
        },
      });
    const p = plain(2);
    const mods: Record<string, unknown> = { a: ns('a', p['a']!), b: ns('b', p['b']!), c: ns('c', p['c']!) };
    return new Proxy(mods, {
      get: (t, k, r) => {
        log.push(`imports.${String(k)}`);
        return Reflect.get(t, k, r);
      },
      getOwnPropertyDescriptor: (t, k) => {
        log.push(`gopd imports.${String(k)}`);
        return Reflect.getOwnPropertyDescriptor(t, k);
      },
      getPrototypeOf: (t) => {
        log.push('proto imports');
        return Reflect.getPrototypeOf(t);
      },
    });
  },
  'a getter replaces module b during the read (V8 reads the new one)': (log) => {
    const imports: Record<string, unknown> = {
      a: {
        get f() {
          log.push('a.f');
          imports['b'] = { g: () => 2000 };
          return (x: number) => x;
        },
        h: (x: number) => x,
        k: 3,
      },
      b: { g: () => 1000 },
      c: { z: 1 },
    };
    return imports;
  },
  'a module getter throws at its second read': (log) => {
    let n = 0;
    const a = plain(3)['a'];
    return {
      get a() {
        log.push('a');
        if (n++ > 0) throw new RangeError('second read of a');
        return a;
      },
      b: { g: () => 3 },
      c: { z: 0 },
    };
  },
  'a name getter throws': (log) => ({
    a: {
      f: (x: number) => x,
      get h(): never {
        log.push('h');
        throw new TypeError('no h');
      },
      k: 1,
    },
    b: {
      get g() {
        log.push('g');
        return () => 1;
      },
    },
    c: { z: 0 },
  }),
  'module b missing': (log) => ({
    get a() {
      log.push('a');
      return plain(4)['a'];
    },
    c: { z: 0 },
  }),
  'module c is a number': (log) => ({
    a: plain(5)['a'],
    b: plain(5)['b'],
    get c() {
      log.push('c');
      return 5;
    },
  }),
  'function h missing': (log) => ({
    get a() {
      log.push('a');
      return { f: (x: number) => x, k: 1 };
    },
    b: plain(6)['b'],
    c: { z: 0 },
  }),
  'a global given a function (V8 reads it all, then fails to link)': () => ({ a: { ...plain(7)['a'], k: () => 1 }, b: plain(7)['b'], c: { z: 0 } }),
  'frozen throughout': () => deepFreeze(plain(8)),
  'frozen, a name inherited from a prototype': () => {
    const proto = { f: (x: number) => x + 8000 };
    const a = Object.freeze(Object.assign(Object.create(proto) as object, { h: (x: number) => x, k: 9 }));
    return Object.freeze({ a, b: Object.freeze({ g: () => 9 }), c: Object.freeze({ z: 9 }) });
  },
  'frozen, with an accessor': (log) => {
    let n = 0;
    const a = Object.freeze({
      get f() {
        log.push('frozen f');
        return (x: number) => x + 10 * ++n;
      },
      h: (x: number) => x,
      k: 10,
    });
    return Object.freeze({ a, b: Object.freeze({ g: () => 10 }), c: Object.freeze({ z: 10 }) });
  },
  'a Proxy over a frozen object': (log) => {
    const target = deepFreeze(plain(11));
    return new Proxy(target, {
      get: (t, k, r) => {
        log.push(`frozen proxy ${String(k)}`);
        return Reflect.get(t, k, r);
      },
    });
  },
  'frozen imports, a module object that is not': () => Object.freeze({ ...plain(12) }),
  'getters, and a bound function (an instance of its own: V8 gets what was read)': (log) => {
    let n = 0;
    return {
      a: {
        get f() {
          log.push('f');
          return ((x: number) => x + 7 * ++n).bind(null);
        },
        get h() {
          log.push('h');
          return (x: number) => x * ++n;
        },
        k: 13,
      },
      get b() {
        log.push('b');
        return { g: () => ++n };
      },
      c: { z: -0 },
    };
  },
};

function deepFreeze<T extends Record<string, Record<string, unknown>>>(o: T): T {
  for (const v of Object.values(o)) Object.freeze(v);
  return Object.freeze(o);
}

/** Instantiates with the variant's imports: the Gets logged, and the exports' results or the error. */
function observe(make: (log: string[]) => unknown, instantiate: (imports: unknown) => { exports: WebAssembly.Exports; done: () => void }) {
  const log: string[] = [];
  const imports = make(log);
  let outcome: unknown;
  try {
    const r = instantiate(imports);
    const readsAtInstantiation = log.length;
    outcome = results(r.exports);
    r.done();
    // The exports read nothing more of the imports.
    assert.equal(log.length, readsAtInstantiation);
  } catch (e) {
    outcome = e instanceof Error ? `${e.constructor.name}: ${e.message}` : e;
  }
  return { log, outcome };
}

const native = (imports: unknown) => ({ exports: new WebAssembly.Instance(NATIVE, imports as WebAssembly.Imports).exports, done: () => {} });

for (const backend of BACKENDS) {
  test(`reuse: imports are read as V8 reads them (same Gets, same order, same failures, same values) for a new, a reused and a fall-back instance (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false });
    for (const [name, make] of Object.entries(VARIANTS)) {
      const p = engine.prepare(BYTES, { reuse: true });
      assert.equal(p.reuse.enabled, true, `eligible: ${p.reuse.reason}`);
      const viaLease = (imports: unknown) => {
        const lease = p.instantiate(imports as Imports);
        return { exports: lease.exports, done: () => lease.release() };
      };
      const expected = observe(make, native);
      // A lease with no idle instance, then the same imports again (an idle instance may serve them), then again.
      for (let round = 0; round < 3; round++) assert.deepEqual(observe(make, viaLease), expected, `${name}, lease ${round}`);
      // A lease after another tenant's (plain imports), whose instance is idle.
      p.instantiate(plain(99) as Imports).release();
      assert.deepEqual(observe(make, viaLease), expected, `${name}, after another tenant`);
    }
    const st = engine.stats();
    assert.equal(st.liveLeases, 0);
    assert.ok(st.instancesReused > 0, 'instances were reused');
    assert.ok((st.reuseDeclined['import-not-js'] ?? 0) >= 4, `fall-backs counted: ${JSON.stringify(st.reuseDeclined)}`);
    engine.close();
  });

  test(`reuse: one import object changed between leases: each lease links what it holds then, as a fresh instance would (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false });
    const p = engine.prepare(BYTES, { reuse: true });
    const io = plain(0) as Record<string, Record<string, unknown>>;
    const same = () => {
      const lease = p.instantiate(io as Imports);
      const got = results(lease.exports);
      lease.release();
      assert.deepEqual(got, results(new WebAssembly.Instance(NATIVE, io as WebAssembly.Imports).exports));
      return got;
    };
    same();
    same();
    assert.equal(engine.stats().instancesReused, 1);
    const steps: [string, () => void][] = [
      ['a new f', () => (io['a']!['f'] = (x: number) => x * 1000)],
      ['a new module b', () => (io['b'] = { g: () => -1 })],
      ['k changed (another instance)', () => (io['a']!['k'] = 77)],
      ['k back (the first instance)', () => (io['a']!['k'] = 0)],
      ['z: +0', () => (io['c']!['z'] = 0)],
      ['z: -0', () => (io['c']!['z'] = -0)],
      ['z: NaN', () => (io['c']!['z'] = NaN)],
      ['z: -0 again', () => (io['c']!['z'] = -0)],
      ['f bound (an instance of its own)', () => (io['a']!['f'] = ((x: number) => x + 5).bind(null))],
      ['f plain again', () => (io['a']!['f'] = (x: number) => x + 6)],
      ['h a WebAssembly function (an instance of its own)', () => {
        io['a']!['h'] = new WebAssembly.Instance(NATIVE, plain(1) as WebAssembly.Imports).exports['callh'];
      }],
      ['h plain again, the same f', () => (io['a']!['h'] = (x: number) => x - 1)],
      ['a getter for g', () => Object.defineProperty(io['b']!, 'g', { get: () => () => 31, configurable: true, enumerable: true })],
      ['frozen', () => deepFreeze(io)],
    ];
    for (const [what, change] of steps) {
      change();
      const first = same();
      // Again, twice: the idle instances found for these values are remembered (by identity) from the second on.
      assert.deepEqual(same(), first, `${what}: the same again`);
      assert.deepEqual(same(), first, `${what}: and again`);
    }
    const st = engine.stats();
    assert.ok((st.reuseDeclined['imports-differ'] ?? 0) >= 2, JSON.stringify(st.reuseDeclined));
    assert.ok((st.reuseDeclined['import-not-js'] ?? 0) >= 4, JSON.stringify(st.reuseDeclined));
    engine.close();
  });

  test(`reuse: a frozen import object is read once; what it does not fix is read again at each lease (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false });
    const p = engine.prepare(BYTES, { reuse: true });
    const check = (imports: unknown, what: string) => {
      const lease = p.instantiate(imports as Imports);
      const got = results(lease.exports);
      lease.release();
      assert.deepEqual(got, results(new WebAssembly.Instance(NATIVE, imports as WebAssembly.Imports).exports), what);
    };
    // A frozen object holding a module object that is not frozen: its values are read each time.
    const a: Record<string, unknown> = { ...plain(1)['a'] };
    const top = Object.freeze({ a, b: Object.freeze({ g: () => 1 }), c: Object.freeze({ z: 1 }) });
    check(top, 'not frozen inside');
    a['f'] = (x: number) => -x;
    check(top, 'its module object changed');
    // Frozen module objects, one name inherited from a prototype that changes.
    const proto: Record<string, unknown> = { f: (x: number) => x + 1 };
    const inherits = Object.freeze({
      a: Object.freeze(Object.assign(Object.create(proto) as object, { h: (x: number) => x, k: 5 })),
      b: Object.freeze({ g: () => 5 }),
      c: Object.freeze({ z: 5 }),
    });
    check(inherits, 'inherited');
    proto['f'] = (x: number) => x + 2;
    check(inherits, 'the prototype changed');
    // Frozen later: read as any object until then, and the value it is frozen with after.
    const later = plain(3) as Record<string, Record<string, unknown>>;
    check(later, 'not frozen yet');
    later['a']!['f'] = (x: number) => x * 3;
    check(later, 'changed');
    deepFreeze(later);
    check(later, 'frozen');
    check(later, 'frozen, again');
    // A frozen module object that becomes frozen after its import object was first seen frozen.
    const open: Record<string, unknown> = { ...plain(4)['b'] };
    const mixed = Object.freeze({ a: Object.freeze({ ...plain(4)['a'] }), b: open, c: Object.freeze({ z: 4 }) });
    check(mixed, 'mixed');
    open['g'] = () => 44;
    Object.freeze(open);
    check(mixed, 'frozen inside afterwards');
    assert.equal(engine.stats().liveLeases, 0);
    engine.close();
  });
}

test('which imports go to a trampoline is answered right whether or not the answer was remembered', async () => {
  const { isPlainFunction } = await import('../src/reuse/trampoline.js');
  const wasmFn = (new WebAssembly.Instance(new WebAssembly.Module(buildModule({
    funcs: [{ export: 'w', results: [I32], body: [0x41, 0x07] }],
  }))).exports as Record<string, unknown>).w;
  const kept = (x: number): number => x + 1;
  const others: [unknown, boolean][] = [
    [wasmFn, false], [kept.bind(null), false], [new Proxy(kept, {}), false], [Math.max, false],
    [class {}, true], [async () => 0, true], [function* g() { yield 1; }, true], [kept, true], [{}, false], [7, false],
  ];
  // Fresh closures by the thousand (remembering stops paying), then kept functions again and again
  // (remembering pays again): every answer stays the one toString gives.
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 10_000; i++) assert.equal(isPlainFunction((y: number) => y + i), true);
    for (let i = 0; i < 10_000; i++) for (const [f, plain] of others) assert.equal(isPlainFunction(f), plain, String(f));
  }
});
