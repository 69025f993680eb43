/**
 * The drop-in instantiate(): its result behaves as the caller's module, and
 * its cache recognises bytes by content, never by where they are.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { CODE_SHARE, DROP_IN_LIMITS, DropInCache, codeShare, prepareInBackground, sampledHash } from '../src/dropin.js';
import { memoryShape } from '../src/code-share.js';
import { dropInSettled, getDefaultEngine, instantiate, type PreparedModule } from '../src/index.js';
import { digest, fns, memoryOf } from './helpers/env.js';
import { buildModule, stdFuncs } from './helpers/wasm.js';

const DATA = new Uint8Array(256 * 1024).map((_, i) => (i * 7 + 3) & 0xff || 1);
/** Enough data that an image in a new memory beats V8's copy (`seed` makes each module distinct). */
const big = (seed: number) =>
  buildModule({
    importFuncs: [{ module: 'env', name: 'f', params: [], results: [] }],
    memories: [{ min: 6, max: 16, export: 'mem' }],
    funcs: stdFuncs,
    data: [
      { offset: 4096, bytes: DATA },
      { offset: 8, bytes: [seed] },
    ],
  });
const BIG = big(1);
/** Too little data for that. */
const SMALL = buildModule({ memories: [{ min: 1, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 16, bytes: [1, 2, 3] }] });
const imports = { env: { f: () => {} } };

/** Lets the cache's scheduled preparation run (and, for the drop-in's own cache, finish its asynchronous compile). */
const settle = async () => {
  await tick();
  await tick();
  await dropInSettled();
};

/** Turns of the event loop until `done()` (a cache's background copy and compile take a few). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !done(); i++) await tick();
  assert.ok(done(), 'still waiting after 1000 turns');
}

test('drop-in instantiate(): result.module is the original module, on every call', async () => {
  const native = await WebAssembly.instantiate(BIG, imports);
  for (let call = 0; call < 4; call++) {
    const { module, instance } = await instantiate(BIG, imports);
    assert.deepEqual(WebAssembly.Module.imports(module), WebAssembly.Module.imports(native.module), `call ${call}: imports`);
    assert.deepEqual(WebAssembly.Module.exports(module), WebAssembly.Module.exports(native.module), `call ${call}: exports`);
    // Instantiable as V8 would instantiate it, with the caller's own imports.
    const again = new WebAssembly.Instance(module, imports);
    assert.equal(digest(memoryOf(again)), digest(memoryOf(native.instance)), `call ${call}: the module's own instance`);
    assert.equal(digest(memoryOf(instance)), digest(memoryOf(native.instance)), `call ${call}: the returned instance`);
    await settle();
  }
});

test('drop-in instantiate(): later calls on the same bytes go through the prepared module', async () => {
  const bytes = big(2);
  const before = getDefaultEngine().stats();
  await instantiate(bytes, imports); // native, keeps the compiled module
  await instantiate(bytes.slice(), imports); // a new buffer, recognised by content: the kept module; prepares later
  assert.equal(getDefaultEngine().stats().instantiations, before.instantiations, 'no engine instantiation yet');
  await settle();
  await instantiate(bytes.slice(), imports);
  const after = getDefaultEngine().stats();
  assert.equal(after.instantiations - before.instantiations, 1, 'the third through the engine');
  assert.ok(after.bytesMapped - before.bytesMapped >= DATA.length, 'its data was mapped, not copied');
});

test('drop-in instantiate(): bytes changed in place are a new module', async () => {
  const bytes = SMALL.slice();
  const first = await instantiate(bytes, {});
  assert.equal(fns(first.instance.exports).load8!(16), 1);
  await settle();
  // Change a data byte in place (same buffer, same length, same sampled hash or not).
  const at = bytes.lastIndexOf(1);
  bytes[at] = 0x55;
  const second = await instantiate(bytes, {});
  assert.equal(fns(second.instance.exports).load8!(16), 0x55);
  assert.notEqual(second.module, first.module);
  assert.equal(fns(new WebAssembly.Instance(second.module, {}).exports).load8!(16), 0x55);
});

test('drop-in instantiate(): errors are V8’s', async () => {
  await assert.rejects(instantiate(new Uint8Array([0, 97, 115, 109, 2, 0, 0, 0])), WebAssembly.CompileError);
  await assert.rejects(instantiate(BIG, {}), TypeError); // env.f missing: first call
  await assert.rejects(instantiate(BIG, { env: {} }), WebAssembly.LinkError); // cached module
  await assert.rejects(instantiate('not bytes' as unknown as BufferSource), TypeError);
});

test('DropInCache: bounded, least recently used first, prepared only where an image wins', async () => {
  const prepared: string[] = [];
  const fake = (mode: 'image' | 'adaptive') =>
    ({
      newMemory: { mode },
      dispose: () => prepared.push('disposed'),
      instantiateUnpooled: async () => {
        prepared.push('unpooled');
        return new WebAssembly.Instance(new WebAssembly.Module(SMALL));
      },
    }) as unknown as PreparedModule;
  let nextMode: 'image' | 'adaptive' = 'image';
  const cache = new DropInCache(getDefaultEngine, () => {
    prepared.push(`prepare ${nextMode}`);
    return fake(nextMode);
  });
  const mod = (i: number) => buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: [i & 0xff, i >> 8] }] });

  await cache.instantiate(mod(0));
  await cache.instantiate(mod(0)); // second call (mostly data): native; copies, compiles and prepares afterwards
  assert.deepEqual(prepared, []);
  await settle();
  await cache.settled();
  assert.deepEqual(prepared, ['prepare image']);
  await cache.instantiate(mod(0));
  assert.deepEqual(prepared, ['prepare image', 'unpooled']);

  nextMode = 'adaptive';
  await cache.instantiate(mod(1));
  await cache.instantiate(mod(1));
  await settle();
  await cache.settled();
  await cache.instantiate(mod(1)); // prepared, but no gain: disposed, the kept module runs
  assert.deepEqual(prepared, ['prepare image', 'unpooled', 'prepare adaptive', 'disposed']);

  for (let i = 2; i < DROP_IN_LIMITS.entries + 5; i++) await cache.instantiate(mod(i));
  assert.equal(cache.size, DROP_IN_LIMITS.entries);
  assert.equal(prepared.filter((p) => p === 'disposed').length, 2, "the evicted entry's prepared module is disposed");
  cache.clear();
  assert.equal(cache.size, 0);
});

test('DropInCache: a preparation that completes later is used from then on; one completing after its entry was dropped is disposed', async () => {
  const log: string[] = [];
  const fake = (name: string) =>
    ({
      newMemory: { mode: 'image' },
      dispose: () => log.push(`disposed ${name}`),
      instantiateUnpooled: async () => {
        log.push(`unpooled ${name}`);
        return new WebAssembly.Instance(new WebAssembly.Module(SMALL));
      },
    }) as unknown as PreparedModule;
  const finish: (() => void)[] = [];
  const cache = new DropInCache(getDefaultEngine, (_engine, bytes) => {
    const name = `m${bytes[bytes.length - 1]}`;
    log.push(`prepare ${name}`);
    return new Promise((resolve) => finish.push(() => resolve(fake(name))));
  });
  const mod = (i: number) => buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: [i] }] });
  await cache.instantiate(mod(1));
  await cache.instantiate(mod(1));
  await until(() => log.length > 0);
  assert.deepEqual(log, ['prepare m1'], 'preparing');
  await cache.instantiate(mod(1)); // not ready yet: the kept module
  assert.deepEqual(log, ['prepare m1']);
  finish.shift()!();
  await cache.settled();
  await cache.instantiate(mod(1));
  assert.deepEqual(log, ['prepare m1', 'unpooled m1'], 'ready: used');

  await cache.instantiate(mod(2));
  await cache.instantiate(mod(2));
  await until(() => log.length > 2);
  cache.clear(); // dropped while its preparation runs
  finish.shift()!();
  await cache.settled();
  assert.deepEqual(log, ['prepare m1', 'unpooled m1', 'prepare m2', 'disposed m1', 'disposed m2']);
});

test('sampledHash: equal bytes hash equal; length and sampled bytes count', () => {
  const a = new Uint8Array(100_000).map((_, i) => i & 0xff);
  assert.equal(sampledHash(a), sampledHash(a.slice()));
  assert.notEqual(sampledHash(a), sampledHash(a.subarray(0, 99_999)));
  const b = a.slice();
  b[5] = b[5]! ^ 1;
  assert.notEqual(sampledHash(a), sampledHash(b));
});

test('drop-in instantiate(): bytes that only hash alike are never taken for each other', async () => {
  const a = big(3);
  const b = a.slice();
  // A byte of the data no sample covers: same length, same sampled hash.
  const step = Math.floor((b.length - 128) / 32);
  const at = 64 + 10 * step + Math.floor(step / 2);
  b[at] = b[at]! ^ 0xff;
  assert.equal(sampledHash(a), sampledHash(b));
  const dataStart = Buffer.from(a).indexOf(Buffer.from(DATA.subarray(0, 64)));
  assert.ok(dataStart > 0 && at > dataStart && at < dataStart + DATA.length, 'the byte is in the data');
  const memByte = 4096 + (at - dataStart); // where it lands in linear memory
  for (let call = 0; call < 3; call++) {
    const ra = await instantiate(a, imports);
    const rb = await instantiate(b, imports);
    const va = fns(ra.instance.exports).load8!(memByte);
    const vb = fns(rb.instance.exports).load8!(memByte);
    assert.equal(va, DATA[memByte - 4096], `call ${call}: a`);
    assert.equal(vb, DATA[memByte - 4096]! ^ 0xff, `call ${call}: b`);
    await settle();
  }
});

/** A module whose `id()` returns the imported global env.id, with data of its own (`seed`). */
const withId = (seed: number) =>
  buildModule({
    importGlobals: [{ module: 'env', name: 'id' }],
    memories: [{ min: 1 }],
    data: [{ offset: 0, bytes: [seed] }],
    funcs: [{ export: 'id', results: [0x7f], body: [0x23, 0] }],
  });

/** Three calls started together, one imports object changed between them: the ids each instance read. */
async function idsOf(inst: (b: Uint8Array, i: WebAssembly.Imports) => Promise<WebAssembly.WebAssemblyInstantiatedSource>, bytes: Uint8Array): Promise<number[]> {
  const io = { env: { id: 0 } };
  const pending: Promise<WebAssembly.WebAssemblyInstantiatedSource>[] = [];
  for (let i = 0; i < 3; i++) {
    io.env.id = i;
    pending.push(inst(bytes, io));
  }
  // A microtask queued now runs before V8's compile is done.
  queueMicrotask(() => (io.env.id = 7));
  return (await Promise.all(pending)).map((r) => (r.instance.exports as { id(): number }).id());
}

test('drop-in instantiate(): imports are read when V8 would read them, after its asynchronous compile, on every call', async () => {
  for (const seed of [41, 42]) {
    const bytes = withId(seed);
    const native = await idsOf((b, i) => WebAssembly.instantiate(b as Uint8Array<ArrayBuffer>, i), bytes);
    assert.deepEqual(native, [7, 7, 7]);
    for (let round = 0; round < 4; round++) {
      assert.deepEqual(await idsOf((b, i) => instantiate(b as Uint8Array<ArrayBuffer>, i), bytes), native, `seed ${seed}, round ${round}`);
      await settle();
    }
  }
});

test('drop-in instantiate(): a view is read through its internal slots, as V8 reads it, never its own properties', async () => {
  const mod = (v: number) =>
    buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: [v, 0x5a] }], funcs: [{ export: 'id', results: [0x7f], body: [0x41, v] }] });
  const a = mod(51);
  const b = mod(52);
  for (let k = 0; k < 3; k++) await instantiate(a);
  await settle();
  const disguised = new Uint8Array(b);
  Object.defineProperties(disguised, { buffer: { value: a.buffer }, byteOffset: { value: a.byteOffset }, byteLength: { value: a.byteLength } });
  const id = (r: WebAssembly.WebAssemblyInstantiatedSource) => (r.instance.exports as { id(): number }).id();
  assert.equal(id(await WebAssembly.instantiate(disguised)), 52);
  assert.equal(id(await instantiate(disguised)), 52);
  // A DataView of bytes the cache holds: V8 rejects it, so does the drop-in.
  const dv = new DataView(a.buffer, a.byteOffset, a.byteLength) as unknown as BufferSource;
  await assert.rejects(WebAssembly.instantiate(dv), TypeError);
  await assert.rejects(instantiate(dv), TypeError);
});

/** A module mostly of code (a long function body), with a little data of its own (`seed`). */
const codeHeavy = (seed: number) =>
  buildModule({
    memories: [{ min: 1, export: 'mem' }],
    data: [{ offset: 0, bytes: [seed, 0x5a] }],
    funcs: [
      ...stdFuncs,
      // 20,000 times i32.const 0; drop: about 60 KB of code.
      { export: 'spin', body: Array.from({ length: 20_000 }, () => [0x41, 0x00, 0x1a]).flat() },
    ],
  });

test('codeShare: the code section share from the section headers; 0 for what is not a module', () => {
  assert.ok(codeShare(codeHeavy(1)) > 0.9);
  assert.ok(codeShare(BIG) < 0.01);
  assert.ok(codeShare(codeHeavy(1)) >= CODE_SHARE && codeShare(BIG) < CODE_SHARE);
  assert.equal(codeShare(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 10, 0xff, 0xff, 0xff, 0xff, 0x7f])), 0, 'a size past the end');
  assert.equal(codeShare(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80])), 0, 'an unterminated size');
  assert.equal(codeShare(new Uint8Array([1, 2, 3])), 0);
});

/**
 * Runs `f` with a count of the drop-in's synchronous compiles (each made
 * and counted within its call). The drop-in calls V8 through the functions
 * as they were before anything replaced the globals (src/wasm-api.ts), so a
 * proxy on WebAssembly.Module would not see them.
 */
async function countingModules<T>(cache: DropInCache, f: (count: () => number) => Promise<T>): Promise<T> {
  return f(() => cache.counts.cachedCompiles);
}

test('drop-in instantiate(): the second call on bytes mostly of code compiles them synchronously (from V8’s cache) and keeps the bytes as they were at the call', async () => {
  const cache = new DropInCache(getDefaultEngine, () => null);
  const bytes = codeHeavy(61);
  await countingModules(cache, async (count) => {
    const first = await cache.instantiate(bytes);
    assert.equal(count(), 0, 'the first call is WebAssembly.instantiate');
    const second = cache.instantiate(bytes);
    assert.equal(count(), 1, 'the second call compiled the bytes within the call');
    // The caller changes its buffer as soon as the call returned its promise.
    const at = Buffer.from(bytes).indexOf(Buffer.from([61, 0x5a]));
    bytes[at] = 62;
    const r2 = await second;
    assert.equal(cache.counts.cachedCompiles, 1);
    assert.notEqual(r2.module, first.module, 'a new Module, as natively');
    assert.equal(fns(r2.instance.exports).load8!(0), 61, 'the bytes at the call');
    await cache.settled();
    // The changed bytes are another module; the original bytes are the kept one.
    const changed = await cache.instantiate(bytes);
    assert.equal(fns(changed.instance.exports).load8!(0), 62);
    assert.notEqual(changed.module, r2.module);
    bytes[at] = 61;
    const third = await cache.instantiate(bytes);
    assert.equal(third.module, r2.module, 'the kept module');
    assert.equal(fns(third.instance.exports).load8!(0), 61);
    assert.equal(count(), 1, 'nothing compiled synchronously since');
  });
});

test('drop-in instantiate(): the second call on bytes mostly of data is native; the bytes are copied after it, and a change made meanwhile is never taken for the bytes compiled', async () => {
  const cache = new DropInCache(getDefaultEngine, () => null);
  const dataMod = (seed: number) => buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: new Uint8Array(4096).fill(seed) }], funcs: stdFuncs });
  for (const where of ['sampled', 'unsampled'] as const) {
    const bytes = dataMod(where === 'sampled' ? 71 : 72);
    const v0 = bytes[bytes.length - 40]!; // a data byte the sampled hash covers
    // A data byte no sample covers.
    const step = Math.floor((bytes.length - 128) / 32);
    const unsampled = 64 + 20 * step + Math.floor(step / 2);
    const at = where === 'sampled' ? bytes.length - 40 : unsampled;
    assert.equal(bytes[at], v0);
    await cache.instantiate(bytes);
    const dropped = cache.counts.deferredDropped;
    const second = await cache.instantiate(bytes);
    assert.equal(cache.counts.deferredCopies > 0, true);
    bytes[at] = v0 ^ 0xff; // before the copy (on a later turn)
    await cache.settled();
    if (where === 'sampled') assert.equal(cache.counts.deferredDropped, dropped + 1, 'a change the hash sees: nothing kept');
    else assert.equal(cache.counts.deferredDropped, dropped, 'a change it does not see: the changed bytes are kept, as themselves');
    const offset = (b: Uint8Array) => Buffer.from(b).indexOf(Buffer.from(new Uint8Array(64).fill(v0)));
    const dataAt = offset(bytes);
    assert.ok(dataAt > 0 && at > dataAt);
    const changed = await cache.instantiate(bytes);
    assert.equal(fns(changed.instance.exports).load8!(at - dataAt), v0 ^ 0xff, 'the changed bytes');
    bytes[at] = v0;
    const original = await cache.instantiate(bytes);
    assert.equal(fns(original.instance.exports).load8!(at - dataAt), v0, 'the original bytes');
    assert.notEqual(original.module, changed.module);
    assert.notEqual(original.module, second.module);
  }
});

test('DropInCache: the copy and the preparation wait for a turn with no drop-in call in flight (they would run inside the call)', async () => {
  let inFlight = 0;
  const seenInFlight: number[] = [];
  const cache = new DropInCache(getDefaultEngine, () => {
    seenInFlight.push(inFlight);
    return null;
  });
  const call = async (bytes: Uint8Array<ArrayBuffer>) => {
    inFlight++;
    try {
      return await cache.instantiate(bytes);
    } finally {
      inFlight--;
    }
  };
  for (const code of [false, true]) {
    // Mostly data: copied after the second call; mostly code: copied within it. Either way prepared later.
    const bytes = code
      ? new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 10, 0x95, 3, 1, 0x92, 3, 0, ...new Array<number>(400).fill(1), 0x0b, 11, 7, 1, 0, 65, 0, 11, 1, 42])
      : buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: new Uint8Array(4096).fill(2) }] });
    assert.equal(codeShare(bytes) >= CODE_SHARE, code);
    const before = seenInFlight.length;
    await call(bytes);
    await call(bytes);
    // Calls back to back (each awaits later turns of its own): nothing may run inside them.
    for (let i = 0; i < 8; i++) await Promise.all([call(bytes), call(bytes)]);
    const during = seenInFlight.length - before;
    await settle();
    await cache.settled();
    assert.equal(during, 0, `${code ? 'code' : 'data'}: prepared while calls were running`);
    assert.deepEqual(seenInFlight.slice(-1), [0], `${code ? 'code' : 'data'}: prepared once the calls were done`);
  }
});

/** 2 MiB: enough for an image into an imported memory (the policy's cost of a mapping there). */
const IMPORTED_DATA = new Uint8Array(2 * 1024 * 1024).map((_, i) => (i * 13 + 5) & 0xff || 1);
/** `(import "m" "mem" (memory 64)) (data (i32.const 0) IMPORTED_DATA)`: its only image is for the memory it imports. */
function importedMemoryModule(): Uint8Array<ArrayBuffer> {
  const DATA = IMPORTED_DATA;
  const leb = (n: number): number[] => {
    const out: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const seg = [1, 0, 0x41, 0, 0x0b, ...leb(DATA.length)];
  const head = [0, 97, 115, 109, 1, 0, 0, 0, 2, 10, 1, 1, 109, 3, 109, 101, 109, 2, 0, 64, 11, ...leb(seg.length + DATA.length), ...seg];
  const bytes = new Uint8Array(head.length + DATA.length);
  bytes.set(head);
  bytes.set(DATA, head.length);
  return bytes;
}

test('prepareInBackground: no rewrite is compiled for a module whose only images are for imported memories (the drop-in instantiates asynchronously, which never takes them), nor for one with too little data', async () => {
  const engine = getDefaultEngine();
  const bytes = importedMemoryModule();
  const original = new WebAssembly.Module(bytes);
  assert.ok(engine.prepare(bytes).rewritten, 'the engine does rewrite it (its data becomes an image for the imported memory)');
  assert.ok((await prepareInBackground(engine, bytes, original)) === null, 'not prepared: its rewrite would be compiled for nothing');
  // Nor one with too little data for a new memory's image to beat V8's copy.
  assert.equal(engine.prepare(SMALL).newMemory?.mode, 'adaptive');
  assert.ok((await prepareInBackground(engine, SMALL, new WebAssembly.Module(SMALL))) === null, 'not prepared: too little data');
  // A module that defines its memory, with enough data, is still prepared.
  const prepared = await prepareInBackground(engine, BIG, new WebAssembly.Module(BIG));
  assert.ok(prepared !== null && prepared.rewritten);
  prepared.dispose();
  // Through the drop-in: equal to native, every call.
  const mem = () => new WebAssembly.Memory({ initial: 64 });
  for (let i = 0; i < 3; i++) {
    const m = mem();
    await instantiate(bytes, { m: { mem: m } });
    await settle();
    assert.ok(Buffer.from(m.buffer, 0, IMPORTED_DATA.length).equals(IMPORTED_DATA), `call ${i}: the data, as natively`);
    assert.ok(new Uint8Array(m.buffer, IMPORTED_DATA.length).every((b) => b === 0));
  }
});

test('memoryShape: from the section headers; null where they cannot be walked', () => {
  const header = [0, 97, 115, 109, 1, 0, 0, 0];
  assert.deepEqual(memoryShape(SMALL), { definesMemory: true, hasData: true });
  assert.deepEqual(memoryShape(importedMemoryModule()), { definesMemory: false, hasData: true }, 'its memory imported');
  assert.deepEqual(memoryShape(new Uint8Array([...header, 5, 1, 0])), { definesMemory: false, hasData: false }, 'a memory section of zero memories');
  assert.deepEqual(memoryShape(new Uint8Array([...header, 5, 3, 1, 0, 1])), { definesMemory: true, hasData: false }, 'a memory, no data');
  assert.deepEqual(memoryShape(new Uint8Array([...header, 5, 2, 0x80, 0])), { definesMemory: true, hasData: false }, 'a padded zero count reads as a memory (planned, never missed)');
  assert.deepEqual(memoryShape(new Uint8Array([...header, 0, 3, 1, 97, 0, 11, 1, 0])), { definesMemory: false, hasData: false }, 'a custom section, a data section of zero segments');
  assert.deepEqual(memoryShape(new Uint8Array(header)), { definesMemory: false, hasData: false }, 'no sections');
  assert.equal(memoryShape(new Uint8Array([...header, 5, 9, 1])), null, 'a section longer than the bytes: left to the reader');
  assert.equal(memoryShape(new Uint8Array([...header, 5, 0])), null, 'an empty memory section: left to the reader');
  assert.equal(memoryShape(new Uint8Array([1, 2, 3])), null, 'not a module: left to the reader');
});
