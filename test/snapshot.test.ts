/**
 * Snapshots (issue 12): prepared.snapshot(lease) gives a prepared module
 * whose instances start in the state the lease reached (memory, every
 * global, tables) and then behave as the lease would: the same results for
 * the same calls as continuing on the lease, and as a native instance of the
 * original driven through the same calls from the start. Also: a snapshot
 * of a snapshot, the WASI fixture against its Wizer output, and a typed
 * error for each state a snapshot cannot capture. On both backends.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { WASI } from 'node:wasi';
import { Engine, type Lease, SnapshotError, type SnapshotRefusal } from '../src/index.js';
import { unexposedInstance } from '../src/lease.js';
import { captureMemory } from '../src/snapshot/capture.js';
import { stubImports } from '../src/bench/compare.js';
import { BACKENDS } from './helpers/env.js';
import { I32, I64, rng, sleb, str, uleb } from './helpers/wasm.js';

const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;
const FUNCREF = 0x70;
const EXTERNREF = 0x6f;

// ---------------------------------------------------------------------------
// A small assembler for the modules of these tests.

const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const body = (code: number[], locals: number[][] = []): number[] => {
  const b = [...vec(locals), ...code, 0x0b];
  return [...uleb(b.length), ...b];
};

interface Func {
  type: number;
  code: number[];
  export?: string;
}

interface Spec {
  types: number[][];
  imports?: number[][];
  funcs: Func[];
  importedFuncs?: number;
  tables?: number[][];
  memories?: number[][];
  globals?: { type: number[]; mutable: boolean; init: number[]; export?: string }[];
  exports?: number[][];
  start?: number;
  elems?: number[][];
  dataCount?: number;
  data?: number[][];
}

function assemble(spec: Spec): Uint8Array<ArrayBuffer> {
  const nImported = spec.importedFuncs ?? 0;
  const exports: number[][] = [...(spec.exports ?? [])];
  spec.funcs.forEach((f, i) => {
    if (f.export !== undefined) exports.push([...str(f.export), 0x00, ...uleb(nImported + i)]);
  });
  (spec.globals ?? []).forEach((g, i) => {
    if (g.export !== undefined) exports.push([...str(g.export), 0x03, ...uleb(i)]);
  });
  const out = [0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0];
  out.push(...section(1, vec(spec.types)));
  if (spec.imports?.length) out.push(...section(2, vec(spec.imports)));
  out.push(...section(3, vec(spec.funcs.map((f) => uleb(f.type)))));
  if (spec.tables?.length) out.push(...section(4, vec(spec.tables)));
  if (spec.memories?.length) out.push(...section(5, vec(spec.memories)));
  if (spec.globals?.length) out.push(...section(6, vec(spec.globals.map((g) => [...g.type, g.mutable ? 1 : 0, ...g.init, 0x0b]))));
  if (exports.length) out.push(...section(7, vec(exports)));
  if (spec.start !== undefined) out.push(...section(8, uleb(spec.start)));
  if (spec.elems?.length) out.push(...section(9, vec(spec.elems)));
  if (spec.dataCount !== undefined) out.push(...section(12, uleb(spec.dataCount)));
  out.push(...section(10, vec(spec.funcs.map((f) => body(f.code)))));
  if (spec.data?.length) out.push(...section(11, vec(spec.data)));
  return new Uint8Array(out);
}

const bytesOf = (s: string): number[] => [...new TextEncoder().encode(s)];

// Types.
const T_VOID = [0x60, 0, 0]; // 0: () -> ()
const T_I_I = [0x60, 1, I32, 1, I32]; // 1: (i32) -> i32
const T_II_V = [0x60, 2, I32, I32, 0]; // 2: (i32, i32) -> ()
const T_V_I = [0x60, 0, 1, I32]; // 3: () -> i32

/**
 * The main module. Memory 0 (1 page, max 64, exported "mem") with an active
 * segment and a passive one (used by memory.init, never dropped); a start
 * function that writes memory and a global; mutable globals of every
 * numeric type and a null externref, all exported, plus (with `hidden`) a
 * mutable i32 that is not exported; an immutable global; a funcref table
 * (not exported) filled by an active element segment, reached through
 * call_indirect.
 */
function mainModule(hidden: boolean): Uint8Array<ArrayBuffer> {
  const globals: Spec['globals'] = [
    { type: [I32], mutable: true, init: [0x41, 1], export: 'gi' }, // 0
    { type: [I64], mutable: true, init: [0x42, ...sleb(-5)], export: 'gl' }, // 1
    { type: [F32], mutable: true, init: [0x43, 0, 0, 0xc0, 0x3f], export: 'gf' }, // 2: 1.5
    { type: [F64], mutable: true, init: [0x44, 0, 0, 0, 0, 0, 0, 0x04, 0x40], export: 'gd' }, // 3: 2.5
    { type: [EXTERNREF], mutable: true, init: [0xd0, EXTERNREF], export: 'gx' }, // 4
    { type: [I32], mutable: false, init: [0x41, ...sleb(77)], export: 'k' }, // 5
  ];
  if (hidden) globals.push({ type: [I32], mutable: true, init: [0x41, ...sleb(1000)] }); // 6
  const funcs: Func[] = [
    // 0 start: mem[16] = 0x5a; gi += 1
    { type: 0, code: [0x41, 16, 0x41, 0xda, 0x00, 0x3a, 0, 0, 0x23, 0, 0x41, 1, 0x6a, 0x24, 0] },
    { type: 2, export: 'store8', code: [0x20, 0, 0x20, 1, 0x3a, 0, 0] }, // 1
    { type: 1, export: 'load8', code: [0x20, 0, 0x2d, 0, 0] }, // 2
    { type: 1, export: 'grow', code: [0x20, 0, 0x40, 0] }, // 3
    { type: 3, export: 'size', code: [0x3f, 0] }, // 4
    // 5 hidden(): bumps the hidden global (or gi) and returns it
    hidden
      ? { type: 3, export: 'hidden', code: [0x23, 6, 0x41, 1, 0x6a, 0x24, 6, 0x23, 6] }
      : { type: 3, export: 'hidden', code: [0x23, 0, 0x41, 1, 0x6a, 0x24, 0, 0x23, 0] },
    // 6 call(i): table[i](7)
    { type: 1, export: 'call', code: [0x41, 7, 0x20, 0, 0x11, 1, 0] },
    { type: 1, code: [0x20, 0, 0x41, 10, 0x6c] }, // 7: x * 10
    { type: 1, code: [0x20, 0, 0x41, 1, 0x6a] }, // 8: x + 1
    // 9 init(dest): memory.init 1 (dest, 1, 3); returns dest
    { type: 1, export: 'init', code: [0x20, 0, 0x41, 1, 0x41, 3, 0xfc, 0x08, 1, 0, 0x20, 0] },
    // 10 sum(): a hash of every global (to compare instances from wasm's side)
    {
      type: 3,
      export: 'sum',
      code: [
        0x23, 0, // gi
        0x23, 1, 0xa7, 0x6a, // + wrap(gl)
        0x23, 2, 0xa8, 0x6a, // + trunc(gf)
        0x23, 3, 0xaa, 0x6a, // + trunc(gd)
        0x23, 5, 0x6a, // + k
        ...(hidden ? [0x23, 6, 0x6a] : []),
      ],
    },
  ];
  return assemble({
    types: [T_VOID, T_I_I, T_II_V, T_V_I],
    funcs,
    tables: [[FUNCREF, 0x01, 3, 3]],
    memories: [[0x01, 1, 64]],
    globals,
    exports: [[...str('mem'), 0x02, 0]],
    start: 0,
    elems: [[0x00, 0x41, 0, 0x0b, 3, 7, 8, 2]],
    dataCount: 2,
    data: [
      [0x00, 0x41, ...sleb(1000), 0x0b, 5, ...bytesOf('hello')],
      [0x01, 4, 1, 2, 3, 4],
    ],
  });
}

// ---------------------------------------------------------------------------
// Driving an instance, and its state.

type Ex = Record<string, unknown>;
type Op = (ex: Ex) => unknown;

const call = (ex: Ex, name: string, ...args: unknown[]): unknown => (ex[name] as (...a: unknown[]) => unknown)(...args);
const glob = (ex: Ex, name: string): WebAssembly.Global => ex[name] as WebAssembly.Global;

/** Seeded random operations: stores, grows, globals set from JS, memory.init, calls. */
function randomOps(seed: number, n: number): Op[] {
  const r = rng(seed);
  const ops: Op[] = [];
  for (let i = 0; i < n; i++) {
    const k = Math.floor(r() * 8);
    const a = r();
    const b = r();
    switch (k) {
      case 0:
      case 1:
        ops.push((ex) => {
          const size = (call(ex, 'size') as number) * 65536;
          return call(ex, 'store8', Math.floor(a * size), Math.floor(b * 255) + 1);
        });
        break;
      case 2:
        ops.push((ex) => call(ex, 'grow', a < 0.7 ? 1 : 0));
        break;
      case 3:
        ops.push((ex) => {
          glob(ex, 'gi').value = Math.floor(a * 2 ** 32) | 0;
          glob(ex, 'gl').value = BigInt(Math.floor(a * 2 ** 53)) * (b < 0.5 ? -3n : 5n);
          return glob(ex, 'gi').value;
        });
        break;
      case 4:
        ops.push((ex) => {
          glob(ex, 'gf').value = Math.fround(a * 1000 - 500);
          glob(ex, 'gd').value = b * 1e9 - 3e8;
          return glob(ex, 'gd').value;
        });
        break;
      case 5:
        ops.push((ex) => call(ex, 'init', Math.floor(a * 60000)));
        break;
      case 6:
        ops.push((ex) => call(ex, 'hidden'));
        break;
      default:
        ops.push((ex) => [call(ex, 'call', Math.floor(a * 3)), call(ex, 'load8', Math.floor(b * 65536)), call(ex, 'sum')]);
    }
  }
  return ops;
}

/** Everything observable of an instance of the main module: memory hash and size, every exported global, the table (through call), sum(). */
function state(ex: Ex): string {
  const mem = ex['mem'] as WebAssembly.Memory;
  const hash = createHash('sha256').update(new Uint8Array(mem.buffer)).digest('hex');
  const globals = ['gi', 'gl', 'gf', 'gd', 'gx', 'k'].map((g) => String(glob(ex, g).value));
  const table = [0, 1, 2].map((i) => String(call(ex, 'call', i)));
  return JSON.stringify({ pages: mem.buffer.byteLength / 65536, hash, globals, table, sum: call(ex, 'sum') });
}

/** The lease's exports, read without counting anything as handed out (the raw instance's). */
const rawExports = (lease: Lease): Ex => unexposedInstance(lease).exports as Ex;

const outcome = (f: () => unknown): string => {
  try {
    return JSON.stringify(f(), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
};

// ---------------------------------------------------------------------------

for (const backend of BACKENDS) {
  for (const hidden of [false, true]) {
    const label = `${backend}${hidden ? ', hidden global' : ''}`;
    test(`a snapshot's instances hold the lease's state and then behave as it would (${label})`, () => {
      const bytes = mainModule(hidden);
      const nativeModule = new WebAssembly.Module(bytes);
      const engine = new Engine({ backend, nativeWhenFaster: false });
      const prepared = engine.prepare(bytes, { snapshots: true });
      for (let seed = 1; seed <= 6; seed++) {
        const before = randomOps(seed, 40);
        const after = randomOps(seed + 1000, 40);
        const lease = prepared.instantiate();
        const native = new WebAssembly.Instance(nativeModule).exports as Ex;
        const leaseEx = lease.exports as Ex;
        for (const op of before) assert.equal(outcome(() => op(leaseEx)), outcome(() => op(native)));
        const snap = prepared.snapshot(lease);
        const expected = state(rawExports(lease));
        assert.equal(state(native), expected, 'the lease equals native before the snapshot');

        const copies = [snap.instantiate(), snap.instantiate()];
        for (const c of copies) assert.equal(state(rawExports(c)), expected, `seed ${seed}: a snapshot's instance starts in the lease's state`);
        // Then each behaves as the lease and the native instance do.
        for (const op of after) {
          const want = outcome(() => op(native));
          assert.equal(outcome(() => op(leaseEx)), want);
          for (const c of copies) assert.equal(outcome(() => op(c.exports as Ex)), want);
        }
        const end = state(native);
        assert.equal(state(rawExports(lease)), end);
        for (const c of copies) assert.equal(state(rawExports(c)), end);
        // A snapshot of a snapshot's instance.
        const again = snap.snapshot(copies[0]!);
        const third = again.instantiate();
        assert.equal(state(rawExports(third)), end, 'a snapshot of a snapshot');
        third.release();
        for (const c of copies) c.release();
        lease.release();
        again.dispose();
        snap.dispose();
      }
      engine.close();
    });
  }

  test(`the start function does not run again in a snapshot's instances (${backend})`, () => {
    const engine = new Engine({ backend });
    const prepared = engine.prepare(mainModule(false), { snapshots: true });
    const lease = prepared.instantiate();
    const ex = rawExports(lease);
    assert.equal(glob(ex, 'gi').value, 2); // 1, + 1 by the start function
    call(ex, 'store8', 16, 1); // undo the start function's write
    const snap = prepared.snapshot(lease);
    const copy = snap.instantiate();
    assert.equal(glob(rawExports(copy), 'gi').value, 2);
    assert.equal(call(rawExports(copy), 'load8', 16), 1);
    assert.equal(snap.memories[0]!.excluded, null, 'the state is a sealed image');
    copy.release();
    lease.release();
    engine.close();
  });
}

// ---------------------------------------------------------------------------
// The WASI fixture: a reactor whose init() takes about 30 ms, and its Wizer output.

// As in wasi.test.ts: Node 20's node:wasi fast API calls can let a GC run
// inside a call (nodejs/node#46777) once programs run on several memories.
setFlagsFromString('--no-turbo-fast-api-calls');

const fixture = (name: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(readFileSync(fileURLToPath(new URL(`../../test/fixtures/snapshot/${name}`, import.meta.url))));
const DICTIONARY = fixture('dictionary.wasm');
const WIZER = fixture('dictionary.wizer.wasm');
const wasiStubs: WebAssembly.Imports = {
  wasi_snapshot_preview1: { fd_close: () => 8, fd_fdstat_get: () => 8, fd_seek: () => 8, fd_write: () => 8 },
};
type Fns = Record<string, (...a: number[]) => number>;
const digestOf = (m: WebAssembly.Memory): string => createHash('sha256').update(new Uint8Array(m.buffer)).digest('hex');

/** Results that depend on everything init() built: lookups over the whole table, the checksum, the word count. */
function answers(f: Fns): string {
  const out: number[] = [f['word_count']!(), f['checksum']!()];
  for (let k = 0; k < 200000; k += 997) out.push(f['lookup']!(k));
  return out.join(',');
}

for (const backend of BACKENDS) {
  test(`the WASI fixture snapshotted after init equals its Wizer output, byte for byte, and runs on as it does (${backend})`, () => {
    const wizer = new WebAssembly.Instance(new WebAssembly.Module(WIZER), wasiStubs).exports as Fns & { memory: WebAssembly.Memory };
    const engine = new Engine({ backend });
    const prepared = engine.prepare(DICTIONARY, { snapshots: true });
    const lease = prepared.instantiate(wasiStubs);
    const f = lease.exports as Fns;
    assert.equal(f['lookup']!(1), -1, 'nothing built before init()');
    f['_initialize']!();
    f['init']!();
    const snap = prepared.snapshot(lease);
    assert.equal(snap.memories[0]!.initialPages, wizer.memory.buffer.byteLength / 65536);
    const copies = [snap.instantiate(wasiStubs), snap.instantiate(wasiStubs)];
    const want = answers(wizer);
    for (const c of copies) {
      assert.equal(digestOf(unexposedInstance(c).exports['memory'] as WebAssembly.Memory), digestOf(wizer.memory), 'the same memory as Wizer wrote');
      assert.equal(answers(c.exports as Fns), want);
    }
    // Then each changes as the Wizer instance and the lease do.
    for (const k of [3, 3, 77, 123456]) {
      const r = wizer['bump']!(k);
      assert.equal(f['bump']!(k), r);
      for (const c of copies) assert.equal((c.exports as Fns)['bump']!(k), r);
    }
    const end = answers(wizer);
    assert.equal(answers(f), end);
    for (const c of copies) assert.equal(answers(c.exports as Fns), end);
    for (const c of copies) c.release();
    lease.release();
    engine.close();
  });

  test(`a snapshot of a node:wasi reactor prints, with a new WASI object, what native prints (${backend})`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-snapshot-'));
    try {
      let n = 0;
      /** Runs `body` with a new WASI object whose stdout is a file; returns what it printed. */
      const printed = (body: (wasi: WASI) => void): string => {
        const file = join(dir, `out-${n++}`);
        const fd = openSync(file, 'w');
        const wasi = new WASI({ version: 'preview1', args: ['dictionary'], stdout: fd, returnOnExit: true });
        body(wasi);
        closeSync(fd);
        return readFileSync(file, 'utf8');
      };
      const steps = (f: Fns) => {
        f['init']!();
        f['bump']!(5);
        f['bump']!(99);
      };
      const native = printed((wasi) => {
        const instance = new WebAssembly.Instance(new WebAssembly.Module(DICTIONARY), wasi.getImportObject() as WebAssembly.Imports);
        wasi.initialize(instance); // runs _initialize
        steps(instance.exports as Fns);
        (instance.exports as Fns)['report']!(42);
      });
      assert.match(native, /^dictionary: \d+ distinct words, lookup\(42\) = \d+, bumps 2\n$/);

      const engine = new Engine({ backend });
      const prepared = engine.prepare(DICTIONARY, { snapshots: true });
      let snap: ReturnType<typeof prepared.snapshot> | null = null;
      const first = printed((wasi) => {
        const lease = prepared.instantiate(wasi.getImportObject() as WebAssembly.Imports);
        wasi.initialize(lease.instance);
        steps(lease.exports as Fns);
        snap = prepared.snapshot(lease);
        (lease.exports as Fns)['report']!(42);
        lease.release();
      });
      assert.equal(first, native);
      for (let i = 0; i < 3; i++) {
        const out = printed((wasi) => {
          const lease = snap!.instantiate(wasi.getImportObject() as WebAssembly.Imports);
          // The reactor's constructors ran before the snapshot: set the memory only.
          wasi.initialize({ exports: { memory: lease.exports['memory'] } } as unknown as WebAssembly.Instance);
          (lease.exports as Fns)['report']!(42);
          lease.release();
        });
        assert.equal(out, native, `snapshot instance ${i}`);
      }
      engine.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

// ---------------------------------------------------------------------------
// Errors.

function refusal(f: () => unknown): SnapshotRefusal | string {
  try {
    f();
    return 'no error';
  } catch (e) {
    if (!(e instanceof SnapshotError)) return `${(e as Error).constructor.name}: ${(e as Error).message}`;
    assert.equal(e.code, 'ERR_WASM_COW_SNAPSHOT');
    assert.match(e.message, /^wasm-cow: cannot snapshot this lease \(/);
    return e.reason;
  }
}

test('snapshot() refuses, with a reason, what it cannot capture', () => {
  const engine = new Engine({ nativeWhenFaster: false });
  const bytes = mainModule(false);

  // Not prepared with { snapshots: true }.
  const plain = engine.prepare(bytes);
  const l0 = plain.instantiate();
  assert.equal(refusal(() => plain.snapshot(l0)), 'not-enabled');
  l0.release();

  const prepared = engine.prepare(bytes, { snapshots: true });
  // Released.
  const l1 = prepared.instantiate();
  l1.release();
  assert.equal(refusal(() => prepared.snapshot(l1)), 'released');
  // Another module's lease.
  const other = engine.prepare(bytes, { snapshots: true });
  const l2 = other.instantiate();
  assert.equal(refusal(() => prepared.snapshot(l2)), 'foreign-lease');
  l2.release();

  // A non-null externref global.
  const l3 = prepared.instantiate();
  glob(rawExports(l3), 'gx').value = {};
  assert.equal(refusal(() => prepared.snapshot(l3)), 'reference-global');
  glob(rawExports(l3), 'gx').value = null;
  // A NaN in a float global.
  glob(rawExports(l3), 'gd').value = NaN;
  assert.equal(refusal(() => prepared.snapshot(l3)), 'unreadable-global');
  glob(rawExports(l3), 'gd').value = 1;
  assert.equal(refusal(() => prepared.snapshot(l3)), 'no error', 'the same lease, once its globals hold constants');
  prepared.dispose();
  assert.throws(() => prepared.snapshot(l3), { code: 'ERR_WASM_COW_INVALID_ARGUMENT' });
  l3.release();
  engine.close();
});

test('snapshot() refuses during a call into the instance', () => {
  const engine = new Engine({ nativeWhenFaster: false });
  // (import "env" "cb" (func)) (func (export "run") call 0) and a memory.
  const bytes = assemble({
    types: [T_VOID],
    imports: [[...str('env'), ...str('cb'), 0x00, 0]],
    importedFuncs: 1,
    funcs: [{ type: 0, export: 'run', code: [0x10, 0] }],
    memories: [[0x00, 1]],
  });
  const prepared = engine.prepare(bytes, { snapshots: true });
  let lease: Lease | null = null;
  let inside = '';
  lease = prepared.instantiate({ env: { cb: () => (inside = refusal(() => prepared.snapshot(lease!))) } });
  (lease.exports['run'] as () => void)();
  assert.equal(inside, 'in-call');
  assert.equal(refusal(() => prepared.snapshot(lease!)), 'no error', 'between calls');
  lease.release();
  engine.close();
});

test('snapshot() refuses imported and shared memories, reachable tables and v128 globals', () => {
  const engine = new Engine({ nativeWhenFaster: false });
  const attempt = (bytes: Uint8Array<ArrayBuffer>, imports?: WebAssembly.Imports, use?: (l: Lease) => void): string => {
    const prepared = engine.prepare(bytes, { snapshots: true });
    const lease = prepared.instantiate(imports);
    use?.(lease);
    const r = refusal(() => prepared.snapshot(lease));
    lease.release();
    return r;
  };
  const imported = assemble({ types: [T_VOID], imports: [[...str('env'), ...str('m'), 0x02, 0x00, 1]], funcs: [] });
  assert.equal(attempt(imported, { env: { m: new WebAssembly.Memory({ initial: 1 }) } }), 'imported-memory');
  const shared = assemble({ types: [T_VOID], funcs: [], memories: [[0x03, 1, 2]] });
  assert.equal(attempt(shared), 'shared-memory');
  // An exported externref table: handed out with lease.exports.
  const table = assemble({ types: [T_VOID], funcs: [], tables: [[EXTERNREF, 0x00, 1]], exports: [[...str('t'), 0x01, 0]] });
  assert.equal(attempt(table), 'no error', 'not handed out');
  assert.equal(attempt(table, undefined, (l) => void l.exports), 'reachable-table');
  assert.equal(attempt(table, undefined, (l) => void l.instance), 'reachable-table');
  // An exported funcref table: an accessor, handed out when read.
  const ftable = assemble({ types: [T_VOID], funcs: [], tables: [[FUNCREF, 0x00, 1]], exports: [[...str('t'), 0x01, 0]] });
  assert.equal(attempt(ftable, undefined, (l) => void l.exports), 'no error', 'lease.exports read, the table not');
  assert.equal(attempt(ftable, undefined, (l) => void l.exports['t']), 'reachable-table');
  const v128 = assemble({
    types: [T_VOID],
    funcs: [],
    globals: [{ type: [V128], mutable: true, init: [0xfd, 12, ...new Array<number>(16).fill(0)], export: 'v' }],
  });
  assert.equal(attempt(v128), 'unreadable-global');
  engine.close();
});

test('snapshot() refuses a memory the engine cannot reach', () => {
  // No exported memory, and the policy runs the module as V8 would (tiny data, no idle memory).
  const engine = new Engine();
  const bytes = assemble({ types: [T_VOID], funcs: [], memories: [[0x00, 1]], data: [[0x00, 0x41, 0, 0x0b, 1, 9]] });
  const prepared = engine.prepare(bytes, { snapshots: true });
  assert.equal(prepared.newMemory?.mode, 'adaptive');
  // A memory handed out raw is retired at release: the policy then runs the next instance as V8 would.
  const first = prepared.instantiate();
  void first.instance;
  first.release();
  const lease = prepared.instantiate();
  assert.equal(engine.stats().nativeInstantiations['small-data'], 1);
  assert.equal(refusal(() => prepared.snapshot(lease)), 'unreachable');
  lease.release();
  engine.close();
});

test('prepare() checks the snapshots option', () => {
  const engine = new Engine();
  assert.throws(() => engine.prepare(mainModule(false), { snapshots: 1 as unknown as boolean }), { code: 'ERR_WASM_COW_INVALID_ARGUMENT' });
  engine.close();
});

test('snapshot() refuses code that can change a table or drop a passive segment', () => {
  const engine = new Engine({ nativeWhenFaster: false });
  const attempt = (bytes: Uint8Array<ArrayBuffer>): string => {
    const prepared = engine.prepare(bytes, { snapshots: true });
    const lease = prepared.instantiate();
    const r = refusal(() => prepared.snapshot(lease));
    lease.release();
    return r;
  };
  const T_I_V = [0x60, 1, I32, 0];
  // (table 1 funcref) (func (param i32) table.set 0 (local.get 0) (ref.null func))
  const tableSet = assemble({
    types: [T_I_V],
    funcs: [{ type: 0, export: 'clear', code: [0x20, 0, 0xd0, FUNCREF, 0x26, 0] }],
    tables: [[FUNCREF, 0x00, 1]],
  });
  assert.equal(attempt(tableSet), 'mutable-table');
  // (table 1 funcref) (func table.grow 0 (ref.null func) (i32.const 1) drop)
  const tableGrow = assemble({
    types: [T_VOID],
    funcs: [{ type: 0, export: 'grow', code: [0xd0, FUNCREF, 0x41, 1, 0xfc, 15, 0, 0x1a] }],
    tables: [[FUNCREF, 0x00, 1]],
  });
  assert.equal(attempt(tableGrow), 'mutable-table');
  // data.drop of a passive segment: refused; of an active one: no effect, accepted.
  const dropping = (passive: boolean) =>
    assemble({
      types: [T_VOID],
      funcs: [{ type: 0, export: 'drop', code: [0xfc, 9, 0] }],
      memories: [[0x00, 1]],
      dataCount: 1,
      data: [passive ? [0x01, 2, 7, 7] : [0x00, 0x41, 0, 0x0b, 2, 7, 7]],
    });
  assert.equal(attempt(dropping(true)), 'dropped-segments');
  assert.equal(attempt(dropping(false)), 'no error');
  // elem.drop of a passive element segment.
  const elemDrop = assemble({
    types: [T_VOID],
    funcs: [{ type: 0, export: 'drop', code: [0xfc, 13, 0] }],
    tables: [[FUNCREF, 0x00, 1]],
    elems: [[0x01, 0x00, 1, 0]],
  });
  assert.equal(attempt(elemDrop), 'dropped-segments');
  engine.close();
});

test('a non-exported mutable global of an instance run as V8 would is unreachable; private exports stay hidden', () => {
  const engine = new Engine();
  const bytes = mainModule(true);
  const small = engine.prepare(bytes, { snapshots: true });
  assert.equal(small.newMemory?.mode, 'adaptive');
  const first = small.instantiate();
  assert.deepEqual(
    Object.keys(first.exports).filter((n) => n.includes('wasm-cow')),
    [],
    'lease.exports shows none of the private exports',
  );
  assert.deepEqual(small.exports.map((e) => e.name), WebAssembly.Module.exports(new WebAssembly.Module(bytes)).map((e) => e.name));
  void first.instance;
  first.release(); // retired: the next instance runs as V8 would
  const lease = small.instantiate();
  assert.equal(engine.stats().nativeInstantiations['small-data'], 1);
  assert.equal(refusal(() => small.snapshot(lease)), 'unreachable');
  lease.release();
  engine.close();
});

test('snapshots of modules with no data section, no memory, or memory grown from zero pages', () => {
  for (const backend of BACKENDS) {
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const T_II = [0x60, 2, I32, I32, 0];
    const cases: { name: string; bytes: Uint8Array<ArrayBuffer>; drive: (ex: Ex) => void; read: (ex: Ex) => string }[] = [
      {
        name: 'memory, no data section, custom section last',
        bytes: (() => {
          const m = assemble({
            types: [T_II, T_I_I],
            funcs: [
              { type: 0, export: 'store8', code: [0x20, 0, 0x20, 1, 0x3a, 0, 0] },
              { type: 1, export: 'load8', code: [0x20, 0, 0x2d, 0, 0] },
            ],
            memories: [[0x00, 2]],
          });
          return new Uint8Array([...m, 0x00, 4, 3, ...bytesOf('abc')]);
        })(),
        drive: (ex) => {
          call(ex, 'store8', 5, 1);
          call(ex, 'store8', 70000, 2);
        },
        read: (ex) => `${String(call(ex, 'load8', 5))},${String(call(ex, 'load8', 70000))},${String(call(ex, 'load8', 6))}`,
      },
      {
        name: 'no memory, a hidden mutable global',
        bytes: assemble({
          types: [T_V_I],
          funcs: [{ type: 0, export: 'next', code: [0x23, 0, 0x41, 3, 0x6a, 0x24, 0, 0x23, 0] }],
          globals: [{ type: [I32], mutable: true, init: [0x41, 10] }],
        }),
        drive: (ex) => void call(ex, 'next'),
        read: (ex) => String(call(ex, 'next')),
      },
      {
        name: 'memory of 0 pages grown by code',
        bytes: assemble({
          types: [T_I_I, T_II],
          funcs: [
            { type: 0, export: 'grow', code: [0x20, 0, 0x40, 0] },
            { type: 1, export: 'store8', code: [0x20, 0, 0x20, 1, 0x3a, 0, 0] },
            { type: 0, export: 'load8', code: [0x20, 0, 0x2d, 0, 0] },
          ],
          memories: [[0x01, 0, 4]],
        }),
        drive: (ex) => {
          call(ex, 'grow', 3);
          call(ex, 'store8', 3 * 65536 - 1, 9);
        },
        read: (ex) => `${String(call(ex, 'load8', 3 * 65536 - 1))},${String(call(ex, 'grow', 1))},${String(call(ex, 'grow', 1))}`,
      },
    ];
    for (const c of cases) {
      const prepared = engine.prepare(c.bytes, { snapshots: true });
      const lease = prepared.instantiate();
      const native = new WebAssembly.Instance(new WebAssembly.Module(c.bytes)).exports as Ex;
      c.drive(lease.exports as Ex);
      c.drive(native);
      const snap = prepared.snapshot(lease);
      const copy = snap.instantiate();
      const want = c.read(native);
      assert.equal(c.read(copy.exports as Ex), want, `${c.name} (${backend})`);
      assert.equal(c.read(lease.exports as Ex), want, `${c.name}: the lease (${backend})`);
      copy.release();
      lease.release();
    }
    engine.close();
  }
});

test('a memory captured as more runs of non-zero pages than a module may have segments is merged, exactly', () => {
  const memory = new WebAssembly.Memory({ initial: 4 });
  const bytes = new Uint8Array(memory.buffer);
  const page = 4096;
  for (let p = 0; p < bytes.length; p += 2 * page) bytes[p + (p % 4093)] = 1 + (p % 251); // every other page
  bytes[bytes.length - 1] = 7;
  const all = captureMemory(memory, page);
  assert.equal(all.runs.length, bytes.length / page / 2); // the last page joins the run before it
  for (const max of [1, 3, 10, 17]) {
    const few = captureMemory(memory, page, max);
    assert.ok(few.runs.length <= max, `${few.runs.length} runs for at most ${max}`);
    // Written into a zero memory, the runs give back every byte.
    const copy = new Uint8Array(bytes.length);
    let last = -1;
    for (const r of few.runs) {
      assert.ok(r.offset > last, 'in order, not overlapping');
      copy.set(r.bytes, r.offset);
      last = r.offset + r.bytes.length - 1;
    }
    assert.deepEqual(copy, bytes);
  }
});

// ---------------------------------------------------------------------------
// Real modules from npm packages, raw (stub imports: no glue).

const nodeModules = fileURLToPath(new URL('../../node_modules/', import.meta.url));

/** A table's entries as function indices (an exported wasm function's name is its index), null for null. */
const entries = (t: WebAssembly.Table): (string | null)[] =>
  Array.from({ length: t.length }, (_, i) => {
    const f = t.get(i) as ((...a: unknown[]) => unknown) | null;
    return f === null ? null : f.name;
  });

for (const backend of BACKENDS) {
  test(`sql.js's module, raw: a snapshot after its constructors equals the lease and a native instance, and runs them again as they do (${backend})`, () => {
    const bytes = new Uint8Array(readFileSync(`${nodeModules}sql.js/dist/sql-wasm.wasm`));
    const nativeModule = new WebAssembly.Module(bytes);
    const engine = new Engine({ backend, nativeWhenFaster: false });
    const prepared = engine.prepare(bytes, { snapshots: true });
    const lease = prepared.instantiate(stubImports(bytes, nativeModule));
    const native = new WebAssembly.Instance(nativeModule, stubImports(bytes, nativeModule)).exports as Ex;
    // Its first exports: memory "O", __wasm_call_ctors "P", the function table "Q".
    const raw = rawExports(lease);
    const ctors = (ex: Ex) => call(ex, 'P');
    ctors(raw);
    ctors(native);
    const snap = prepared.snapshot(lease);
    const copy = snap.instantiate(stubImports(bytes, nativeModule));
    const look = (ex: Ex) => ({ memory: digestOf(ex['O'] as WebAssembly.Memory), table: entries(ex['Q'] as WebAssembly.Table) });
    const want = look(native);
    assert.ok(want.table.filter((e) => e !== null).length > 500, 'the table holds its functions');
    const fresh = new WebAssembly.Instance(nativeModule, stubImports(bytes, nativeModule)).exports as Ex;
    assert.notEqual(look(fresh).memory, want.memory, 'the constructors wrote memory');
    assert.deepEqual(look(rawExports(lease)), want);
    assert.deepEqual(look(rawExports(copy)), want, "the snapshot's instance");
    // The constructors run again (wasm code writing the heap) give the same memory on all three.
    ctors(native);
    ctors(rawExports(lease));
    ctors(rawExports(copy));
    const again = look(native);
    assert.deepEqual(look(rawExports(lease)), again);
    assert.deepEqual(look(rawExports(copy)), again);
    copy.release();
    lease.release();
    engine.close();
  });
}

test("a tree-sitter grammar (a side module: it imports its memory) is refused as 'imported-memory'", () => {
  const bytes = new Uint8Array(readFileSync(`${nodeModules}tree-sitter-javascript/tree-sitter-javascript.wasm`));
  const engine = new Engine();
  const prepared = engine.prepare(bytes, { snapshots: true });
  const lease = prepared.instantiate(stubImports(bytes, new WebAssembly.Module(bytes)));
  assert.equal(refusal(() => prepared.snapshot(lease)), 'imported-memory');
  lease.release();
  engine.close();
});
