/**
 * Images in imported memories, decided by what the memory holds now.
 *
 * Every test here compares the engine with V8 on the same sequence of steps
 * and reads the memories under test only at the end: reading a memory
 * between the steps changes what the kernel reports about its pages (a read
 * fault maps the zero page), which would hide exactly the mistakes these
 * tests are for.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type Lease } from '../src/index.js';
import { BACKENDS, binding, digest, fns, leaseMemory, outcome } from './helpers/env.js';
import { buildModule, pseudoRandomBytes, sleb, stdFuncs, type DataSpec, type FuncSpec, type ModuleSpec } from './helpers/wasm.js';

const PAGE = 4096;
const WASM_PAGE = 65536;

const imported = (data: DataSpec[], extra: Partial<ModuleSpec> = {}): Uint8Array<ArrayBuffer> =>
  buildModule({
    importMemory: { module: 'env', name: 'memory', min: 1, max: 8 },
    importGlobals: [{ module: 'env', name: '__memory_base' }],
    funcs: stdFuncs,
    data,
    ...extra,
  });

/** Every order of 0..n-1. */
function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  const out: number[][] = [];
  for (const rest of permutations(n - 1)) {
    for (let i = 0; i <= rest.length; i++) out.push([...rest.slice(0, i), n - 1, ...rest.slice(i)]);
  }
  return out;
}

// Five modules over one imported memory (2 wasm pages = 32 host pages):
// different offsets, pages shared between modules, bytes overlapping,
// segments of zeros over another module's data, one position-independent.
const MODULES: Uint8Array<ArrayBuffer>[] = [
  imported([
    { offset: 16, bytes: [0x61, 0x62, 0x63] },
    { offset: 5 * PAGE + 100, bytes: pseudoRandomBytes(200, 1) },
  ]),
  imported([
    { offset: 2048, bytes: pseudoRandomBytes(100, 2) }, // the same page as module 0's first segment
    { offset: 8 * PAGE, bytes: pseudoRandomBytes(12 * PAGE, 3) }, // a long run: mapped when the pages are zero
  ]),
  imported([
    { offset: 10 * PAGE + 5, bytes: pseudoRandomBytes(2 * PAGE, 4) }, // over module 1's bytes
    { offset: 17, bytes: [1, 0, 2] }, // over module 0's bytes
  ]),
  imported([{ offset: { global: 0 }, bytes: pseudoRandomBytes(3 * PAGE, 5) }]), // at __memory_base: pages 4..7, shares page 5 with module 0
  imported([
    { offset: 12 * PAGE, bytes: new Uint8Array(3 * PAGE) }, // zeros over module 1's and 2's data
    { offset: 30 * PAGE, bytes: pseudoRandomBytes(10, 6) },
  ]),
];
const MODULE_IMPORTS = (memory: WebAssembly.Memory) => ({ env: { memory, __memory_base: 4 * PAGE + 300 } });
const NATIVE_MODULES = MODULES.map((b) => new WebAssembly.Module(b));

for (const backend of BACKENDS) {
  test(`n modules over one imported memory, in every order, no reads between: equal to native (${backend})`, () => {
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const prepared = MODULES.map((b) => engine.prepare(b));
    const orders = permutations(MODULES.length);
    assert.equal(orders.length, 120);
    const mismatches: string[] = [];
    for (const order of orders) {
      const memory = new WebAssembly.Memory({ initial: 2, maximum: 8 });
      const nativeMemory = new WebAssembly.Memory({ initial: 2, maximum: 8 });
      const leases: Lease[] = [];
      for (const i of order) {
        leases.push(prepared[i]!.instantiate(MODULE_IMPORTS(memory)));
        new WebAssembly.Instance(NATIVE_MODULES[i]!, MODULE_IMPORTS(nativeMemory));
      }
      if (digest(memory) !== digest(nativeMemory)) mismatches.push(order.join(''));
      for (const l of leases) l.release();
    }
    assert.deepEqual(mismatches, [], 'orders whose final memory differs from native');
    const s = engine.stats();
    assert.equal(s.instantiations, 120 * MODULES.length);
    if (backend === 'native') {
      assert.ok(s.bytesMapped > 0, 'images were mapped');
      // A module whose pages all hold data (or are mapped from another
      // module's image) by its turn gets its bytes written: that is all.
      assert.deepEqual(Object.keys(s.fallbacks).filter((r) => r !== 'non-zero'), [], JSON.stringify(s.fallbacks));
      assert.ok((s.fallbacks['non-zero'] ?? 0) <= 120 * (MODULES.length - 1), `the first module of each order maps into the fresh memory: ${JSON.stringify(s.fallbacks)}`);
    } else {
      assert.deepEqual(s.fallbacks, { backend: 120 * MODULES.length }, 'the copy backend leaves every imported memory to V8, counted');
    }
    engine.close();
  });
}

test('a side-module layout: a calloc-ed range partly used by the caller; the module lands in between, imaged and equal to native', () => {
  const b = binding();
  const from = 2 * WASM_PAGE; // the caller's allocation: [from, to), host pages 32..51
  const base = from + 128; // __memory_base: the module's data starts inside the first page
  const data = pseudoRandomBytes(20 * PAGE - 300, 7);
  const to = base + data.length + 100; // and ends inside the last page, 100 bytes before the allocation's end
  const bytes = imported([{ offset: { global: 0 }, bytes: data }], {
    importMemory: { module: 'env', name: 'memory', min: 4, max: 16 },
  });
  const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
  const p = engine.prepare(bytes);
  const layout = (memory: WebAssembly.Memory): void => {
    const view = new Uint8Array(memory.buffer);
    view.fill(0x11, 0, 1000); // the caller's own data elsewhere
    view.fill(0, from, to); // calloc: zero-filled, so the pages are present
    view.fill(0x22, from, from + 100); // the caller uses the start of the first page...
    view.fill(0x33, to - 100, to); // ...and the end of the last one
  };
  // nativeWhenFaster: false (the mechanism, whatever the size): imaged from the first time.
  for (let i = 0; i < 4; i++) {
    const memory = new WebAssembly.Memory({ initial: 4, maximum: 16 });
    const nativeMemory = new WebAssembly.Memory({ initial: 4, maximum: 16 });
    layout(memory);
    layout(nativeMemory);
    const before = engine.stats().bytesMapped;
    const lease = p.instantiate({ env: { memory, __memory_base: base } });
    new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory: nativeMemory, __memory_base: base } });
    // The whole pages between the edge pages were mapped from the image, so
    // none of them is resident until read (V8 would have written them all).
    const inner = b.residentPages(memory, from + PAGE, 18 * PAGE);
    const mapped = engine.stats().bytesMapped - before;
    assert.equal(digest(memory), digest(nativeMemory), `instantiation ${i}`);
    assert.equal(inner, 0, 'the inner pages were mapped, not written');
    assert.equal(mapped, 18 * PAGE, 'the pages between the edge pages were mapped');
    lease.release();
  }
  assert.deepEqual(engine.stats().fallbacks, {});
  assert.notEqual(p.memories[0]!.image, null);
  engine.close();
});

// Module A defines and exports its memory, with a fixed image on pages 1..3.
const A_DATA = pseudoRandomBytes(3 * PAGE, 8);
const MODULE_A = buildModule({
  memories: [{ min: 1, max: 4, export: 'mem' }],
  funcs: stdFuncs,
  data: [{ offset: PAGE, bytes: A_DATA }],
});
// Module B imports a memory: data on pages A's image does not cover (mapped),
// and on one page it does (written).
const MODULE_B = imported([
  { offset: 6 * PAGE, bytes: pseudoRandomBytes(5 * PAGE, 9) },
  { offset: 2 * PAGE + 10, bytes: [9, 9, 9] },
]);

for (const backgroundReset of [false, true]) {
  for (const keepResident of [0, undefined]) {
    test(`a pooled memory another module's image was mapped into: its next tenants equal native (background ${backgroundReset}, keepResident ${keepResident ?? 'default'})`, () => {
      const engine = new Engine({ backend: 'native', backgroundReset, ...(keepResident !== undefined ? { keepResident } : {}), nativeWhenFaster: false });
      const a = engine.prepare(MODULE_A);
      const bModule = engine.prepare(MODULE_B);
      const want = digest(new WebAssembly.Instance(new WebAssembly.Module(MODULE_A)).exports['mem'] as WebAssembly.Memory);
      const poisoned = new Set<WebAssembly.Memory>();
      const tenants: string[] = [];
      for (let round = 0; round < 4; round++) {
        const lease = a.instantiate();
        const memory = leaseMemory(lease);
        if (poisoned.has(memory)) tenants.push(digest(memory)); // a next tenant of a poisoned memory: read once, now
        if (round < 2) {
          const b = bModule.instantiate({ env: { memory, __memory_base: 0 } });
          b.release();
          poisoned.add(memory);
        }
        lease.release();
      }
      for (let i = 0; i < 6; i++) {
        const lease = a.instantiate();
        const memory = leaseMemory(lease);
        if (poisoned.has(memory)) tenants.push(digest(memory));
        lease.release();
      }
      assert.ok(tenants.length >= 4, `next tenants of a poisoned memory seen: ${tenants.length}`);
      assert.deepEqual(tenants, tenants.map(() => want), 'every next tenant equals a fresh native instance');
      assert.ok(engine.stats().bytesMapped >= 2 * 5 * PAGE, 'module B’s image was mapped into A’s memory');
      engine.close();
    });
  }
}

test('a released memory whose image was disposed, with another image mapped into it, resets to zero', () => {
  const engine = new Engine({ backend: 'native', backgroundReset: false, nativeWhenFaster: false });
  const a = engine.prepare(MODULE_A);
  const bModule = engine.prepare(MODULE_B);
  const lease = a.instantiate();
  const memory = leaseMemory(lease);
  bModule.instantiate({ env: { memory, __memory_base: 0 } }).release();
  a.dispose(); // the slot's own image is closed while the lease lives
  lease.release();
  // The slot is clean and all zero now; a module without data gets it.
  const zero = engine.prepare(buildModule({ memories: [{ min: 1, max: 4, export: 'mem' }], funcs: stdFuncs }));
  const z = zero.instantiate();
  assert.equal(leaseMemory(z), memory, 'the same pooled memory');
  assert.equal(digest(memory), digest(new WebAssembly.Memory({ initial: 1 })));
  z.release();
  engine.close();
});

// A start function that writes memory, then fails: in V8 (unreachable), or in
// an import that throws a LinkError or an error whose message looks like V8's.
const startFailing = (fail: 'trap' | 'import'): Uint8Array<ArrayBuffer> => {
  const start: FuncSpec = {
    body: [
      0x41, ...sleb(2 * PAGE + 4), // i32.const: inside the data's pages
      0x41, 0x2a, // i32.const 42
      0x3a, 0x00, 0x00, // i32.store8
      ...(fail === 'trap' ? [0x00] : [0x10, 0x00]), // unreachable | call $env.f
    ],
  };
  return buildModule({
    importFuncs: fail === 'import' ? [{ module: 'env', name: 'f' }] : [],
    importMemory: { module: 'env', name: 'memory', min: 1, max: 8 },
    funcs: [start],
    start: fail === 'import' ? 1 : 0,
    data: [{ offset: 2 * PAGE, bytes: pseudoRandomBytes(6 * PAGE, 10) }],
  });
};

for (const backend of BACKENDS) {
  test(`a start function that writes memory, then fails: the memory equals native (${backend})`, () => {
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const errors: (() => unknown)[] = [
      () => new WebAssembly.LinkError('from the import'),
      () => new Error('WebAssembly.Instance(): from the import'),
      () => new TypeError('plain'),
    ];
    const cases: { bytes: Uint8Array<ArrayBuffer>; f?: () => never }[] = [
      { bytes: startFailing('trap') },
      ...errors.map((e) => ({
        bytes: startFailing('import'),
        f: () => {
          throw e();
        },
      })),
    ];
    for (const c of cases) {
      const p = engine.prepare(c.bytes);
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 8 });
      const nativeMemory = new WebAssembly.Memory({ initial: 1, maximum: 8 });
      const got = outcome(() => p.instantiate({ env: { memory, ...(c.f ? { f: c.f } : {}) } }));
      const want = outcome(() => new WebAssembly.Instance(new WebAssembly.Module(c.bytes), { env: { memory: nativeMemory, ...(c.f ? { f: c.f } : {}) } }));
      assert.notEqual(want, 'ok');
      assert.equal(got, want);
      assert.equal(digest(memory), digest(nativeMemory), want);
    }
    assert.equal(engine.stats().liveLeases, 0);
    if (backend === 'native') assert.equal(engine.stats().fallbacks['start-function'], 4, 'each counted');
    engine.close();
  });
}

test('fallbacks are counted with their reason', async () => {
  const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
  const p = engine.prepare(MODULES[1]!);
  const memory = () => new WebAssembly.Memory({ initial: 2, maximum: 8 });
  (await p.instantiateAsync(MODULE_IMPORTS(memory()))).release();
  assert.equal(engine.stats().fallbacks['async'], 1);
  // A memory that is not a genuine WebAssembly.Memory: V8's own LinkError.
  assert.throws(() => p.instantiate({ env: { memory: {} as WebAssembly.Memory, __memory_base: 0 } }), WebAssembly.LinkError);
  assert.equal(engine.stats().fallbacks['imports'], 1);
  // Segments that do not fit the memory: V8 traps, as natively.
  assert.throws(() => p.instantiate({ env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 8 }), __memory_base: 0 } }), WebAssembly.RuntimeError);
  assert.equal(engine.stats().fallbacks['out-of-bounds'], 1);
  // Every page the image would cover holds data: all written, nothing mapped.
  const full = memory();
  new Uint8Array(full.buffer).fill(1);
  const native = memory();
  new Uint8Array(native.buffer).fill(1);
  p.instantiate(MODULE_IMPORTS(full)).release();
  new WebAssembly.Instance(NATIVE_MODULES[1]!, MODULE_IMPORTS(native));
  assert.equal(digest(full), digest(native));
  assert.equal(engine.stats().fallbacks['non-zero'], 1);
  // Scattered zero pages: more runs to map than the engine maps; all written.
  const wide = engine.prepare(imported([{ offset: 8 * PAGE, bytes: pseudoRandomBytes(48 * PAGE, 11) }], { importMemory: { module: 'env', name: 'memory', min: 4, max: 8 } }));
  const scattered = new WebAssembly.Memory({ initial: 4, maximum: 8 });
  const nativeScattered = new WebAssembly.Memory({ initial: 4, maximum: 8 });
  for (const m of [scattered, nativeScattered]) {
    const v = new Uint8Array(m.buffer);
    for (let page = 8; page < 56; page += 2) v[page * PAGE + 7] = 1; // every other page of the image's range holds data
  }
  wide.instantiate(MODULE_IMPORTS(scattered)).release();
  new WebAssembly.Instance(new WebAssembly.Module(imported([{ offset: 8 * PAGE, bytes: pseudoRandomBytes(48 * PAGE, 11) }], { importMemory: { module: 'env', name: 'memory', min: 4, max: 8 } })), MODULE_IMPORTS(nativeScattered));
  assert.equal(digest(scattered), digest(nativeScattered));
  assert.equal(engine.stats().fallbacks['scattered'], 1);
  const s = engine.stats();
  assert.equal(s.fallbacks['async'], 1);
  assert.equal(Object.values(s.fallbacks).reduce((a, b) => a + b, 0), 5, JSON.stringify(s.fallbacks));
  engine.close();
});

test('the store8 helper module works over an imaged imported memory (functions see the image)', () => {
  const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
  const p = engine.prepare(MODULES[1]!);
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 8 });
  const lease = p.instantiate(MODULE_IMPORTS(memory));
  const f = fns(lease.exports);
  const data = pseudoRandomBytes(12 * PAGE, 3);
  assert.equal(f.load8!(8 * PAGE + 5), data[5]);
  f.store8!(8 * PAGE + 5, 0);
  assert.equal(new Uint8Array(memory.buffer)[8 * PAGE + 5], 0);
  lease.release();
  engine.close();
});

// Emscripten builds that import their memory zero their .bss in a start
// function: a memory.fill at constant offsets, or at __memory_base plus a
// constant (position-independent). Such a start function reads nothing, and
// the engine evaluates it to know what it fills and that it cannot trap.
const fillStart = (dest: number[], value: number, length: number): FuncSpec => ({
  locals: [0x7f],
  body: [
    ...dest,
    0x22, 0x00, // local.tee 0
    0x24, 0x01, // global.set 1 (a defined global, as Emscripten's GOT entries)
    0x20, 0x00, // local.get 0
    0x41, ...sleb(value),
    0x41, ...sleb(length),
    0xfc, 0x0b, 0x00, // memory.fill
  ],
});
const withFillStart = (dest: number[], value: number, length: number): Uint8Array<ArrayBuffer> =>
  imported([{ offset: { global: 0 }, bytes: pseudoRandomBytes(10 * PAGE, 12) }], {
    funcs: [...stdFuncs, fillStart(dest, value, length)],
    start: stdFuncs.length,
    globals: [{ type: 0x7f, mutable: true, init: [0x41, 0x00] }],
  });

for (const backend of BACKENDS) {
  test(`a start function that only fills memory (.bss): imaged, and equal to native even where the fill covers data (${backend})`, () => {
    // nativeWhenFaster off: each module is instantiated once, and its base must get an image the first time.
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const base = 3 * PAGE + 40;
    const cases = [
      withFillStart([0x41, ...sleb(base + 9 * PAGE)], 0, 3 * PAGE), // constant offset, zeros over the data's end and past it
      withFillStart([0x23, 0x00, 0x41, ...sleb(5 * PAGE + 3), 0x6a], 0x5a, 1000), // __memory_base + constant, inside the data
      withFillStart([0x41, ...sleb(2 * WASM_PAGE - 10)], 0, 100), // would trap: V8 applies the data first, as natively
    ];
    for (const [i, bytes] of cases.entries()) {
      const p = engine.prepare(bytes);
      const memory = new WebAssembly.Memory({ initial: 2, maximum: 8 });
      const nativeMemory = new WebAssembly.Memory({ initial: 2, maximum: 8 });
      // Another module's data first, on pages this one shares.
      prepared0(engine).instantiate(MODULE_IMPORTS(memory));
      new WebAssembly.Instance(NATIVE_MODULES[0]!, MODULE_IMPORTS(nativeMemory));
      const got = outcome(() => p.instantiate({ env: { memory, __memory_base: base } }));
      const want = outcome(() => new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory: nativeMemory, __memory_base: base } }));
      assert.equal(got, want, `case ${i}`);
      assert.equal(digest(memory), digest(nativeMemory), `case ${i}`);
    }
    if (backend === 'native') {
      const s = engine.stats();
      assert.deepEqual(s.fallbacks, { 'start-function': 1 }, 'only the start function that traps fell back');
    }
    engine.close();
  });
}

const prepared0Cache = new WeakMap<Engine, ReturnType<Engine['prepare']>>();
function prepared0(engine: Engine): ReturnType<Engine['prepare']> {
  let p = prepared0Cache.get(engine);
  if (!p) prepared0Cache.set(engine, (p = engine.prepare(MODULES[0]!)));
  return p;
}

// 100 host pages of data in an imported memory: enough for the default
// policy (src/policy.ts) to image it.
const RESIDENT_MODULE = buildModule({
  importMemory: { module: 'env', name: 'memory', min: 8, max: 16 },
  funcs: stdFuncs,
  data: [{ offset: WASM_PAGE, bytes: pseudoRandomBytes(100 * PAGE, 12) }],
});

test('default policy: a range the program already holds (zero-filled, as calloc leaves it) is left to V8, counted "resident"; an untouched one is imaged; both equal native', () => {
  const engine = new Engine({ backend: 'native' });
  const p = engine.prepare(RESIDENT_MODULE);
  assert.equal(p.memories[0]!.excluded, null, 'the policy images this memory');
  const original = new WebAssembly.Module(RESIDENT_MODULE);
  const run = (prepare: (m: WebAssembly.Memory) => void) => {
    const memory = new WebAssembly.Memory({ initial: 8, maximum: 16 });
    const nativeMemory = new WebAssembly.Memory({ initial: 8, maximum: 16 });
    prepare(memory);
    prepare(nativeMemory);
    const before = engine.stats().bytesMapped;
    const lease = p.instantiate({ env: { memory } });
    new WebAssembly.Instance(original, { env: { memory: nativeMemory } });
    const mapped = engine.stats().bytesMapped - before;
    assert.equal(digest(memory), digest(nativeMemory));
    lease.release();
    return mapped;
  };
  assert.equal(run(() => {}), 100 * PAGE, 'untouched: mapped');
  assert.deepEqual(engine.stats().fallbacks, {});
  // Zero-filled: V8's copy onto these pages takes no page faults; mapping cannot win.
  assert.equal(run((m) => new Uint8Array(m.buffer).fill(0, WASM_PAGE, WASM_PAGE + 100 * PAGE)), 0, 'zero-filled: written by V8');
  assert.deepEqual(engine.stats().fallbacks, { resident: 1 });
  // A few resident pages (under a quarter): still imaged, those pages included (they hold zeros).
  assert.equal(run((m) => new Uint8Array(m.buffer).fill(0, WASM_PAGE, WASM_PAGE + 10 * PAGE)), 100 * PAGE);
  assert.deepEqual(engine.stats().fallbacks, { resident: 1 });
  engine.close();
  // With nativeWhenFaster off, the mechanism whatever it costs: imaged.
  const every = new Engine({ backend: 'native', nativeWhenFaster: false });
  const q = every.prepare(RESIDENT_MODULE);
  const memory = new WebAssembly.Memory({ initial: 8, maximum: 16 });
  new Uint8Array(memory.buffer).fill(0, WASM_PAGE, WASM_PAGE + 100 * PAGE);
  q.instantiate({ env: { memory } }).release();
  assert.equal(every.stats().bytesMapped, 100 * PAGE);
  assert.deepEqual(every.stats().fallbacks, {});
  every.close();
});

test('when the fallback form would be the original as is, the original module is used: no second compile', () => {
  // In a child: the engine's own compiles counted through the natives it captures at load (src/wasm-api.ts).
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-fallback-'));
  const file = join(dir, 'm.wasm');
  writeFileSync(file, RESIDENT_MODULE);
  const lib = new URL('../src/index.js', import.meta.url).href;
  const engineLib = new URL('../src/engine.js', import.meta.url).href;
  const script = `
    let compiles = 0;
    class CountingModule extends WebAssembly.Module { constructor(b) { compiles++; super(b); } }
    globalThis[Symbol.for('wasm-cow.natives')] = { Module: CountingModule, Instance: WebAssembly.Instance, compile: WebAssembly.compile, instantiate: WebAssembly.instantiate, validate: WebAssembly.validate };
    const { Engine } = await import(${JSON.stringify(lib)});
    const { prepareCompiled } = await import(${JSON.stringify(engineLib)});
    const bytes = new Uint8Array((await import('node:fs')).readFileSync(${JSON.stringify(file)}));
    const original = new WebAssembly.Module(bytes);
    const engine = new Engine({ backend: 'native' });
    const p = prepareCompiled(engine, bytes, original);
    const before = compiles;
    const memory = new WebAssembly.Memory({ initial: 8, maximum: 16 });
    new Uint8Array(memory.buffer).fill(1);
    p.instantiate({ env: { memory } }).release();
    const view = new Uint8Array(memory.buffer);
    console.log(JSON.stringify({ compiles: compiles - before, fallbacks: engine.stats().fallbacks, first: view[${WASM_PAGE}], last: view[${WASM_PAGE + 100 * PAGE - 1}] }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { compiles: number; fallbacks: Record<string, number>; first: number; last: number };
  const data = pseudoRandomBytes(100 * PAGE, 12);
  // Counted 'resident' (the filled pages are resident), 'non-zero' where that check is absent: V8 writes the data either way.
  assert.equal(Object.values(out.fallbacks).reduce((a, b) => a + b, 0), 1, JSON.stringify(out.fallbacks));
  assert.equal(out.compiles, 0, 'the fallback is the original module, compiled once by the caller');
  assert.deepEqual([out.first, out.last], [data[0], data[data.length - 1]], 'V8 wrote the data');
});
