/**
 * Child of register.test.ts: does what a program can do with the
 * WebAssembly API and prints what it observed, as JSON. The test runs it
 * natively and under `--import wasm-cow/register` (lazy and eager) and
 * compares the observations; the hook's own counters are printed apart.
 *
 *   node out/test/register-child.js observe
 *   node out/test/register-child.js late-hook   (imports the hook after compiling)
 */
import { createHash } from 'node:crypto';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { buildModule, I32, pseudoRandomBytes, stdFuncs } from './helpers/wasm.js';

type Obs = Record<string, unknown>;

interface Registration {
  engine: { stats(): { instantiations: number; fallbacks: Record<string, number> } };
  hook: { stats(): Record<string, number>; settled(): Promise<void> } | null;
}
const registration = (): Registration | undefined =>
  (globalThis as unknown as Record<symbol, Registration | undefined>)[Symbol.for('wasm-cow.register')];

const DATA = pseudoRandomBytes(5000, 7);
/** A module with a defined, exported memory and data, an imported function, a global and a custom section. */
const A = buildModule({
  importFuncs: [{ module: 'env', name: 'f', params: [I32], results: [I32] }],
  memories: [{ min: 2, max: 10, export: 'mem' }],
  globals: [{ type: I32, init: [0x41, 42], export: 'answer' }],
  funcs: [...stdFuncs, { export: 'callF', params: [I32], results: [I32], body: [0x20, 0, 0x10, 0x00] }],
  data: [
    { offset: 16, bytes: DATA },
    { offset: 70000, bytes: [1, 2, 3, 4] },
    { passive: true, bytes: [9, 9] },
  ],
  dataCount: true,
  custom: [{ name: 'meta', bytes: [0xca, 0xfe] }],
});
/** A module whose start function traps after its data is in place. */
const B = buildModule({
  memories: [{ min: 1, export: 'mem' }],
  funcs: [{ body: [0x00] }],
  data: [{ offset: 0, bytes: [7, 7, 7] }],
  start: 0,
});
/** A module with data for an imported memory. */
const C = buildModule({
  importMemory: { module: 'env', name: 'memory', min: 1, max: 4 },
  funcs: [stdFuncs[0]!],
  data: [{ offset: 8, bytes: pseudoRandomBytes(3000, 3) }],
});
/** A module whose start function calls the program (which instantiates A). */
const D = buildModule({
  importFuncs: [{ module: 'env', name: 'cb' }],
  memories: [{ min: 1 }],
  funcs: [{ body: [0x10, 0x00] }],
  data: [{ offset: 0, bytes: [5] }],
  start: 1,
});
/** A module whose start function passes the imported global env.id to env.cb, and whose id() returns it. */
const E = buildModule({
  importFuncs: [{ module: 'env', name: 'cb', params: [I32] }],
  importGlobals: [{ module: 'env', name: 'id' }],
  memories: [{ min: 1 }],
  data: [{ offset: 0, bytes: pseudoRandomBytes(2000, 5) }],
  funcs: [
    { body: [0x23, 0, 0x10, 0x00] },
    { export: 'id', results: [I32], body: [0x23, 0] },
  ],
  start: 1,
});
const BAD = new Uint8Array([0, 0x61, 0x73, 0x6d, 2, 0, 0, 0]);
const importsA = (): WebAssembly.Imports => ({ env: { f: (x: number) => x * 3 } });

const digest = (m: WebAssembly.Memory): string => createHash('sha256').update(new Uint8Array(m.buffer)).digest('hex').slice(0, 16);
const describeError = (e: unknown): string => (e instanceof Error ? `${e.constructor.name}: ${e.message}` : `throw ${String(e)}`);
async function outcome(f: () => unknown): Promise<string> {
  try {
    const r = await f();
    return `ok ${r instanceof WebAssembly.Module ? 'Module' : r instanceof WebAssembly.Instance ? 'Instance' : typeof r}`;
  } catch (e) {
    return describeError(e);
  }
}
const response = (bytes: Uint8Array<ArrayBuffer>): Response => new Response(bytes, { headers: { 'content-type': 'application/wasm' } });

function describeModule(m: WebAssembly.Module): Obs {
  return {
    isModule: m instanceof WebAssembly.Module,
    constructor: m.constructor === WebAssembly.Module,
    proto: Object.getPrototypeOf(m) === WebAssembly.Module.prototype,
    imports: WebAssembly.Module.imports(m),
    exports: WebAssembly.Module.exports(m),
    custom: WebAssembly.Module.customSections(m, 'meta').map((b) => [...new Uint8Array(b)]),
  };
}

/** What an instance of A shows: exports, memory and calls. Writes to its memory at the end. */
function describeInstanceA(i: WebAssembly.Instance): Obs {
  const ex = i.exports as Record<string, unknown>;
  const mem = ex['mem'] as WebAssembly.Memory;
  const fn = (n: string) => ex[n] as (...a: number[]) => number;
  const before = digest(mem);
  const o: Obs = {
    isInstance: i instanceof WebAssembly.Instance,
    constructor: i.constructor === WebAssembly.Instance,
    keys: Object.keys(ex),
    frozen: Object.isFrozen(ex),
    proto: Object.getPrototypeOf(ex),
    fns: Object.keys(ex)
      .filter((k) => typeof ex[k] === 'function')
      .map((k) => `${k}:${(ex[k] as Function).name}/${(ex[k] as Function).length}`),
    memory: mem instanceof WebAssembly.Memory,
    bytes: mem.buffer.byteLength,
    digest: before,
    answer: (ex['answer'] as WebAssembly.Global).value,
    size: fn('size')(),
    loads: [fn('load8')(16), fn('load8')(5015), fn('load8')(5016), fn('load32')(70000)],
    callF: fn('callF')(14),
  };
  o['grow'] = [fn('grow')(1), fn('size')(), mem.buffer.byteLength, fn('grow')(100)];
  fn('store8')(16, 0xff);
  o['afterWrite'] = fn('load8')(16);
  return o;
}

async function observe(): Promise<{ obs: Obs; hook: unknown }> {
  const obs: Obs = {};
  const W = WebAssembly;
  obs['api'] = {
    names: [W.Module, W.Instance, W.compile, W.instantiate, W.compileStreaming, W.instantiateStreaming].map((f) => `${f.name}/${f.length}`),
    moduleStatics: Object.getOwnPropertyNames(W.Module),
    descriptors: ['Module', 'Instance', 'compile', 'instantiate', 'compileStreaming', 'instantiateStreaming'].map((k) => {
      const d = Object.getOwnPropertyDescriptor(W, k)!;
      return [k, d.writable, d.enumerable, d.configurable, typeof d.value];
    }),
    protoConstructors: [W.Module.prototype.constructor === W.Module, W.Instance.prototype.constructor === W.Instance],
    staticsSame: W.Module.imports === Object.getOwnPropertyDescriptor(W.Module, 'imports')!.value,
  };

  // Modules from every API: what they show.
  const mods: [string, WebAssembly.Module][] = [
    ['new Module', new W.Module(A)],
    ['compile', await W.compile(A)],
    ['instantiate(bytes)', (await W.instantiate(A, importsA())).module],
    ['compileStreaming', await W.compileStreaming(response(A))],
    ['instantiateStreaming', (await W.instantiateStreaming(response(A), importsA())).module],
    ['ArrayBuffer', new W.Module(A.slice().buffer)],
    ['Uint16Array', new W.Module(new Uint16Array(A.slice().buffer))],
  ];
  obs['modules'] = Object.fromEntries(mods.map(([k, m]) => [k, describeModule(m)]));

  // Errors, as the program sees them.
  const mA = new W.Module(A);
  const mB = new W.Module(B);
  obs['errors'] = {
    newModuleBad: await outcome(() => new W.Module(BAD)),
    compileBad: await outcome(() => W.compile(BAD)),
    instantiateBad: await outcome(() => W.instantiate(BAD)),
    compileStreamingBad: await outcome(() => W.compileStreaming(response(BAD))),
    instantiateStreamingBad: await outcome(() => W.instantiateStreaming(response(BAD))),
    streamingMime: await outcome(() => W.compileStreaming(new Response(A))),
    streamingNotResponse: await outcome(() => W.instantiateStreaming(5 as unknown as Response)),
    streamingBodyUsed: await outcome(async () => {
      const r = response(A);
      await r.arrayBuffer();
      return W.compileStreaming(r);
    }),
    streamingRejected: await outcome(() => W.compileStreaming(Promise.reject(new RangeError('no response')))),
    dataView: await outcome(() => new W.Module(new DataView(A.buffer) as unknown as BufferSource)),
    empty: await outcome(() => new W.Module(new Uint8Array(0))),
    notBytes: await outcome(() => W.instantiate(5 as unknown as BufferSource)),
    noNew: await outcome(() => (W.Module as unknown as (b: BufferSource) => unknown)(A)),
    instanceNoNew: await outcome(() => (W.Instance as unknown as (m: WebAssembly.Module) => unknown)(mA)),
    instanceNotModule: await outcome(() => new W.Instance({} as WebAssembly.Module)),
    importsNotObject: [
      await outcome(() => new W.Instance(mA, 5 as unknown as WebAssembly.Imports)),
      await outcome(() => W.instantiate(mA, 5 as unknown as WebAssembly.Imports)),
      await outcome(() => W.instantiate(A, 5 as unknown as WebAssembly.Imports)),
      await outcome(() => W.instantiateStreaming(response(A), 5 as unknown as WebAssembly.Imports)),
    ],
    missingModule: [await outcome(() => new W.Instance(mA, {})), await outcome(() => W.instantiate(mA, {})), await outcome(() => W.instantiate(A, {}))],
    link: [
      await outcome(() => new W.Instance(mA, { env: { f: 1 } })),
      await outcome(() => W.instantiate(mA, { env: { f: 1 } })),
      await outcome(() => W.instantiate(A, { env: { f: 1 } })),
      await outcome(() => W.instantiateStreaming(response(A), { env: { f: 1 } })),
    ],
    startTrap: [await outcome(() => new W.Instance(mB)), await outcome(() => W.instantiate(mB)), await outcome(() => W.instantiate(B))],
  };

  // Instances through every API, several times each (under the lazy
  // policy the content is prepared in the background once the time spent
  // instantiating it natively reaches what its first compile took).
  const inst: Obs[] = [];
  const quick: string[] = [];
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < 3; k++) {
      inst.push(describeInstanceA(new W.Instance(mA, importsA())));
      inst.push(describeInstanceA(await W.instantiate(mA, importsA())));
      inst.push(describeInstanceA((await W.instantiate(A, importsA())).instance));
      inst.push(describeInstanceA((await W.instantiateStreaming(response(A), importsA())).instance));
    }
    for (let k = 0; k < 60; k++) quick.push(digest((new W.Instance(mA, importsA()).exports as { mem: WebAssembly.Memory }).mem));
    // Lazy: more of the same, a program yielding to the event loop between
    // batches, until the content is prepared (when the time spent in its
    // native instantiations reaches what its compile took: on a busy host
    // that can be more than a round's), so that the next rounds go through
    // the prepared module whatever the timings. `quick` keeps distinct
    // observations only, so the native run's fewer ones compare equal.
    const hook = registration()?.hook;
    for (let batch = 0; hook && round === 0 && batch < 1000; batch++) {
      await hook.settled();
      if (hook.stats()['preparations']! > 0) break;
      for (let k = 0; k < 20; k++) quick.push(digest((new W.Instance(mA, importsA()).exports as { mem: WebAssembly.Memory }).mem));
    }
    await registration()?.hook?.settled();
  }
  obs['instances'] = inst;
  obs['quick'] = [...new Set(quick)];

  // Subclasses.
  class MyInstance extends W.Instance {}
  class MyModule extends W.Module {}
  const sub = new MyInstance(new MyModule(A), importsA());
  obs['subclass'] = { isMine: sub instanceof MyInstance, module: new MyModule(A) instanceof MyModule, ...describeInstanceA(sub) };

  // A start function that calls the program, which compiles and instantiates.
  const prepared = () => (registration()?.hook?.stats()['preparedInstantiations'] as number | undefined) ?? 0;
  const before = prepared();
  let inner: Obs | null = null;
  new W.Instance(new W.Module(D), { env: { cb: () => void (inner = describeInstanceA(new W.Instance(new W.Module(A), importsA()))) } });
  obs['reentrant'] = inner;
  const reentrant = prepared() - before;

  // WebAssembly.instantiate(module, imports): V8 reads the imports and runs
  // the start function within the call. One imports object, changed between
  // calls; the order of calls, start functions and returns.
  const mE = new W.Module(E);
  const timing: unknown[] = [];
  for (let round = 0; round < 4; round++) {
    const log: string[] = [];
    const io = { env: { id: 0, cb: (id: number) => void log.push(`start ${id}`) } };
    const pending: Promise<WebAssembly.Instance>[] = [];
    for (let i = 0; i < 3; i++) {
      io.env.id = i;
      log.push(`call ${i}`);
      pending.push(W.instantiate(mE, io));
      log.push(`returned ${i}`);
    }
    const ids = (await Promise.all(pending)).map((x) => (x.exports as { id(): number }).id());
    timing.push({ log, ids });
    for (let k = 0; k < 20; k++) new W.Instance(mE, io); // under the lazy policy, toward its preparation
    await registration()?.hook?.settled();
  }
  obs['instantiateModuleTiming'] = timing;

  // Data for an imported memory (synchronous: the image may be mapped into it).
  const mC = new W.Module(C);
  const cs: string[] = [];
  for (let k = 0; k < 4; k++) {
    const memory = new W.Memory({ initial: 1, maximum: 4 });
    if (k === 3) new Uint8Array(memory.buffer)[9] = 1; // touched: V8 writes the data
    new W.Instance(mC, { env: { memory } });
    cs.push(digest(memory));
    if (k === 1) await registration()?.hook?.settled();
  }
  obs['importedMemory'] = cs;

  // A module sent to a worker, and a worker compiling for itself.
  obs['worker'] = await new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { module: mA, bytes: A } });
    w.once('message', resolve);
    w.once('error', reject);
  });

  const reg = registration();
  return { obs, hook: reg ? { enabled: reg.hook !== null, register: reg.hook?.stats() ?? null, engine: reg.engine.stats(), reentrant } : null };
}

async function inWorker(): Promise<void> {
  const { module, bytes } = workerData as { module: WebAssembly.Module; bytes: Uint8Array<ArrayBuffer> };
  const sent = describeInstanceA(new WebAssembly.Instance(module, importsA()));
  const own = new WebAssembly.Module(bytes);
  const mine: Obs[] = [];
  for (let k = 0; k < 3; k++) {
    mine.push(describeInstanceA(new WebAssembly.Instance(own, importsA())));
    await registration()?.hook?.settled();
  }
  const reg = registration();
  parentPort!.postMessage({
    sentModule: describeModule(module),
    sent,
    mine,
    hook: reg ? { register: reg.hook?.stats() ?? null, engine: reg.engine.stats() } : null,
  });
}

/** A module compiled before the hook was loaded, then instantiated under it. */
async function lateHook(): Promise<unknown> {
  const early = new WebAssembly.Module(A);
  const reg = (await import('../src/register/index.js')) as typeof import('../src/register/index.js');
  const i = describeInstanceA(new WebAssembly.Instance(early, importsA()));
  const after = new WebAssembly.Module(A);
  const j = describeInstanceA(new WebAssembly.Instance(after, importsA()));
  return { enabled: reg.enabled, instance: i, after: j, fallbacks: reg.getEngine().stats().fallbacks, register: reg.stats() };
}

if (!isMainThread) {
  await inWorker();
} else {
  const what = process.argv[2];
  const result = what === 'late-hook' ? await lateHook() : await observe();
  process.stdout.write(JSON.stringify(result));
}
