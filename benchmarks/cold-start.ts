/**
 * Cold start of Emscripten modules: from a fresh Emscripten module instance
 * to the first result (sql.js: open a database and run a query; QuickJS:
 * create a context and evaluate an expression), native against wasm-cow.
 * Both sides start from a compiled module and a fresh copy of the glue,
 * after a turn of the event loop (as a server between two requests).
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

/**
 * Native and wasm-cow side by side: each run does one of each, in
 * alternating order, so that the machine's drift and the heap's growth (GC
 * of the earlier runs' instances and memories) fall on both alike. (Timing
 * all native runs first, then all engine runs, let any drift fall on one
 * side only; the same code measured 0.97-1.27x of native across runs.)
 */
async function timePair(runs: number, native: () => Promise<void>, engine: () => Promise<void>): Promise<{ native: Timing; engine: Timing }> {
  for (let i = 0; i < 3; i++) {
    await native();
    await engine();
  }
  const times = { native: [] as number[], engine: [] as number[] };
  const one = async (side: 'native' | 'engine') => {
    // A turn of the event loop before each run, as between two requests of
    // a server: what a program does in its idle time (V8's collection of
    // earlier runs, the engine's spare memories) is not in the run's time.
    await new Promise<void>((r) => setImmediate(r));
    const t0 = process.hrtime.bigint();
    await (side === 'native' ? native : engine)();
    times[side].push(Number(process.hrtime.bigint() - t0) / 1000);
  };
  for (let i = 0; i < runs; i++) {
    const [a, b] = i % 2 === 0 ? (['native', 'engine'] as const) : (['engine', 'native'] as const);
    await one(a);
    await one(b);
  }
  return { native: summarize(times.native), engine: summarize(times.engine) };
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
    ...(await timePair(
      runs,
      () => sqlOnce(nativeHook(sqlModule), () => {}),
      () => {
        const a = emscriptenAdapter(sqlPrepared);
        return sqlOnce(a.instantiateWasm, () => a.release());
      },
    )),
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
    ...(await timePair(
      runs,
      () => qjsOnce(nativeHook(qjsModule), () => {}),
      () => {
        const a = emscriptenAdapter(qjsPrepared);
        return qjsOnce(a.instantiateWasm, () => a.release());
      },
    )),
  });
  engine.close();
  return rows;
}
