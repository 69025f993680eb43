import test from 'node:test';
import assert from 'node:assert/strict';
import { parseModule } from '../src/binary/reader.js';
import { rewriteModule } from '../src/binary/rewriter.js';
import { INTERNAL_START, internalExports, internalGlobalName, internalTableName, isInternalName, readInternalState } from '../src/reuse/internal.js';
import { readModuleInfo } from '../src/reuse/module-info.js';
import { I32, I64, sleb, uleb } from './helpers/wasm.js';
import { buildRaw, EXTERNREF, F64, FUNCREF, type RawModule } from './helpers/raw-wasm.js';

const i32c = (v: number): number[] => [0x41, ...sleb(v)];

/** Imports a mutable global and a table; defines globals of several types, two tables, a start function. */
function module(withExports: boolean): RawModule {
  return {
    types: [{ params: [], results: [] }, { params: [], results: [I32] }],
    imports: [
      { module: 'env', name: 'g', desc: [0x03, I32, 1] },
      { module: 'env', name: 't', desc: [0x01, FUNCREF, 0x00, 1] },
    ],
    funcs: [
      // start: g1 = 42, table 1 [0] = ref.func 1
      { type: 0, body: [...i32c(42), 0x24, 1, ...i32c(0), 0xd2, 1, 0x26, 1] },
      { type: 1, body: [0x23, 1] },
    ],
    tables: [
      [FUNCREF, 0x00, 2],
      [EXTERNREF, 0x00, 3],
    ],
    globals: [
      { type: [I32], mutable: true, init: i32c(7) }, // 1
      { type: [I32], mutable: false, init: i32c(8) }, // 2
      { type: [I64], mutable: true, init: [0x42, ...sleb(-5)] }, // 3
      { type: [F64], mutable: true, init: [0x44, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f] }, // 4: 1.5
      { type: [FUNCREF], mutable: true, init: [0xd2, 1] }, // 5
    ],
    exports: withExports ? [{ name: 'get', kind: 0, index: 1 }] : undefined,
    start: 0,
    elems: [[0x03, 0x00, ...uleb(1), 1]], // declarative: ref.func 1
  };
}

function rewrite(bytes: Uint8Array, dropStart: boolean) {
  const parsed = parseModule(bytes);
  const info = readModuleInfo(bytes, parsed)!;
  const extraExports = internalExports(parsed, info, dropStart);
  return rewriteModule(bytes, parsed, { importMemories: false, convert: new Set(), extraExports, dropStart }).bytes;
}

const imports = () => ({
  env: { g: new WebAssembly.Global({ value: 'i32', mutable: true }, 1), t: new WebAssembly.Table({ element: 'anyfunc', initial: 1 }) },
});

for (const withExports of [true, false]) {
  test(`private exports for mutable globals, tables and the start function (${withExports ? 'with' : 'without'} an export section)`, () => {
    const bytes = buildRaw(module(withExports));
    assert.ok(WebAssembly.validate(bytes));
    const info = readModuleInfo(bytes, parseModule(bytes))!;
    assert.equal(info.importedGlobals, 1);
    assert.equal(info.importedTables, 1);
    assert.deepEqual(info.globals.map((g) => g.mutable), [true, false, true, true, true]);
    assert.deepEqual(info.elems.map((e) => ({ mode: e.mode, table: e.table })), [{ mode: 'declarative', table: 0 }]);

    const out = rewrite(bytes, true);
    assert.ok(WebAssembly.validate(out));
    const names = WebAssembly.Module.exports(new WebAssembly.Module(out)).map((e) => e.name);
    const expected = [internalGlobalName(1), internalGlobalName(3), internalGlobalName(4), internalGlobalName(5), internalTableName(1), internalTableName(2), INTERNAL_START];
    assert.deepEqual(names, [...(withExports ? ['get'] : []), ...expected]);
    assert.ok(expected.every(isInternalName));
    assert.equal(parseModule(out).start, null, 'the start section is dropped');

    // Instantiated: the start function has not run; the private exports read the state by index.
    const instance = new WebAssembly.Instance(new WebAssembly.Module(out), imports());
    const state = readInternalState(instance);
    assert.deepEqual([...state.globals.keys()], [1, 3, 4, 5]);
    assert.deepEqual([...state.tables.keys()], [1, 2]);
    assert.equal(state.globals.get(1)!.value, 7);
    assert.equal(state.globals.get(3)!.value, -5n);
    assert.equal(state.globals.get(4)!.value, 1.5);
    assert.equal(typeof state.globals.get(5)!.value, 'function');
    assert.equal(state.tables.get(1)!.get(0), null);
    state.start!();
    assert.equal(state.globals.get(1)!.value, 42);
    assert.equal(state.tables.get(1)!.get(0), state.globals.get(5)!.value, 'ref.func 1 is the same function object');

    // Kept start: the instance ran it, as natively.
    const kept = rewrite(bytes, false);
    assert.equal(parseModule(kept).start, 0);
    const k = readInternalState(new WebAssembly.Instance(new WebAssembly.Module(kept), imports()));
    assert.equal(k.start, null);
    assert.equal(k.globals.get(1)!.value, 42);
  });
}

test('the rewrite with private exports behaves as the original', () => {
  const bytes = buildRaw(module(true));
  const native = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports());
  const ours = new WebAssembly.Instance(new WebAssembly.Module(rewrite(bytes, false)), imports());
  assert.equal((ours.exports['get'] as () => number)(), (native.exports['get'] as () => number)());
  assert.deepEqual(WebAssembly.Module.imports(new WebAssembly.Module(rewrite(bytes, true))), WebAssembly.Module.imports(new WebAssembly.Module(bytes)));
});
