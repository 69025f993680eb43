/**
 * Stale references against the next tenant (issue 10), shared by
 * test/stale-references.test.ts (this thread) and test/helpers/stale-child.ts
 * (worker threads).
 *
 * Each scenario lets tenant A hand out something, keeps it past A's
 * release, gives the memory's next chance to tenant B, and uses the stale
 * thing against B: every read must miss what B wrote, every write must miss
 * B's memory. B's memory is compared, once the attack is over, with a fresh
 * native instance that did B's work (SHA-256 of the whole memory); nothing
 * reads B's memory between the steps under test. A scenario returns the
 * violations it saw (empty: isolation held).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, read, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import type { BackendKind, Engine as EngineClass, Lease } from '../../src/index.js';
import { buildModule, I32, sleb, stdFuncs, str, uleb } from '../../src/bench/builder.js';
import { freshInitSqlJs, SQL_WASM } from './emscripten.js';

/** The genuine buffer getter, saved before wasm-cow is loaded (import this module before anything of src/ but the builder). */
const savedGetter = Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, 'buffer')!.get!;
const { Engine, emscriptenAdapter } = await import('../../src/index.js');
const leaseModule = await import('../../src/lease.js');

export interface StaleConfig {
  readonly backend: BackendKind;
  readonly backgroundReset: boolean;
}

export type Scenario = (config: StaleConfig) => Promise<string[]>;

const PAGE = 4096;
const SECRET = 0x5e;
const SCRIBBLE = 0xa7;
/** Where tenant B keeps its secret, and where a stale writer scribbles. */
const SECRET_AT = 3 * PAGE + 11;
const SCRIBBLE_AT = 5 * PAGE + 13;

type Fn = (...args: number[]) => number;
const fn = (exports: WebAssembly.Exports, name: string): Fn => exports[name] as unknown as Fn;
const sha = (buffer: ArrayBuffer): string => createHash('sha256').update(new Uint8Array(buffer)).digest('hex');

/** The lease's instance for a test's own checks, without counting as handed out (the engine's internal hook; on code without it, the instance). */
function peek(lease: Lease): WebAssembly.Instance {
  const hook = (leaseModule as { unexposedInstance?: (l: Lease) => WebAssembly.Instance }).unexposedInstance;
  return hook ? hook(lease) : lease.instance;
}

/** B's memory, read once the attack is over, without counting as handed out (lease.memoryBuffer() would retire it). */
function memoryDigest(lease: Lease): string {
  return sha((peek(lease).exports['mem'] as WebAssembly.Memory).buffer);
}

/** What a fresh native instance holds after B's work: the secret stored. */
function expectedDigest(bytes: Uint8Array<ArrayBuffer>, imports: WebAssembly.Imports = {}): string {
  const native = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
  fn(native.exports, 'store8')(SECRET_AT, SECRET);
  return sha((native.exports['mem'] as WebAssembly.Memory).buffer);
}

/** A stale buffer used against the next tenant: reads must not see its secret. */
function attackBuffer(buffer: ArrayBuffer, violations: string[], what: string): void {
  if (buffer.byteLength <= SCRIBBLE_AT) return; // detached
  const v = new Uint8Array(buffer);
  if (v[SECRET_AT] === SECRET) violations.push(`${what}: read the next tenant's secret`);
  v[SCRIBBLE_AT] = SCRIBBLE;
}

/**
 * One idle memory at most, and B comes after A's reset has ended
 * (stats() waits for queued resets): B then gets A's memory whenever the
 * pool may reuse it, with background resets too.
 */
function engineFor(config: StaleConfig): EngineClass {
  // nativeWhenFaster: false, so that the small test modules keep their images and memories (the mechanism under test).
  return new Engine({ backend: config.backend, backgroundReset: config.backgroundReset, maxIdle: 1, nativeWhenFaster: false });
}

/** B: instantiate (once A's reset ended), store the secret through the wrapped export, nothing else. */
function tenantB(engine: EngineClass, prepared: ReturnType<EngineClass['prepare']>, imports?: WebAssembly.Imports): Lease {
  engine.stats();
  const b = prepared.instantiate(imports);
  fn(b.exports, 'store8')(SECRET_AT, SECRET);
  return b;
}

const CYCLES = 12;
const memModule = buildModule({
  memories: [{ min: 8, max: 16, export: 'mem' }],
  funcs: stdFuncs,
  data: [{ offset: PAGE + 3, bytes: [1, 2, 3, 4, 5] }],
});

/** 1. Buffers reached around any watch: the prototype getter, and a getter saved before wasm-cow loaded. */
export const prototypeGetter: Scenario = async (config) => {
  const violations: string[] = [];
  const engine = engineFor(config);
  const prepared = engine.prepare(memModule);
  const want = expectedDigest(memModule);
  for (let i = 0; i < CYCLES; i++) {
    const a = prepared.instantiate();
    const memory = a.exports['mem'] as WebAssembly.Memory;
    const stale = [Reflect.get(WebAssembly.Memory.prototype, 'buffer', memory) as ArrayBuffer, savedGetter.call(memory) as ArrayBuffer];
    fn(a.exports, 'store8')(SCRIBBLE_AT + 1, 1);
    a.release();
    const b = tenantB(engine, prepared);
    stale.forEach((buffer, k) => attackBuffer(buffer, violations, `cycle ${i}, stale buffer ${k}`));
    if (memoryDigest(b) !== want) violations.push(`cycle ${i}: the next tenant's memory differs from native`);
    b.release();
  }
  engine.close();
  return violations;
};

/** 1b. The imports object is a Proxy, or has an accessor: its trap or getter must not see the engine's import namespace. */
export const importsReceiver: Scenario = async (config) => {
  const violations: string[] = [];
  const bytes = buildModule({
    importFuncs: [
      { module: 'env', name: 'f' },
      { module: 'other', name: 'g' },
      { module: 'env', name: 'h' },
    ],
    memories: [{ min: 2, max: 4 }], // not even exported
    funcs: stdFuncs,
    data: [{ offset: PAGE + 3, bytes: [1, 2, 3] }],
  });
  const engine = engineFor(config);
  const prepared = engine.prepare(bytes);
  const env = { f: () => {}, h: () => {} };
  const other = { g: () => {} };
  const want = (() => {
    const n = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env, other });
    fn(n.exports, 'store8')(SECRET_AT, SECRET);
    return sha(throughLoads(n.exports));
  })();
  // Each trap or getter call: the caller's own object and the receiver it got.
  const receivers: [unknown, unknown][] = [];
  const proxied = (log: string[]): WebAssembly.Imports => {
    const proxy: WebAssembly.Imports = new Proxy({ env, other } as WebAssembly.Imports, {
      get(t, key, receiver) {
        log.push(String(key));
        receivers.push([proxy, receiver]);
        return Reflect.get(t, key, receiver) as unknown;
      },
    });
    return proxy;
  };
  const withAccessor = (): WebAssembly.Imports => {
    const imports = {
      get env() {
        receivers.push([imports, this]);
        return env;
      },
      other,
    };
    return imports as unknown as WebAssembly.Imports;
  };
  /** A getter on the prototype (a class instance as the imports object). */
  const fromClass = (): WebAssembly.Imports => {
    class Imports {
      other = other;
      get env() {
        receivers.push([imports, this]);
        return env;
      }
    }
    const imports = new Imports();
    return imports as unknown as WebAssembly.Imports;
  };
  const nativeLog: string[] = [];
  new WebAssembly.Instance(new WebAssembly.Module(bytes), proxied(nativeLog));
  receivers.length = 0;
  const stolen: ArrayBuffer[] = [];
  const steal = (receiver: unknown) => {
    if (typeof receiver !== 'object' || receiver === null) return;
    for (const key of Reflect.ownKeys(receiver)) {
      const ns = Reflect.get(receiver, key) as unknown;
      if (typeof ns !== 'object' || ns === null) continue;
      for (const k of Reflect.ownKeys(ns)) {
        try {
          stolen.push(Reflect.get(WebAssembly.Memory.prototype, 'buffer', Reflect.get(ns, k)) as ArrayBuffer);
        } catch {
          // not a memory
        }
      }
    }
  };
  for (let i = 0; i < CYCLES; i++) {
    const log: string[] = [];
    const a = prepared.instantiate(i % 3 === 0 ? proxied(log) : i % 3 === 1 ? withAccessor() : fromClass());
    if (i % 3 === 0 && log.join() !== nativeLog.join()) violations.push(`cycle ${i}: Gets on the Proxy ${log.join()}, natively ${nativeLog.join()}`);
    const got = receivers.splice(0);
    for (const [own, receiver] of got) {
      if (own !== receiver) violations.push(`cycle ${i}: a trap or getter got a receiver other than the caller's own object`);
      steal(receiver);
    }
    receivers.length = 0;
    a.release();
    const b = tenantB(engine, prepared, { env, other });
    stolen.forEach((buffer, k) => attackBuffer(buffer, violations, `cycle ${i}, stolen buffer ${k}`));
    stolen.length = 0;
    if (sha(throughLoads(peek(b).exports)) !== want) violations.push(`cycle ${i}: the next tenant's memory differs from native`);
    b.release();
  }
  engine.close();
  return violations;
};

/** A memory the module does not export, read through its load8. */
function throughLoads(exports: WebAssembly.Exports): ArrayBuffer {
  const load8 = fn(exports, 'load8');
  const out = new Uint8Array(fn(exports, 'size')() * 65536);
  for (let i = 0; i < out.length; i++) out[i] = load8(i);
  return out.buffer;
}

/** 2. release() from an import while the export that called it runs; the wasm code then writes on. */
export const releaseDuringCall: Scenario = async (config) => {
  const violations: string[] = [];
  // run(): calls env.cb, spins a while (a reset started at release has
  // time to end), then writes 0xab into 16 pages; runTrap(): the same, then traps.
  const spin = [0x03, 0x40, 0x20, 0, 0x41, 1, 0x6a, 0x22, 0, 0x41, ...sleb(2_000_000), 0x48, 0x0d, 0, 0x0b];
  const writes: number[] = [];
  for (let p = 0; p < 16; p++) writes.push(0x41, ...sleb(p * PAGE + 5), 0x41, ...sleb(0xab), 0x3a, 0x00, 0x00);
  const bytes = buildModule({
    importFuncs: [{ module: 'env', name: 'cb' }],
    memories: [{ min: 8, max: 16, export: 'mem' }],
    funcs: [
      ...stdFuncs,
      { export: 'run', locals: [I32], body: [0x10, 0x00, ...spin, ...writes] },
      { export: 'runTrap', locals: [I32], body: [0x10, 0x00, ...spin, ...writes, 0x00] },
    ],
    data: [{ offset: PAGE + 3, bytes: [1, 2, 3] }],
  });
  const engine = engineFor(config);
  const prepared = engine.prepare(bytes);
  const fresh = sha((new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { cb: () => {} } }).exports['mem'] as WebAssembly.Memory).buffer);
  let current: Lease | null = null;
  let inside = '';
  const cb = () => {
    const lease = current!;
    lease.release();
    if (!lease.released) inside += 'not released; ';
    try {
      fn(lease.exports, 'load8');
      inside += 'exports readable after release; ';
    } catch {
      // expected
    }
  };
  for (let i = 0; i < CYCLES * 2; i++) {
    const a = (current = prepared.instantiate({ env: { cb } }));
    const load8 = fn(a.exports, 'load8');
    const entry = fn(a.exports, i % 2 === 0 ? 'run' : 'runTrap');
    let nested = false;
    try {
      entry();
    } catch (e) {
      if (!(e instanceof WebAssembly.RuntimeError)) violations.push(`cycle ${i}: ${String(e)}`);
    }
    try {
      load8(0);
    } catch {
      nested = true;
    }
    if (!nested) violations.push(`cycle ${i}: a wrapped export still ran after release`);
    engine.stats(); // A's reset has ended
    const b = prepared.instantiate({ env: { cb: () => {} } });
    if (memoryDigest(b) !== fresh) violations.push(`cycle ${i}: the next tenant saw writes made after release()`);
    b.release();
  }
  if (inside) violations.push(inside);
  engine.close();
  return violations;
};

/**
 * The module of scenario 4: a funcref table holding store8 and load8,
 * an export returning store8 (a funcref result) and a funcref global.
 */
export function tableModule(): Uint8Array<ArrayBuffer> {
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const types = vec([
    [0x60, 2, I32, I32, 0], // 0: (i32, i32) -> ()
    [0x60, 1, I32, 1, I32], // 1: (i32) -> i32
    [0x60, 0, 1, 0x70], // 2: () -> funcref
  ]);
  const funcs = vec([[0], [1], [2]]);
  const table = vec([[0x70, 0x00, 2]]);
  const memory = vec([[0x01, 8, 16]]);
  const global = vec([[0x70, 0x00, 0xd2, 0x00, 0x0b]]);
  const exp = (name: string, kind: number, index: number) => [...str(name), kind, index];
  const exports = vec([exp('store8', 0, 0), exp('load8', 0, 1), exp('getf', 0, 2), exp('tbl', 1, 0), exp('mem', 2, 0), exp('gf', 3, 0)]);
  const elem = vec([[0x00, 0x41, 0x00, 0x0b, 2, 0, 1]]);
  const body = (code: number[]) => [...uleb(code.length + 2), 0, ...code, 0x0b];
  const code = vec([
    body([0x20, 0, 0x20, 1, 0x3a, 0x00, 0x00]),
    body([0x20, 0, 0x2d, 0x00, 0x00]),
    body([0xd2, 0x00]),
  ]);
  const data = vec([[0x00, 0x41, ...sleb(PAGE + 3), 0x0b, 3, 1, 2, 3]]);
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, types), ...section(3, funcs), ...section(4, table), ...section(5, memory), ...section(6, global),
    ...section(7, exports), ...section(9, elem), ...section(10, code), ...section(11, data),
  ]);
}

/** 4. Raw functions: taken with table.get from an exported table, returned by an export, read from a funcref global. */
export const rawFunctions: Scenario = async (config) => {
  const violations: string[] = [];
  const bytes = tableModule();
  const engine = engineFor(config);
  const prepared = engine.prepare(bytes);
  const want = expectedDigest(bytes);
  const ways: [string, (a: Lease) => [Fn, Fn]][] = [
    ['table.get', (a) => {
      const t = a.exports['tbl'] as WebAssembly.Table;
      return [t.get(0) as Fn, t.get(1) as Fn];
    }],
    ['a funcref result', (a) => [fn(a.exports, 'getf')() as unknown as Fn, (a.exports['tbl'] as WebAssembly.Table).get(1) as Fn]],
    ['a funcref global', (a) => [(a.exports['gf'] as WebAssembly.Global).value as Fn, (a.exports['tbl'] as WebAssembly.Table).get(1) as Fn]],
  ];
  for (let i = 0; i < CYCLES; i++) {
    const [way, take] = ways[i % ways.length]!;
    const a = prepared.instantiate();
    const [store8, load8] = take(a);
    a.release();
    const b = tenantB(engine, prepared);
    if (load8(SECRET_AT) === SECRET) violations.push(`cycle ${i} (${way}): a stale function read the next tenant's secret`);
    store8(SCRIBBLE_AT, SCRIBBLE);
    if (memoryDigest(b) !== want) violations.push(`cycle ${i} (${way}): the next tenant's memory differs from native`);
    b.release();
  }
  engine.close();
  return violations;
};

/** Through lease.exports' functions only: the memory stays pooled. */
export const revocableStaysPooled: Scenario = async (config) => {
  const violations: string[] = [];
  const engine = engineFor(config);
  const prepared = engine.prepare(memModule);
  const want = expectedDigest(memModule);
  for (let i = 0; i < CYCLES; i++) {
    engine.stats(); // B's reset (background) has ended: A gets B's memory
    const a = prepared.instantiate();
    fn(a.exports, 'store8')(SCRIBBLE_AT, 1);
    a.release();
    const b = tenantB(engine, prepared);
    if (memoryDigest(b) !== want) violations.push(`cycle ${i}: the next tenant's memory differs from native`);
    b.release();
  }
  const s = engine.stats();
  if (s.pooledReuses < 2 * CYCLES - 2) violations.push(`pooled reuses: ${s.pooledReuses} of ${2 * CYCLES - 1}`);
  if (s.retiredExposed !== 0) violations.push(`retired as handed out: ${s.retiredExposed}`);
  engine.close();
  return violations;
};

/**
 * A buffer from lease.memoryBuffer() with native I/O in flight into it: an
 * fs.read from a FIFO, blocked in libuv's thread pool until after A's
 * release and B's start. The buffer is detached at release, but the thread
 * keeps the address: it must write into A's (retired) memory, never B's.
 */
export const inflightRead: Scenario = async (config) => {
  const violations: string[] = [];
  const engine = engineFor(config);
  const prepared = engine.prepare(memModule);
  const want = expectedDigest(memModule);
  const fifo = join(tmpdir(), `wasm-cow-test-fifo-${process.pid}-${threadId}-${config.backend}-${String(config.backgroundReset)}`);
  execFileSync('mkfifo', [fifo]);
  const fd = openSync(fifo, 'r+'); // O_RDWR: open does not block, and the read blocks until a write
  try {
    for (let i = 0; i < 3; i++) {
      const a = prepared.instantiate();
      const view = new Uint8Array(a.memoryBuffer(), SECRET_AT - 2, 8);
      const done = new Promise<unknown>((resolve) => read(fd, view, 0, 4, null, (err, n) => resolve(err ?? n)));
      a.release();
      if (view.length !== 0) violations.push(`cycle ${i}: the lent buffer is still attached after release`);
      const b = tenantB(engine, prepared);
      writeSync(fd, Buffer.from([0xde, 0xad, 0xbe, 0xef])); // lands at SECRET_AT - 2 .. + 1, over B's secret if B has A's memory
      const n = await done;
      if (n !== 4) violations.push(`cycle ${i}: the read gave ${String(n)}`);
      if (memoryDigest(b) !== want) violations.push(`cycle ${i}: the next tenant's memory differs from native (the in-flight read reached it)`);
      b.release();
    }
  } finally {
    closeSync(fd);
    unlinkSync(fifo);
  }
  const s = engine.stats();
  if (s.retiredExposed !== 3) violations.push(`memories whose buffer was lent, retired: ${s.retiredExposed} of 3`);
  engine.close();
  return violations;
};

/**
 * 3. The Emscripten adapter: tenant A's sql.js Module, kept past release,
 * against tenant B. A's calls must work on A's own data and leave B's
 * memory as it was.
 */
export const sqlJsModule: Scenario = async (config) => {
  const violations: string[] = [];
  const engine = engineFor(config);
  const prepared = engine.prepare(SQL_WASM);
  type Db = { run(sql: string): void; exec(sql: string): { values: unknown[][] }[]; getRowsModified(): number; close(): void };
  type Sql = { Database: new () => Db };
  const memoryOf = (lease: Lease) =>
    Object.values(peek(lease).exports).find((v) => v instanceof WebAssembly.Memory) as WebAssembly.Memory;
  const attempt = (what: string, f: () => unknown): unknown => {
    try {
      return f();
    } catch (e) {
      return `${what} threw ${String(e)}`;
    }
  };
  for (let i = 0; i < 3; i++) {
    const adapterA = emscriptenAdapter(prepared);
    const SQLA = (await freshInitSqlJs()({ instantiateWasm: adapterA.instantiateWasm })) as unknown as Sql;
    const dbA = new SQLA.Database();
    dbA.run('CREATE TABLE a (x)');
    dbA.run('INSERT INTO a VALUES (1), (2), (3)');
    const memoryA = memoryOf(adapterA.lease!);
    adapterA.release();

    engine.stats();
    const adapterB = emscriptenAdapter(prepared);
    const SQLB = (await freshInitSqlJs()({ instantiateWasm: adapterB.instantiateWasm })) as unknown as Sql;
    const dbB = new SQLB.Database();
    dbB.run('CREATE TABLE b (y)');
    dbB.run('INSERT INTO b VALUES (10), (20), (30), (40), (50), (60), (70)');
    const leaseB = adapterB.lease!;
    const bufferB = () => sha(memoryOf(leaseB).buffer);
    const before = bufferB();

    // A's stale Module: A's own data (on its own, retired memory), never B's.
    const rows = attempt('dbA.getRowsModified()', () => dbA.getRowsModified());
    if (rows !== 3) violations.push(`cycle ${i}: dbA.getRowsModified() gave ${String(rows)}, not A's 3 (B's is 7)`);
    attempt('dbA.close()', () => dbA.close());
    const other = attempt('new SQLA.Database()', () => {
      const db = new SQLA.Database();
      db.run('CREATE TABLE c (z)');
      db.run('INSERT INTO c VALUES (99)');
      return JSON.stringify(db.exec('SELECT z FROM c')[0]!.values);
    });
    if (other !== '[[99]]') violations.push(`cycle ${i}: a new database in A's Module: ${String(other)}`);

    if (bufferB() !== before) violations.push(`cycle ${i}: A's stale calls changed B's memory`);
    const countB = attempt('dbB.getRowsModified()', () => dbB.getRowsModified());
    if (countB !== 7) violations.push(`cycle ${i}: dbB.getRowsModified() gave ${String(countB)}`);
    const sumB = attempt('dbB.exec()', () => JSON.stringify(dbB.exec('SELECT count(*), sum(y) FROM b')[0]!.values));
    if (sumB !== '[[7,280]]') violations.push(`cycle ${i}: B's query gave ${String(sumB)}`);
    if (memoryOf(leaseB) === memoryA) violations.push(`cycle ${i}: B runs on A's memory`);
    attempt('dbB.close()', () => dbB.close());
    adapterB.release();
  }
  const s = engine.stats() as { retiredExposed?: number; pooledReuses: number };
  if (s.retiredExposed !== 6 || s.pooledReuses !== 0) violations.push(`retired ${String(s.retiredExposed)} of 6, pooled ${s.pooledReuses}`);
  engine.close();
  return violations;
};

/**
 * An Error created while A's wasm code was on the stack: V8's structured
 * stack trace (Error.prepareStackTrace receiving CallSites) gives the raw
 * instance as CallSite.getThis() of a wasm frame, now or when the stack is
 * first formatted, after release. A call through lease.exports that ends by
 * throwing must retire A's memories. Two errors: a trap's RuntimeError, and
 * an Error an import throws through the wasm frames; both read only after
 * release (V8 formats lazily).
 */
export const errorFrames: Scenario = async (config) => {
  const violations: string[] = [];
  const engine = engineFor(config);
  const module = buildModule({
    importFuncs: [{ module: 'env', name: 'fail' }],
    memories: [{ min: 8, max: 16, export: 'mem' }],
    funcs: [...stdFuncs, { export: 'run', body: [0x10, 0] }],
    data: [{ offset: PAGE + 3, bytes: [1, 2, 3, 4, 5] }],
  });
  const imports = {
    env: {
      fail() {
        throw new Error('from an import');
      },
    },
  };
  const prepared = engine.prepare(module);
  const want = expectedDigest(module, imports);
  const saved = Error.prepareStackTrace;
  for (let i = 0; i < 4; i++) {
    const a = prepared.instantiate(imports);
    let kept: unknown;
    try {
      if (i % 2 === 0) fn(a.exports, 'load8')(1 << 30);
      else fn(a.exports, 'run')();
    } catch (e) {
      kept = e;
    }
    a.release();
    const b = tenantB(engine, prepared, imports);
    let stolen: WebAssembly.Instance | null = null;
    Error.prepareStackTrace = (_e, frames) => frames;
    try {
      const frames = (kept as { stack: unknown }).stack as { getThis(): unknown }[];
      for (const f of frames) {
        const self = f.getThis();
        if (self instanceof WebAssembly.Instance) stolen = self;
      }
    } finally {
      Error.prepareStackTrace = saved;
    }
    if (stolen === null) {
      violations.push(`cycle ${i}: the error held no instance (nothing tested)`);
    } else {
      if (fn(stolen.exports, 'load8')(SECRET_AT) === SECRET) violations.push(`cycle ${i}: the error's instance read the next tenant's secret`);
      fn(stolen.exports, 'store8')(SCRIBBLE_AT, SCRIBBLE);
    }
    if (memoryDigest(b) !== want) violations.push(`cycle ${i}: the next tenant's memory differs from native`);
    b.release();
  }
  const s = engine.stats();
  if (s.retiredExposed !== 4) violations.push(`memories retired after a throwing call: ${s.retiredExposed} of 4`);
  engine.close();
  return violations;
};

/** The scenarios every configuration and thread runs. */
export const SCENARIOS: Record<string, Scenario> = {
  'buffers through the prototype getter and a saved getter': prototypeGetter,
  "the imports object's Proxy trap or getter": importsReceiver,
  'release() during a call, then wasm writes': releaseDuringCall,
  'raw functions from a table, a result, a global': rawFunctions,
  'a released sql.js Module (the Emscripten adapter)': sqlJsModule,
  'revocable use only: still pooled': revocableStaysPooled,
  'native I/O in flight into a lent buffer': inflightRead,
  "an error thrown through the lease's wasm frames (CallSite.getThis())": errorFrames,
};
