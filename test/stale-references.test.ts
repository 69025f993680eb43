/**
 * Nothing a released lease handed out reaches the next tenant (issue 10):
 * stale buffers (the prototype getter, a getter saved before wasm-cow
 * loaded), a Proxy or accessor on the imports object, release() during a
 * call, raw functions (table.get, funcref results and globals), the
 * Emscripten adapter with sql.js (test/helpers/stale.ts); on both backends, with inline and
 * background resets, and on two worker threads. Also: pooled memories are
 * plain, lease.exports' shape, what stays pooled and what is retired.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
// First: it saves the buffer getter before wasm-cow loads.
import { SCENARIOS, tableModule, type StaleConfig } from './helpers/stale.js';

const { Engine, InvalidArgumentError, ReleasedInstanceError } = await import('../src/index.js');
const leaseModule = await import('../src/lease.js');
/** The instance for the test's own checks, not counted as handed out (on code without the hook: lease.instance). */
const unexposedInstance = (lease: import('../src/index.js').Lease): WebAssembly.Instance =>
  'unexposedInstance' in leaseModule ? leaseModule.unexposedInstance(lease) : (lease as { instance: WebAssembly.Instance }).instance;
const { buildModule, I32, stdFuncs, str, uleb } = await import('../src/bench/builder.js');
const { BACKENDS } = await import('./helpers/env.js');

const CONFIGS: StaleConfig[] = BACKENDS.flatMap((backend) => [false, true].map((backgroundReset) => ({ backend, backgroundReset })));
const label = (c: StaleConfig) => `${c.backend}, ${c.backgroundReset ? 'background' : 'inline'} resets`;
type Fn = (...args: number[]) => number;

for (const config of CONFIGS) {
  for (const [name, scenario] of Object.entries(SCENARIOS)) {
    test(`stale references: ${name} (${label(config)})`, async () => {
      assert.deepEqual(await scenario(config), []);
    });
  }
}

test('stale references on two worker threads at once: every scenario, every configuration', async () => {
  const child = fileURLToPath(new URL('./helpers/stale-child.js', import.meta.url));
  const run = () =>
    new Promise<string[]>((resolve, reject) => {
      const w = new Worker(child, { workerData: { configs: CONFIGS } });
      let result: string[] | null = null;
      w.on('message', (m: string[]) => (result = m));
      w.on('error', reject);
      w.on('exit', (code) => (code === 0 && result ? resolve(result) : reject(new Error(`worker exited ${code}`))));
    });
  const [a, b] = await Promise.all([run(), run()]);
  assert.deepEqual(a, []);
  assert.deepEqual(b, []);
});

for (const backend of BACKENDS) {
  test(`a pooled memory is a plain WebAssembly.Memory: no own properties (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    const prepared = engine.prepare(buildModule({ memories: [{ min: 1, max: 2, export: 'mem' }], funcs: stdFuncs }));
    prepared.instantiate().release();
    const lease = prepared.instantiate();
    assert.equal(engine.stats().pooledReuses, 1);
    const m = lease.exports['mem'] as WebAssembly.Memory;
    const native = new WebAssembly.Memory({ initial: 1, maximum: 2 });
    assert.deepEqual(Object.getOwnPropertyNames(m), Object.getOwnPropertyNames(native));
    assert.deepEqual(Reflect.ownKeys(m), []);
    assert.deepEqual(Object.keys(m), Object.keys(native));
    assert.equal(JSON.stringify(m), JSON.stringify(native));
    assert.equal(delete (m as { buffer?: unknown }).buffer, true);
    assert.equal(m.buffer.byteLength, 65536);
    assert.equal(Object.getPrototypeOf(m), WebAssembly.Memory.prototype);
    lease.release();
    engine.close();
  });

  test(`lease.exports: functions wrapped as exactly as possible, memories and raw-capable objects as accessors (${backend})`, () => {
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const many = { export: 'seven', params: [I32, I32, I32, I32, I32, I32, I32], results: [I32], body: [0x20, 0, 0x20, 6, 0x6a] };
    const bytes = buildModule({
      memories: [{ min: 1, export: 'mem' }],
      globals: [{ type: I32, mutable: true, init: [0x41, 5], export: 'g' }],
      funcs: [...stdFuncs, many],
    });
    const lease = engine.prepare(bytes).instantiate();
    const e = lease.exports;
    const raw = unexposedInstance(lease).exports;
    assert.ok(Object.isFrozen(e));
    assert.equal(Object.getPrototypeOf(e), null);
    assert.deepEqual(Object.keys(e), Object.keys(raw), 'same names, same order');
    for (const name of ['load8', 'store8', 'size', 'grow', 'load32', 'seven']) {
      const d = Object.getOwnPropertyDescriptor(e, name)!;
      assert.equal(typeof d.value, 'function', name);
      assert.equal((d.value as Fn).length, (raw[name] as Fn).length, `${name}.length`);
      assert.throws(() => new (d.value as new () => unknown)(), TypeError, 'not a constructor, as natively');
    }
    const f = e as unknown as Record<string, Fn>;
    assert.equal(f['seven']!(1, 2, 3, 4, 5, 6, 7, 8), 8, 'extra arguments ignored, as natively');
    assert.equal(f['load8']!(), 0, 'a missing argument is undefined, as natively (0)');
    assert.equal(Object.getOwnPropertyDescriptor(e, 'g')!.value, raw['g'], 'an i32 global: the instance’s own, as is');
    const mem = Object.getOwnPropertyDescriptor(e, 'mem')!;
    assert.equal(typeof mem.get, 'function');
    assert.equal(mem.enumerable, true);
    assert.equal(mem.configurable, false);
    lease.release();
    assert.equal(engine.stats().retiredExposed, 0, 'the memory was never read: pooled');

    const t = engine.prepare(tableModule()).instantiate();
    for (const name of ['tbl', 'gf']) assert.equal(typeof Object.getOwnPropertyDescriptor(t.exports, name)!.get, 'function', name);
    t.release();
    engine.close();
  });

  test(`lease.exports is built at first use: same wrappers, same shape, whatever is read first (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    const prepared = engine.prepare(
      buildModule({ memories: [{ min: 1, export: 'mem' }], globals: [{ type: I32, mutable: true, init: [0x41, 5], export: 'g' }], funcs: stdFuncs }),
    );
    // A function read before the shape is looked at keeps its identity in the frozen object.
    const a = prepared.instantiate();
    const ea = a.exports as unknown as Record<string, unknown>;
    const store8 = ea['store8'];
    assert.equal(ea['store8'], store8, 'the same wrapper at each read');
    assert.equal(Object.getOwnPropertyDescriptor(ea, 'store8')!.value, store8, 'the descriptor holds the wrapper handed out');
    assert.ok('load8' in ea && !('nope' in ea) && !(Symbol.iterator in ea));
    assert.equal(ea['nope'], undefined);
    assert.equal(ea[Symbol.toStringTag as unknown as string], undefined);
    assert.deepEqual(Object.keys(ea), Object.keys(unexposedInstance(a).exports));
    assert.ok(Object.isFrozen(ea));
    assert.throws(() => {
      'use strict';
      ea['store8'] = 1;
    }, TypeError);
    assert.throws(() => Object.defineProperty(ea, 'x', { value: 1 }), TypeError);
    assert.throws(() => Object.setPrototypeOf(ea, {}), TypeError);
    assert.equal(Object.getPrototypeOf(ea), null);
    assert.equal(Reflect.deleteProperty(ea, 'load8'), false);
    a.release();
    assert.equal(engine.stats().retiredExposed, 0, 'the shape read no memory: pooled');

    // Kept past release, never read before: functions are wrappers that throw, the memory accessor throws.
    const b = prepared.instantiate();
    const eb = b.exports as unknown as Record<string, unknown>;
    b.release();
    const late = eb['load8'] as Fn;
    assert.equal(typeof late, 'function');
    assert.throws(() => late(0), ReleasedInstanceError);
    assert.throws(() => eb['mem'], ReleasedInstanceError);
    assert.equal(eb['g'], (eb['g'] as WebAssembly.Global), 'an i32 global: as is');
    assert.throws(() => Object.getOwnPropertyDescriptor(eb, 'mem')!.get!(), ReleasedInstanceError, 'materialized after release');
    assert.equal(engine.stats().retiredExposed, 0, 'nothing read: pooled');

    // The shape looked at first: the memory stays an accessor, counted when read.
    const c = prepared.instantiate();
    const ec = c.exports as unknown as Record<string, unknown>;
    assert.equal(typeof Object.getOwnPropertyDescriptor(ec, 'mem')!.get, 'function');
    assert.ok(ec['mem'] instanceof WebAssembly.Memory);
    c.release();
    assert.equal(engine.stats().retiredExposed, 1, 'the memory read: retired');
    engine.close();
  });

  test(`what is retired: the memory read, the instance, a table; per memory, per lease (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    const p = engine.prepare(buildModule({ memories: [{ min: 1, export: 'mem' }], funcs: stdFuncs }));
    const t = engine.prepare(tableModule());
    const cases: [string, () => void][] = [
      ['functions only', () => fnOf(p.instantiate(), (l) => (l.exports['load8'] as Fn)(0))],
      ['memoryBuffer()', () => fnOf(p.instantiate(), (l) => l.memoryBuffer())],
      ['exports.mem', () => fnOf(p.instantiate(), (l) => l.exports['mem'])],
      ['instance', () => fnOf(p.instantiate(), (l) => l.instance)],
      ['a table', () => fnOf(t.instantiate(), (l) => l.exports['tbl'])],
      ['a funcref result', () => fnOf(t.instantiate(), (l) => (l.exports['getf'] as Fn)())],
      ['a funcref global', () => fnOf(t.instantiate(), (l) => l.exports['gf'])],
    ];
    const retired: Record<string, number> = {};
    for (const [name, run] of cases) {
      const before = engine.stats().retiredExposed;
      run();
      retired[name] = engine.stats().retiredExposed - before;
    }
    assert.deepEqual(retired, {
      'functions only': 0,
      'memoryBuffer()': 1,
      'exports.mem': 1,
      instance: 1,
      'a table': 1,
      'a funcref result': 1,
      'a funcref global': 1,
    });
    const s = engine.stats();
    assert.equal(s.retiredMemories, s.retiredExposed, 'nothing else was retired');
    assert.equal(s.retiredExposed, 6);
    // A lent buffer is detached at release even when the memory is retired
    // (it grew, or the memory object was read too).
    for (const retire of [(l: ReturnType<typeof p.instantiate>) => (l.exports['grow'] as Fn)(1), (l: ReturnType<typeof p.instantiate>) => l.exports['mem']]) {
      const l = p.instantiate();
      retire(l);
      const lent = l.memoryBuffer();
      l.release();
      assert.equal(lent.byteLength, 0);
    }
    // Released accessors and buffers are revoked.
    const l = p.instantiate();
    const exports = l.exports;
    const buffer = l.memoryBuffer();
    l.release();
    assert.equal(buffer.byteLength, 0);
    assert.throws(() => exports['mem'], ReleasedInstanceError);
    assert.throws(() => (exports['load8'] as Fn)(0), ReleasedInstanceError);
    assert.throws(() => l.memoryBuffer(), ReleasedInstanceError);
    engine.close();
  });

  test(`a stack overflow through re-entrant wrapped calls: release() still returns the memory at once (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    const p = engine.prepare(
      buildModule({
        importFuncs: [{ module: 'env', name: 'again' }],
        memories: [{ min: 1 }],
        funcs: [...stdFuncs, { export: 'run', body: [0x10, 0] }],
      }),
    );
    for (let round = 0; round < 20; round++) {
      let lease: ReturnType<typeof p.instantiate> | undefined;
      lease = p.instantiate({ env: { again: () => (lease!.exports['run'] as Fn)() } });
      assert.throws(() => (lease!.exports['run'] as Fn)(), RangeError);
      lease.release();
      assert.equal(engine.stats().liveLeases, 0, `round ${round}: the call depth came back to 0`);
    }
    // A throwing call retires the memories (the error's frames hold the instance).
    assert.equal(engine.stats().retiredExposed, 20);
    engine.close();
  });

  test(`memoryBuffer(name): the named exported memory, or an InvalidArgumentError (${backend})`, () => {
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const lease = engine.prepare(buildModule({ memories: [{ min: 1, export: 'heap' }], funcs: stdFuncs })).instantiate();
    assert.equal(lease.memoryBuffer().byteLength, 65536);
    assert.equal(lease.memoryBuffer('heap'), lease.memoryBuffer());
    assert.throws(() => lease.memoryBuffer('load8'), InvalidArgumentError);
    assert.throws(() => lease.memoryBuffer('nope'), InvalidArgumentError);
    lease.release();
    const none = engine.prepare(buildModule({ memories: [{ min: 1 }], funcs: stdFuncs })).instantiate();
    assert.throws(() => none.memoryBuffer(), InvalidArgumentError);
    none.release();
    engine.close();
  });

  test(`release() during a call: the lease is released at once, its memories return when the outermost call ends (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    let lease: ReturnType<typeof p.instantiate> | null = null;
    const seen: unknown[] = [];
    const p = engine.prepare(
      buildModule({
        importFuncs: [{ module: 'env', name: 'cb' }],
        memories: [{ min: 1, export: 'mem' }],
        funcs: [...stdFuncs, { export: 'outer', body: [0x10, 0x00] }],
      }),
    );
    const cb = () => {
      const l = lease!;
      // Nested: the outer call is on the stack; this one releases.
      (l.exports['load8'] as Fn)(0);
      l.release();
      seen.push(l.released, engine.stats().liveLeases);
      seen.push(throwsReleased(() => (l.exports as unknown as Record<string, Fn>)['load8']));
    };
    lease = p.instantiate({ env: { cb } });
    const outer = lease.exports['outer'] as Fn;
    outer();
    assert.deepEqual(seen, [true, 1, true], 'released, still live (memories held) inside the call');
    assert.equal(engine.stats().liveLeases, 0, 'returned when the outermost call ended');
    assert.throws(() => outer(), ReleasedInstanceError);
    p.instantiate({ env: { cb: () => {} } }).release();
    assert.equal(engine.stats().pooledReuses, 1, 'and pooled');
    engine.close();
  });

  test(`a module whose imports can pass its functions out: every lease retired, even a failed one (${backend})`, () => {
    const engine = new Engine({ backend, nativeWhenFaster: false });
    // (import "env" "take" (func (param funcref))), a memory with data, store8.
    const bytes = funcrefImportModule();
    const p = engine.prepare(bytes);
    let taken: unknown = null;
    const lease = p.instantiate({ env: { take: (f: unknown) => (taken = f) } });
    (lease.exports['give'] as Fn)();
    assert.equal(typeof taken, 'function', 'the host got a raw function');
    lease.release();
    assert.equal(engine.stats().retiredExposed, 1);
    assert.throws(() => p.instantiate({ env: {} }), WebAssembly.LinkError);
    assert.equal(engine.stats().retiredExposed, 2, 'a failed instantiation’s memory too');
    assert.equal(engine.stats().pooledReuses, 0);
    engine.close();
  });
}

test('the imports object is read exactly as natively, even when a getter changes it during instantiation', async () => {
  // (import "a" "f") (import "b" "g" (result i32)) (func (export "callg") (result i32) call $g)
  const bytes = buildModule({
    importFuncs: [
      { module: 'a', name: 'f' },
      { module: 'b', name: 'g', results: [I32] },
    ],
    memories: [{ min: 1, export: 'mem' }],
    funcs: [{ export: 'callg', results: [I32], body: [0x10, 1] }],
    data: [{ offset: 0, bytes: [1] }],
  });
  const make = () => {
    const log: string[] = [];
    const b1 = { g: () => 1 };
    const b2 = { g: () => 2 };
    const imports: Record<string, unknown> = {
      a: {
        get f() {
          log.push('a.f');
          imports['b'] = b2; // natively, V8 reads imports.b after this
          return () => {};
        },
      },
      b: b1,
    };
    return { imports: imports as WebAssembly.Imports, log };
  };
  const native = make();
  const expected = (new WebAssembly.Instance(new WebAssembly.Module(bytes), native.imports).exports['callg'] as Fn)();
  assert.equal(expected, 2);
  for (const backend of BACKENDS) {
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const p = engine.prepare(bytes);
    for (const instantiate of [(i: WebAssembly.Imports) => p.instantiate(i), (i: WebAssembly.Imports) => p.instantiateAsync(i)]) {
      const mine = make();
      const lease = await instantiate(mine.imports);
      assert.equal((lease.exports['callg'] as Fn)(), expected, backend);
      assert.deepEqual(mine.log, native.log);
      lease.release();
      // Plain data everywhere: the same result, through the engine's own copy of the module objects.
      const plain = await instantiate({ a: { f: () => {} }, b: { g: () => 3 } });
      assert.equal((plain.exports['callg'] as Fn)(), 3);
      plain.release();
    }
    engine.close();
  }
});

test('externref tables and globals hold only what JS put there: handed out as they are, the memory stays pooled', () => {
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  // (table (export "xt") 1 externref) (memory (export "mem") 1) (data) (global (export "xg") (mut externref) (ref.null extern))
  const bytes = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(4, vec([[0x6f, 0x00, 1]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(6, vec([[0x6f, 0x01, 0xd0, 0x6f, 0x0b]])),
    ...section(7, vec([[...str('xt'), 1, 0], [...str('mem'), 2, 0], [...str('xg'), 3, 0]])),
    ...section(11, vec([[0x00, 0x41, 16, 0x0b, 3, 7, 8, 9]])),
  ]);
  for (const backend of BACKENDS) {
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    const p = engine.prepare(bytes);
    const lease = p.instantiate();
    const raw = unexposedInstance(lease).exports;
    for (const name of ['xt', 'xg']) assert.equal(Object.getOwnPropertyDescriptor(lease.exports, name)!.value, raw[name], name);
    lease.release();
    p.instantiate().release();
    assert.equal(engine.stats().retiredExposed, 0);
    assert.equal(engine.stats().pooledReuses, 1);
    engine.close();
  }
});

function fnOf<L extends { release(): void }>(lease: L, use: (l: L) => unknown): void {
  use(lease);
  lease.release();
}

function throwsReleased(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (e) {
    return e instanceof ReleasedInstanceError;
  }
}

/** (import "env" "take" (func (param funcref))) (memory (export "mem") 1) (data) (func (export "give") ref.func $give call $take) */
function funcrefImportModule(): Uint8Array<ArrayBuffer> {
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const body = (code: number[]) => [...uleb(code.length + 2), 0, ...code, 0x0b];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, vec([[0x60, 1, 0x70, 0], [0x60, 0, 0]])),
    ...section(2, vec([[...str('env'), ...str('take'), 0x00, 0]])),
    ...section(3, vec([[1]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(7, vec([[...str('mem'), 2, 0], [...str('give'), 0, 1]])),
    // Declares $give for ref.func (a declarative element segment).
    ...section(9, vec([[0x03, 0x00, 1, 1]])),
    ...section(10, vec([body([0xd2, 1, 0x10, 0])])),
    ...section(11, vec([[0x00, 0x41, 16, 0x0b, 3, 7, 8, 9]])),
  ]);
}

test('a start function that traps: the error can carry the raw instance, so its memory is never reused', async () => {
  // (memory 1) (data "abcd") (func $start unreachable) (start $start) (func (export "put") (param i32 i32) ...)
  const put = { export: 'put', params: [I32, I32], body: [0x20, 0, 0x20, 1, 0x3a, 0, 0] };
  const trapping = buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: [97, 98, 99, 100] }], funcs: [{ body: [0x00] }, put], start: 0 });
  const peek = { export: 'peek', params: [I32], results: [I32], body: [0x20, 0, 0x2d, 0, 0] };
  const other = buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: [97, 98, 99, 100] }], funcs: [put, peek] });
  for (const backend of BACKENDS) {
    for (const mode of ['sync', 'async'] as const) {
      const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
      const p = engine.prepare(trapping);
      let error: unknown;
      try {
        if (mode === 'sync') p.instantiate();
        else await p.instantiateAsync();
      } catch (e) {
        error = e;
      }
      assert.ok(error instanceof WebAssembly.RuntimeError, `${backend} ${mode}: ${String(error)}`);
      // What a holder of the error can reach: the failed instance, through its wasm frame.
      const old = Error.prepareStackTrace;
      Error.prepareStackTrace = (_e, sites) => sites;
      const sites = (error as unknown as { stack: NodeJS.CallSite[] }).stack;
      Error.prepareStackTrace = old;
      const stolen = sites.map((c) => c.getThis()).find((t) => t instanceof WebAssembly.Instance) as WebAssembly.Instance | undefined;
      assert.ok(stolen, 'the trap carries the instance');
      const next = engine.prepare(other).instantiate<{ peek: Fn }>();
      (stolen.exports.put as Fn)(0, 0x7a);
      assert.equal(next.exports.peek(0), 97, `${backend} ${mode}: the next tenant's memory is its own`);
      assert.equal(engine.stats().retiredExposed, 1, `${backend} ${mode}: the failed instance's memory is retired`);
      assert.equal(engine.stats().pooledReuses, 0);
      next.release();
      engine.close();
    }
  }
});

test('lease.exports kept past release: its Proxy handler, shown by util.inspect, holds nothing of the instance', async () => {
  const util = await import('node:util');
  const bytes = buildModule({ memories: [{ min: 1, export: 'mem' }], data: [{ offset: 0, bytes: [99] }], funcs: stdFuncs });
  const engine = new Engine({ backend: BACKENDS[0], backgroundReset: false, nativeWhenFaster: false });
  const p = engine.prepare(bytes);
  const lease = p.instantiate();
  const kept = lease.exports;
  void kept.store8; // a wrapper made
  lease.release();
  // What a deliberately installed inspect hook is shown of the kept object.
  const seen: unknown[] = [];
  const key = util.inspect.custom;
  const hook = function (this: unknown) {
    seen.push(this);
    return 'x';
  };
  const protos = [Function.prototype, Object.prototype] as unknown as Record<symbol, unknown>[];
  for (const o of protos) o[key] = hook;
  try {
    util.inspect(kept, { showProxy: true, depth: 6 });
  } finally {
    for (const o of protos) delete o[key];
  }
  // Walk every own property (string and symbol keys) of what was shown, a few levels deep.
  const reached = new Set<unknown>();
  const walk = (v: unknown, depth: number) => {
    if ((typeof v !== 'object' && typeof v !== 'function') || v === null || reached.has(v) || depth > 4) return;
    reached.add(v);
    for (const k of Reflect.ownKeys(v)) {
      const d = Object.getOwnPropertyDescriptor(v, k);
      if (d !== undefined && 'value' in d) walk(d.value, depth + 1);
    }
  };
  for (const v of seen) walk(v, 0);
  assert.ok(seen.length > 0, 'the hook ran');
  for (const v of reached) {
    assert.ok(!(v instanceof WebAssembly.Memory), 'a memory is reachable');
    // A genuine wasm export function is named by its index; wrappers are not.
    assert.ok(!(typeof v === 'function' && /^\d+$/.test((v as { name: string }).name)), 'a wasm function is reachable');
  }
  engine.close();
});
