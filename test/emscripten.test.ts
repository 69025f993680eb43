/**
 * Emscripten end to end: sql.js databases and QuickJS runtimes created
 * through the adapter, each result identical to the same work done natively.
 * WASM_COW_E2E_RUNS (default 200) sets how many of each.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { newQuickJSWASMModuleFromVariant, newVariant, type QuickJSSyncVariant } from 'quickjs-emscripten-core';
import releaseSync from '@jitl/quickjs-wasmfile-release-sync';

const releaseSyncVariant = releaseSync as unknown as QuickJSSyncVariant;
import { Engine, emscriptenAdapter, ReleasedInstanceError } from '../src/index.js';
import { BACKENDS } from './helpers/env.js';
import { freshInitSqlJs, QUICKJS_WASM, SQL_WASM } from './helpers/emscripten.js';

const RUNS = Number(process.env['WASM_COW_E2E_RUNS'] ?? 200);

async function sqlWork(SQL: Awaited<ReturnType<ReturnType<typeof freshInitSqlJs>>>, i: number): Promise<unknown> {
  const db = new SQL.Database();
  db.run('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL)');
  for (let k = 0; k < 20; k++) db.run('INSERT INTO t (name, score) VALUES (?, ?)', [`n${(k * 7 + i) % 13}`, k * 1.5 + i]);
  const result = db.exec('SELECT name, COUNT(*), SUM(score) FROM t GROUP BY name ORDER BY name; SELECT sqlite_version()');
  db.close();
  return result;
}

for (const backend of BACKENDS) {
  test(`sql.js: ${RUNS} databases through the adapter equal native (${backend})`, async () => {
    const nativeSQL = await freshInitSqlJs()({ wasmBinary: SQL_WASM });
    const engine = new Engine({ backend });
    const prepared = engine.prepare(SQL_WASM);
    assert.equal(prepared.memories[0]!.excluded, null);
    for (let i = 0; i < RUNS; i++) {
      const adapter = emscriptenAdapter(prepared);
      const SQL = await freshInitSqlJs()({ instantiateWasm: adapter.instantiateWasm });
      assert.deepEqual(await sqlWork(SQL, i), await sqlWork(nativeSQL, i), `run ${i}`);
      adapter.release();
    }
    const s = engine.stats();
    assert.equal(s.instantiations, RUNS);
    assert.equal(s.liveLeases, 0);
    // The glue holds the raw instance: every memory is retired at release, never reused;
    // once that is seen, the policy runs most instantiations as V8 would (no memory made).
    assert.equal(s.retiredExposed + s.nativeInstantiations['small-data'], RUNS);
    assert.equal(s.pooledReuses, 0);
    engine.close();
  });
}

async function quickjsWork(variant: QuickJSSyncVariant, i: number): Promise<unknown> {
  const mod = await newQuickJSWASMModuleFromVariant(variant);
  const vm = mod.newContext();
  const code = `const xs = []; for (let k = 0; k < 50; k++) xs.push((k * ${i + 3}) % 17); JSON.stringify({ sum: xs.reduce((a, b) => a + b, 0), s: xs.slice(0, 5), t: typeof Proxy })`;
  const handle = vm.unwrapResult(vm.evalCode(code));
  const out = vm.dump(handle);
  handle.dispose();
  vm.dispose();
  return out;
}

test(`QuickJS: ${RUNS} runtimes through the adapter equal native; the imported memory gets its image`, async () => {
  // By default its 83 KiB of data is left to V8: mapping into an imported
  // memory did not beat V8's copy at that size (src/policy.ts).
  if (new Engine().backend === 'native') {
    const byDefault = new Engine();
    assert.equal(byDefault.prepare(QUICKJS_WASM).memories[0]!.excluded?.code, 'imported');
    byDefault.close();
  }
  // The mechanism, exercised: image wherever possible.
  const engine = new Engine({ nativeWhenFaster: false });
  const prepared = engine.prepare(QUICKJS_WASM);
  assert.equal(prepared.memories[0]!.imported, true);
  const native = await quickjsWork(releaseSyncVariant, 0);
  for (let i = 0; i < RUNS; i++) {
    const adapter = emscriptenAdapter(prepared);
    const variant = newVariant(releaseSyncVariant, { emscriptenModule: { instantiateWasm: adapter.instantiateWasm } as never });
    const got = await quickjsWork(variant, i);
    assert.deepEqual(got, i === 0 ? native : await quickjsWork(releaseSyncVariant, i), `run ${i}`);
    adapter.release();
    if (i === 0 && engine.backend === 'native') {
      const m = prepared.memories[0]!;
      assert.equal(m.excluded, null);
      assert.equal(m.condition, 'imported-untouched');
      assert.ok(m.image && m.image.length > 0, 'an image, mapped into quickjs’s own memory');
    }
  }
  assert.equal(engine.stats().liveLeases, 0);
  engine.close();
});

test('the adapter serves one instantiation and revokes on release', async () => {
  const engine = new Engine();
  const prepared = engine.prepare(SQL_WASM);
  const adapter = emscriptenAdapter(prepared);
  let glueImports: WebAssembly.Imports | undefined;
  await freshInitSqlJs()({
    instantiateWasm: (imports: WebAssembly.Imports, receive: (i: WebAssembly.Instance) => unknown) => {
      glueImports = imports;
      return adapter.instantiateWasm(imports, receive);
    },
  });
  assert.ok(adapter.lease);
  const exports = adapter.lease.exports;
  const fn = Object.values(exports).find((v) => typeof v === 'function') as () => void;
  assert.throws(() => adapter.instantiateWasm({}, () => {}), /one instantiation/);
  adapter.release();
  assert.equal(adapter.lease, null);
  // A glue that fails in its callback does not leave the lease live.
  const failing = emscriptenAdapter(prepared);
  assert.throws(
    () =>
      failing.instantiateWasm(glueImports!, () => {
        throw new Error('glue failed');
      }),
    /glue failed/,
  );
  assert.equal(failing.lease, null);
  assert.equal(engine.stats().liveLeases, 0);
  assert.throws(() => fn(), ReleasedInstanceError);
  engine.close();
});
