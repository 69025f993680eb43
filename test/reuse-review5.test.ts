/**
 * Review 5 of reuse's import reading (src/reuse/read-imports.ts, src/pin.ts):
 * cases where a lease differed from `new WebAssembly.Instance(module,
 * imports)` on the original module. Each test compares with native V8.
 *
 *  - V8 properties that look like frozen data properties but are native
 *    accessors: a sloppy function's own 'caller' / 'arguments' (answered
 *    from the stack at each Get) and an own 'stack' (Error.prepareStackTrace
 *    runs at its first Get): the frozen shortcut must not keep them.
 *  - Non-object imports for a module that imports nothing: V8 throws.
 *  - NaN payloads: a pinned key answering two NaNs replays both; and an
 *    array of Numbers holds raw doubles, which quiets a signaling NaN.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine, type Imports, type PreparedModule } from '../src/index.js';
import { buildModule, I32 } from '../src/bench/builder.js';
import { BACKENDS } from './helpers/env.js';
import { F64 } from './helpers/raw-wasm.js';

/** One lease of `p` with imports `io`: its export `call` called once, then released. */
function callOnce(p: PreparedModule, io: unknown): number {
  const l = p.instantiate(io as Imports);
  try {
    return (l.exports['call'] as () => number)();
  } finally {
    l.release();
  }
}

const I64 = 0x7e;
const DATA = { memories: [{ min: 1 }], data: [{ offset: 16, bytes: [1, 2, 3] }] };

function outcome(fn: () => unknown): string {
  try {
    return `ok ${String(fn())}`;
  } catch (e) {
    return e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e);
  }
}

/** NaN bits as a Number. */
function nan(bits: bigint): number {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, bits);
  return dv.getFloat64(0);
}

for (const backend of BACKENDS) {
  test(`reuse: a frozen sloppy function's 'caller' is read at each lease, as V8 reads it from the stack (${backend})`, () => {
    const bytes = buildModule({
      importFuncs: [{ module: 'm', name: 'caller', results: [I32] }],
      ...DATA,
      funcs: [{ export: 'call', results: [I32], body: [0x10, 0] }],
    });
    const native = new WebAssembly.Module(bytes);
    // Sloppy functions (new Function): f.caller is g while g's call of f runs, null otherwise.
    const f = Object.freeze(new Function('run', 'return run()')) as (run: () => string) => string;
    const g = new Function('f', 'run', 'if (f === undefined) return 7; return f(run)') as (f?: unknown, run?: () => string) => string;
    const inside = (run: () => string): string => g(f, run);
    for (const imports of [Object.freeze({ m: f }), { m: f }]) {
      const engine = new Engine({ backend, backgroundReset: false });
      const p = engine.prepare(bytes, { reuse: true });
      assert.equal(p.reuse.enabled, true);
      const viaLease = () =>
        outcome(() => {
          const l = p.instantiate(imports as unknown as Imports);
          try {
            return (l.exports['call'] as () => number)();
          } finally {
            l.release();
          }
        });
      const viaNative = () => outcome(() => (new WebAssembly.Instance(native, imports as unknown as WebAssembly.Imports).exports['call'] as () => number)());
      assert.equal(inside(viaNative), 'ok 7');
      assert.equal(inside(viaLease), inside(viaNative), 'inside f');
      // Outside f: f.caller is null, V8 cannot link it.
      assert.match(viaNative(), /^LinkError/);
      assert.equal(viaLease(), viaNative(), 'outside f, after a lease inside it');
      assert.equal(inside(viaLease), inside(viaNative), 'inside f again');
      engine.close();
    }
  });

  test(`reuse: an own 'stack' of a frozen import object is formatted by V8's Get only (prepareStackTrace called as natively) (${backend})`, () => {
    const saved = Error.prepareStackTrace;
    try {
      const cases = [
        { module: 'e', name: 'stack', make: (v: object) => Object.freeze({ e: Object.freeze(v) }), fn: () => () => 7 },
        { module: 'stack', name: 'f', make: (v: object) => v, fn: () => ({ f: () => 7 }) },
        { module: 'stack', name: 'f', make: (v: object) => Object.freeze(v), fn: () => Object.freeze({ f: () => 7 }) },
      ];
      for (const c of cases) {
        const bytes = buildModule({
          importFuncs: [{ module: c.module, name: c.name, results: [I32] }],
          ...DATA,
          funcs: [{ export: 'call', results: [I32], body: [0x10, 0] }],
        });
        const native = new WebAssembly.Module(bytes);
        const observe = (instantiate: (io: unknown) => unknown) => {
          const log: string[] = [];
          let calls = 0;
          Error.prepareStackTrace = () => {
            log.push(`prepareStackTrace ${++calls}`);
            if (calls === 1) throw new RangeError('first format fails');
            return c.fn();
          };
          const holder = {};
          Error.captureStackTrace(holder);
          const imports = c.make(holder);
          const first = outcome(() => instantiate(imports));
          const second = outcome(() => instantiate(imports));
          return { log, first, second };
        };
        const expected = observe((io) => (new WebAssembly.Instance(native, io as WebAssembly.Imports).exports['call'] as () => number)());
        assert.deepEqual(expected.log, ['prepareStackTrace 1', 'prepareStackTrace 2']);
        for (const reuse of [true, false]) {
          const engine = new Engine({ backend, backgroundReset: false });
          const p = engine.prepare(bytes, { reuse });
          const got = observe((io) => callOnce(p, io));
          assert.deepEqual(got, expected, `${c.module}.${c.name}, reuse ${reuse}`);
          engine.close();
        }
      }
    } finally {
      Error.prepareStackTrace = saved;
    }
  });

  test(`reuse: imports that are not an object throw V8's TypeError even when the module imports nothing (${backend})`, () => {
    const bytes = buildModule({ ...DATA, funcs: [{ export: 'f', results: [I32], body: [0x41, 5] }] });
    const native = new WebAssembly.Module(bytes);
    const engine = new Engine({ backend, backgroundReset: false });
    const p = engine.prepare(bytes, { reuse: true });
    assert.equal(p.reuse.enabled, true);
    for (const v of [undefined, {}, 5, null, 'x', Symbol('s'), 0n, true]) {
      for (let round = 0; round < 2; round++) {
        const want = outcome(() => (new WebAssembly.Instance(native, v as WebAssembly.Imports).exports['f'] as () => number)());
        const got = outcome(() => {
          const l = p.instantiate(v as Imports);
          try {
            return (l.exports['f'] as () => number)();
          } finally {
            l.release();
          }
        });
        assert.equal(got, want, String(v));
      }
    }
    assert.equal(engine.stats().liveLeases, 0);
    engine.close();
  });

  test(`pinned imports: a key answering two NaNs gives V8 both, payloads kept (reuse fall-back and conditional images) (${backend})`, () => {
    const nanA = nan(0x7ff8000000000001n);
    const nanB = nan(0x7ff8000000000002n);
    const exportsOf = [
      { export: 'z0', results: [I64], body: [0x23, 0, 0xbd] },
      { export: 'z1', results: [I64], body: [0x23, 1, 0xbd] },
    ];
    const cases = [
      {
        // Modules a and b are one object; a bound function makes the lease fall back (V8 gets the pinned object).
        reuse: true,
        bytes: buildModule({
          importFuncs: [{ module: 'f', name: 'g', results: [] }],
          importGlobals: [
            { module: 'a', name: 'z', type: F64 },
            { module: 'b', name: 'z', type: F64 },
          ],
          ...DATA,
          funcs: exportsOf,
        }),
        imports: () => {
          let n = 0;
          const x = {
            get z() {
              return n++ === 0 ? nanA : nanB;
            },
          };
          return { f: { g: (() => {}).bind(null) }, a: x, b: x };
        },
      },
      {
        // A data segment at an imported global's offset: conditional images, imports pinned.
        reuse: false,
        bytes: buildModule({
          importGlobals: [
            { module: 'c', name: 'z', type: F64 },
            { module: 'c', name: 'z', type: F64 },
            { module: 'o', name: 'base', type: I32 },
          ],
          memories: [{ min: 1 }],
          data: [{ offset: { global: 2 }, bytes: new Array<number>(8192).fill(7) }],
          funcs: exportsOf,
        }),
        imports: () => {
          let n = 0;
          return {
            o: { base: 4096 },
            c: {
              get z() {
                return n++ === 0 ? nanA : nanB;
              },
            },
          };
        },
      },
    ];
    const bits = (e: WebAssembly.Exports) => [(e['z0'] as () => bigint)(), (e['z1'] as () => bigint)()];
    const engine = new Engine({ backend, backgroundReset: false });
    for (const c of cases) {
      const want = bits(new WebAssembly.Instance(new WebAssembly.Module(c.bytes), c.imports() as WebAssembly.Imports).exports);
      assert.deepEqual(want, [0x7ff8000000000001n, 0x7ff8000000000002n]);
      const p = engine.prepare(c.bytes, { reuse: c.reuse });
      for (let round = 0; round < 2; round++) {
        const l = p.instantiate(c.imports() as Imports);
        assert.deepEqual(bits(l.exports), want, `reuse ${c.reuse}, lease ${round}`);
        l.release();
      }
    }
    engine.close();
  });

  test(`reuse: a signaling NaN given to an f64 global import keeps its bits, as natively (${backend})`, () => {
    const bytes = buildModule({
      importGlobals: [
        { module: 'c', name: 'z', type: F64 },
        { module: 'c', name: 'w', type: F64 },
      ],
      ...DATA,
      funcs: [{ export: 'z', results: [I64], body: [0x23, 0, 0xbd] }],
    });
    const native = new WebAssembly.Module(bytes);
    const snan = nan(0x7ff4000000000001n);
    const variants: Record<string, () => unknown> = {
      plain: () => ({ c: { z: snan, w: 1.5 } }),
      frozen: () => Object.freeze({ c: Object.freeze({ z: snan, w: 1.5 }) }),
      getter: () => ({
        c: {
          get z() {
            return snan;
          },
          w: 1.5,
        },
      }),
    };
    const engine = new Engine({ backend, backgroundReset: false });
    const p = engine.prepare(bytes, { reuse: true });
    assert.equal(p.reuse.enabled, true);
    for (const [name, make] of Object.entries(variants)) {
      const want = (new WebAssembly.Instance(native, make() as WebAssembly.Imports).exports['z'] as () => bigint)();
      assert.equal(want, 0x7ff4000000000001n);
      for (let round = 0; round < 2; round++) {
        const l = p.instantiate(make() as Imports);
        assert.equal((l.exports['z'] as () => bigint)(), want, `${name}, lease ${round}`);
        l.release();
      }
    }
    engine.close();
  });
}

for (const backend of BACKENDS) {
  test(`pinned imports: a Proxy value is never asked anything V8 would not ask (no getPrototypeOf trap) (${backend})`, () => {
    const reuseBytes = buildModule({
      importFuncs: [{ module: 'a', name: 'f', results: [I32] }],
      ...DATA,
      funcs: [{ export: 'call', results: [I32], body: [0x10, 0] }],
    });
    // Conditional images (a data segment at an imported global's offset), module objects a and b one object whose getter answers two Proxies.
    const condBytes = buildModule({
      importFuncs: [
        { module: 'a', name: 'f', results: [I32] },
        { module: 'b', name: 'f', results: [I32] },
      ],
      importGlobals: [{ module: 'o', name: 'base', type: I32 }],
      memories: [{ min: 1 }],
      data: [{ offset: { global: 0 }, bytes: new Array<number>(8192).fill(7) }],
      funcs: [{ export: 'call', results: [I32], body: [0x10, 0, 0x10, 1, 0x6a] }],
    });
    const proxy = (log: string[], r: number) =>
      new Proxy(() => r, {
        getPrototypeOf(t) {
          log.push('getPrototypeOf');
          return Reflect.getPrototypeOf(t);
        },
        get(t, k, rec) {
          log.push(`get ${String(k)}`);
          return Reflect.get(t, k, rec) as unknown;
        },
      });
    const cases = [
      { bytes: reuseBytes, reuse: true, make: (log: string[]) => ({ a: { f: proxy(log, 7) } }) },
      {
        bytes: condBytes,
        reuse: false,
        make: (log: string[]) => {
          let n = 0;
          const x = {
            get f() {
              log.push('f');
              return proxy(log, ++n);
            },
          };
          return { a: x, b: x, o: { base: 4096 } };
        },
      },
    ];
    const engine = new Engine({ backend, backgroundReset: false });
    for (const c of cases) {
      const observe = (instantiate: (io: unknown) => unknown) => {
        const log: string[] = [];
        return { out: outcome(() => instantiate(c.make(log))), log };
      };
      const native = new WebAssembly.Module(c.bytes);
      const want = observe((io) => (new WebAssembly.Instance(native, io as WebAssembly.Imports).exports['call'] as () => number)());
      assert.equal(want.log.includes('getPrototypeOf'), false);
      const p = engine.prepare(c.bytes, { reuse: c.reuse });
      for (let round = 0; round < 2; round++) {
        const got = observe((io) => callOnce(p, io));
        assert.deepEqual(got, want, `reuse ${c.reuse}, lease ${round}`);
      }
    }
    engine.close();
  });
}
