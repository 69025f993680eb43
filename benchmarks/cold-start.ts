/**
 * Cold start of Emscripten modules: from a fresh Emscripten module instance
 * to the first result (sql.js: open a database and run a query; QuickJS:
 * create a context and evaluate an expression), native against wasm-cow.
 * Both sides start from a compiled module and a fresh copy of the glue.
 */
import { newQuickJSWASMModuleFromVariant, newVariant, type QuickJSSyncVariant } from 'quickjs-emscripten-core';
import releaseSync from '@jitl/quickjs-wasmfile-release-sync';
import { summarize, type Timing } from '../src/bench/measure.js';
import { Engine, emscriptenAdapter } from '../src/index.js';
import { freshInitSqlJs, QUICKJS_WASM, SQL_WASM } from '../test/helpers/emscripten.js';

const releaseSyncVariant = releaseSync as unknown as QuickJSSyncVariant;
type Hook = (imports: WebAssembly.Imports, receive: (i: WebAssembly.Instance, m?: WebAssembly.Module) => unknown) => WebAssembly.Exports;

export interface ColdStartRow {
  module: string;
  native: Timing;
  engine: Timing;
}

async function time(runs: number, once: () => Promise<void>): Promise<Timing> {
  for (let i = 0; i < 3; i++) await once();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await once();
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return summarize(times);
}

const nativeHook = (module: WebAssembly.Module): Hook => (imports, receive) => {
  const instance = new WebAssembly.Instance(module, imports);
  receive(instance, module);
  return instance.exports;
};

export async function coldStart(runs: number): Promise<ColdStartRow[]> {
  const engine = new Engine();
  const rows: ColdStartRow[] = [];

  const sqlModule = new WebAssembly.Module(SQL_WASM);
  const sqlPrepared = engine.prepare(SQL_WASM);
  const sqlOnce = async (hook: Hook, done: () => void) => {
    const SQL = await freshInitSqlJs()({ instantiateWasm: hook });
    const db = new SQL.Database();
    db.exec('SELECT 1 + 1');
    db.close();
    done();
  };
  rows.push({
    module: 'sql.js: init + open + query',
    native: await time(runs, () => sqlOnce(nativeHook(sqlModule), () => {})),
    engine: await time(runs, () => {
      const a = emscriptenAdapter(sqlPrepared);
      return sqlOnce(a.instantiateWasm, () => a.release());
    }),
  });

  const qjsModule = new WebAssembly.Module(QUICKJS_WASM);
  const qjsPrepared = engine.prepare(QUICKJS_WASM);
  const qjsOnce = async (hook: Hook, done: () => void) => {
    const variant = newVariant(releaseSyncVariant, { emscriptenModule: { instantiateWasm: hook } as never });
    const mod = await newQuickJSWASMModuleFromVariant(variant);
    const vm = mod.newContext();
    vm.unwrapResult(vm.evalCode('1 + 1')).dispose();
    vm.dispose();
    done();
  };
  rows.push({
    module: 'QuickJS: init + context + eval',
    native: await time(runs, () => qjsOnce(nativeHook(qjsModule), () => {})),
    engine: await time(runs, () => {
      const a = emscriptenAdapter(qjsPrepared);
      return qjsOnce(a.instantiateWasm, () => a.release());
    }),
  });
  engine.close();
  return rows;
}
