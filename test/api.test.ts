import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BackendUnavailableError,
  Engine,
  EngineClosedError,
  instantiate,
  InvalidArgumentError,
  PoolExhaustedError,
  ReleasedInstanceError,
  WasmFormatError,
} from '../src/index.js';
import { BACKENDS, digest, fns, memoryOf } from './helpers/env.js';
import { buildModule, I32, stdFuncs } from './helpers/wasm.js';

const DATA = new Uint8Array(70000).map((_, i) => (i * 7 + 1) & 0xff);
const MODULE = buildModule({
  memories: [{ min: 2, max: 8, export: 'mem' }],
  funcs: stdFuncs,
  data: [{ offset: 1000, bytes: DATA }],
});
const indexUrl = new URL('../src/index.js', import.meta.url).href;
const moduleFile = join(mkdtempSync(join(tmpdir(), 'wasm-cow-api-')), 'module.wasm');
writeFileSync(moduleFile, MODULE);
const readModule = `(await import('node:fs')).readFileSync(${JSON.stringify(moduleFile)})`;

function runNode(code: string, env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('backend: auto resolves to native on Linux', () => {
  const engine = new Engine();
  assert.equal(engine.backend, process.platform === 'linux' ? 'native' : 'copy');
  if (process.platform === 'linux') assert.equal(engine.nativeUnavailableReason, null);
  else assert.match(engine.nativeUnavailableReason ?? '', /not Linux/);
  engine.close();
});

test('without the addon: auto falls back to copy; native throws BackendUnavailableError', () => {
  const r = runNode(
    `import { Engine } from '${indexUrl}';
     const e = new Engine();
     let err = null;
     try { new Engine({ backend: 'native' }); } catch (x) { err = x; }
     const lease = e.prepare(${readModule}).instantiate();
     console.log(JSON.stringify({ backend: e.backend, reason: e.nativeUnavailableReason, code: err && err.code,
       byte: lease.exports.load8(1000) }));`,
    { WASM_COW_DISABLE_NATIVE: '1' },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    backend: 'copy',
    reason: 'WASM_COW_DISABLE_NATIVE=1',
    code: 'ERR_WASM_COW_BACKEND_UNAVAILABLE',
    byte: DATA[0],
  });
  assert.ok(new BackendUnavailableError('x') instanceof Error);
});

test('options are validated', () => {
  assert.throws(() => new Engine({ backend: 'fast' as never }), InvalidArgumentError);
  assert.throws(() => new Engine({ maxInstances: 0 }), InvalidArgumentError);
  assert.throws(() => new Engine({ maxInstances: 1.5 }), InvalidArgumentError);
  assert.throws(() => new Engine({ maxIdle: -1 }), InvalidArgumentError);
  assert.throws(() => new Engine({ imageSizeLimit: NaN }), /imageSizeLimit must be an integer/);
  assert.throws(() => new Engine({ backgroundReset: 'yes' as never }), /backgroundReset must be a boolean/);
  assert.throws(() => new Engine(null as never), InvalidArgumentError);
});

for (const backend of BACKENDS) {
  test(`prepare: input types and errors (${backend})`, () => {
    const engine = new Engine({ backend });
    assert.throws(() => engine.prepare('wasm' as never), InvalidArgumentError);
    assert.throws(() => engine.prepare(undefined as never), { code: 'ERR_WASM_COW_INVALID_ARGUMENT' });
    // ArrayBuffer, Uint8Array view with an offset, DataView: all accepted.
    const padded = new Uint8Array(MODULE.length + 3);
    padded.set(MODULE, 3);
    for (const src of [MODULE.buffer.slice(0), padded.subarray(3), new DataView(padded.buffer, 3)]) {
      const l = engine.prepare(src as BufferSource).instantiate();
      assert.equal(fns(l.exports).load8!(1000), DATA[0]);
      l.release();
    }
    // Malformed: WasmFormatError, which is a CompileError, with the offset.
    const bad = MODULE.slice(0, 20);
    assert.throws(() => engine.prepare(bad), (e: unknown) => {
      assert.ok(e instanceof WasmFormatError && e instanceof WebAssembly.CompileError);
      assert.equal(typeof e.offset, 'number');
      return true;
    });
    // Well-formed but invalid (i32.add on an empty stack): V8's own CompileError.
    const invalid = buildModule({ memories: [{ min: 1 }], funcs: [{ results: [I32], body: [0x6a] }] });
    let nativeMsg = '';
    try {
      new WebAssembly.Module(invalid);
    } catch (e) {
      nativeMsg = (e as Error).message;
    }
    assert.throws(() => engine.prepare(invalid), (e: unknown) => e instanceof WebAssembly.CompileError && (e as Error).message === nativeMsg);
    // The caller's bytes may change after prepare.
    const mutable = MODULE.slice();
    const p = engine.prepare(mutable);
    mutable.fill(0);
    const l = p.instantiate();
    assert.equal(fns(l.exports).load8!(1000), DATA[0]);
    l.release();
    engine.close();
  });

  test(`lease: exports, release revokes, Symbol.dispose (${backend})`, () => {
    // Inline resets and always an image: l3 finds l2's memory clean (counted as a pooled reuse).
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    const prepared = engine.prepare(MODULE);
    const lease = prepared.instantiate();
    const { load8, store8 } = fns(lease.exports);
    assert.equal(load8!(1000), DATA[0]);
    store8!(1000, 0);
    const buf = lease.memoryBuffer();
    assert.equal(lease.memoryBuffer('mem'), buf, 'the current buffer of the exported memory');
    assert.equal(buf.byteLength, 2 * 65536);
    assert.equal(lease.released, false);
    lease.release();
    assert.equal(lease.released, true);
    assert.equal(buf.byteLength, 0, 'the tenant’s buffers are detached');
    assert.throws(() => load8!(1000), ReleasedInstanceError);
    assert.throws(() => lease.instance, { code: 'ERR_WASM_COW_RELEASED' });
    assert.throws(() => lease.exports, ReleasedInstanceError);
    assert.throws(() => lease.memoryBuffer(), ReleasedInstanceError);
    lease.release(); // idempotent
    assert.equal(engine.stats().liveLeases, 0);
    assert.equal(engine.stats().retiredExposed, 1, 'a lent buffer retires the memory (native code may still hold its address)');
    {
      using l2 = prepared.instantiate();
      assert.equal(fns(l2.exports).load8!(1000), DATA[0], 'the next tenant sees the image, not the write');
      fns(l2.exports).store8!(1000, 0);
      assert.equal(engine.stats().liveLeases, 1);
    }
    {
      using l3 = prepared.instantiate();
      assert.equal(fns(l3.exports).load8!(1000), DATA[0], 'the next tenant sees the image, not the write');
      assert.equal(engine.stats().pooledReuses, 1, 'used only through revocable exports: pooled');
    }
    assert.equal(engine.stats().liveLeases, 0);
    engine.close();
  });

  test(`maxInstances: PoolExhaustedError, and room again after release (${backend})`, () => {
    const engine = new Engine({ backend, maxInstances: 2 });
    const p = engine.prepare(MODULE);
    const a = p.instantiate();
    const b = p.instantiate();
    assert.throws(() => p.instantiate(), (e: unknown) => e instanceof PoolExhaustedError && e.maxInstances === 2 && /maxInstances/.test(e.message));
    a.release();
    const c = p.instantiate();
    assert.equal(fns(c.exports).load8!(1000), DATA[0]);
    assert.equal(fns(b.exports).load8!(1000), DATA[0]);
    b.release();
    c.release();
    engine.close();
  });

  test(`errors of instantiation are native’s, and leave the pool consistent (${backend})`, () => {
    const engine = new Engine({ backend, maxInstances: 1 });
    const needsImport = buildModule({
      importFuncs: [{ module: 'env', name: 'f' }],
      memories: [{ min: 1 }],
      data: [{ offset: 0, bytes: [1] }],
    });
    const p = engine.prepare(needsImport);
    const nativeError = (imports: unknown): string => {
      try {
        new WebAssembly.Instance(new WebAssembly.Module(needsImport), imports as WebAssembly.Imports);
      } catch (e) {
        return `${(e as Error).constructor.name}: ${(e as Error).message}`;
      }
      return 'no error';
    };
    for (const imports of [undefined, null, 5, {}, { env: {} }, { env: { f: 1 } }]) {
      assert.throws(
        () => p.instantiate(imports as WebAssembly.Imports),
        (e: unknown) => `${(e as Error).constructor.name}: ${(e as Error).message}` === nativeError(imports),
        `imports ${JSON.stringify(imports)}`,
      );
    }
    assert.equal(engine.stats().liveLeases, 0);
    // Still usable: the single instance slot is free.
    const ok = p.instantiate({ env: { f: () => {} } });
    ok.release();
    // A trapping data segment (out of bounds) fails exactly as native.
    const oob = buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: [1] }, { offset: 65535, bytes: [1, 2] }] });
    const po = engine.prepare(oob);
    assert.equal(po.memories[0]!.excluded?.code, 'out-of-bounds');
    assert.throws(() => po.instantiate(), (e: unknown) => {
      assert.throws(() => new WebAssembly.Instance(new WebAssembly.Module(oob)), { message: (e as Error).message });
      return e instanceof WebAssembly.RuntimeError;
    });
    assert.equal(engine.stats().liveLeases, 0);
    engine.close();
  });

  test(`instantiateAsync and the drop-in instantiate() (${backend})`, async () => {
    const engine = new Engine({ backend });
    const lease = await engine.prepare(MODULE).instantiateAsync();
    assert.equal(fns(lease.exports).load8!(1000 + 69999), DATA[69999]);
    lease.release();
    await assert.rejects(engine.prepare(buildModule({ importFuncs: [{ module: 'a', name: 'b' }] })).instantiateAsync(), TypeError);
    assert.equal(engine.stats().liveLeases, 0);
    engine.close();

    const { module, instance } = await instantiate(MODULE);
    assert.ok(module instanceof WebAssembly.Module);
    assert.equal(fns(instance.exports).load8!(1000), DATA[0]);
    const native = await WebAssembly.instantiate(MODULE);
    assert.equal(digest(memoryOf(instance)), digest(memoryOf(native.instance)));
    const again = await instantiate(new WebAssembly.Module(MODULE));
    assert.ok(again instanceof WebAssembly.Instance);
  });

  test(`close and dispose (${backend})`, () => {
    const engine = new Engine({ backend });
    const p = engine.prepare(MODULE);
    const live = p.instantiate();
    p.instantiate().release();
    const q = engine.prepare(MODULE);
    const qLive = q.instantiate();
    q.dispose();
    assert.throws(() => q.instantiate(), /disposed/);
    assert.equal(fns(qLive.exports).load8!(1000), DATA[0], 'a live lease outlives dispose');
    qLive.release();
    engine.close();
    assert.throws(() => engine.prepare(MODULE), EngineClosedError);
    assert.throws(() => p.instantiate(), { code: 'ERR_WASM_COW_ENGINE_CLOSED' });
    assert.equal(fns(live.exports).load8!(1000), DATA[0], 'a live lease outlives close');
    live.release();
    const s = engine.stats();
    assert.equal(s.idleMemories, 0);
    assert.equal(s.liveLeases, 0);
  });

  test(`modules without memories, with an imported memory, and stats (${backend})`, () => {
    // Inline resets: with background ones the pool may use a second memory
    // while the first is reset, and the counts below depend on timing. The
    // imported memory's 1 byte is imaged only with the cost model off.
    const engine = new Engine({ backend, backgroundReset: false, nativeWhenFaster: false });
    const none = engine.prepare(buildModule({ funcs: [{ export: 'f', results: [I32], body: [0x41, 5] }] }));
    assert.deepEqual(none.memories, []);
    const l = none.instantiate();
    assert.equal(fns(l.exports).f!(), 5);
    l.release();
    const imported = engine.prepare(
      buildModule({
        importMemory: { module: 'env', name: 'memory', min: 1 },
        funcs: stdFuncs,
        data: [{ offset: 4, bytes: [9] }],
      }),
    );
    if (backend === 'native') {
      assert.equal(imported.memories[0]!.excluded, null);
      assert.equal(imported.memories[0]!.condition, 'imported-untouched');
    } else {
      assert.equal(imported.memories[0]!.excluded?.code, 'imported');
    }
    assert.deepEqual(imported.imports, [{ module: 'env', name: 'memory', kind: 'memory' }]);
    const memory = new WebAssembly.Memory({ initial: 1 });
    const li = imported.instantiate({ env: { memory } });
    assert.equal(new Uint8Array(memory.buffer)[4], 9);
    li.release();
    const p = engine.prepare(MODULE);
    for (let i = 0; i < 5; i++) p.instantiate().release();
    const s = engine.stats();
    assert.equal(s.instantiations, 7);
    assert.equal(s.imagesBuilt, backend === 'native' ? 2 : 1, 'the imported memory’s image too, on native');
    assert.equal(s.pooledReuses, 4);
    assert.equal(s.fastPathHits, 4);
    assert.equal(s.resets, 5);
    assert.equal(s.liveLeases, 0);
    assert.equal(s.idleMemories, 1);
    engine.close();
  });
}


test('a lease dropped without release frees its instance slot after GC', () => {
  const r = runNodeGc(
    `import { Engine } from '${indexUrl}';
     const e = new Engine({ maxInstances: 1 });
     const p = e.prepare(${readModule});
     (() => { p.instantiate(); })();
     let threw = false; try { p.instantiate(); } catch { threw = true; }
     for (let i = 0; i < 20 && e.stats().liveLeases > 0; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
     const l = p.instantiate();
     console.log(JSON.stringify({ threw, byte: l.exports.load8(1000) }));`,
  );
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { threw: true, byte: DATA[0] });
});

function runNodeGc(code: string) {
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("CommonJS programs require('wasm-cow') (the package's \"default\" export): the same module as import, one default engine", () => {
  const root = new URL('../../', import.meta.url).pathname;
  const script = `const w = require('wasm-cow');
    const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
    const lease = w.getDefaultEngine().prepare(bytes).instantiate();
    const read = new Uint8Array(lease.exports.mem.buffer)[0];
    lease.release();
    import('wasm-cow').then((m) => console.log(JSON.stringify({ same: m.getDefaultEngine() === w.getDefaultEngine(), Engine: typeof w.Engine, read })));`;
  const r = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { same: true, Engine: 'function', read: 42 });
  assert.equal(r.stderr, '', 'no warning');
});
