import test from 'node:test';
import assert from 'node:assert/strict';
import { parseModule } from '../src/binary/reader.js';
import { privateModuleName, rewriteModule } from '../src/binary/rewriter.js';
import { Engine } from '../src/index.js';
import { BACKENDS, fns } from './helpers/env.js';
import { buildModule, dropFunc, I32, initFunc, stdFuncs, type ModuleSpec } from './helpers/wasm.js';

function rewrite(spec: ModuleSpec, convertAll = true) {
  const bytes = buildModule(spec);
  const parsed = parseModule(bytes);
  const convert = new Set(convertAll ? parsed.data.filter((d) => d.mode === 'active').map((d) => d.index) : []);
  return { bytes, parsed, out: rewriteModule(bytes, parsed, { importMemories: true, convert }) };
}

test('output validates; memories become trailing imports; exports unchanged', () => {
  const spec: ModuleSpec = {
    importFuncs: [{ module: 'env', name: 'log', params: [I32] }],
    importGlobals: [{ module: 'env', name: 'g' }],
    memories: [{ min: 1, max: 2, export: 'mem' }],
    funcs: stdFuncs,
    data: [{ offset: 8, bytes: [1, 2, 3] }],
    custom: [{ name: 'meta', bytes: [42] }],
  };
  const { bytes, out } = rewrite(spec);
  assert.ok(WebAssembly.validate(out.bytes));
  const original = new WebAssembly.Module(bytes);
  const rewritten = new WebAssembly.Module(out.bytes);
  assert.deepEqual(WebAssembly.Module.exports(rewritten), WebAssembly.Module.exports(original));
  assert.deepEqual(WebAssembly.Module.imports(rewritten), [
    ...WebAssembly.Module.imports(original),
    { module: 'wasm-cow:memory', name: '0', kind: 'memory' },
  ]);
  assert.deepEqual(
    WebAssembly.Module.customSections(rewritten, 'meta').map((b) => [...new Uint8Array(b)]),
    [[42]],
  );
  // The converted segment is empty and passive; the data section shrank.
  const p = parseModule(out.bytes);
  assert.equal(p.data[0]!.mode, 'passive');
  assert.equal(p.data[0]!.dataEnd - p.data[0]!.dataStart, 0);
  assert.equal(p.memories.length, 0);
  assert.equal(p.imports.at(-1)!.memory!.max, 2);
});

test('a module with no import section gets one in the right place', () => {
  const { out } = rewrite({ memories: [{ min: 1 }], funcs: stdFuncs, data: [{ offset: 0, bytes: [1] }] });
  assert.ok(WebAssembly.validate(out.bytes));
  const ids = parseModule(out.bytes).sections.map((s) => s.id);
  assert.deepEqual(ids.slice(0, 3), [1, 2, 3]);
});

test('the private module name never collides with the module’s own imports', () => {
  const spec: ModuleSpec = {
    importFuncs: [
      { module: 'wasm-cow:memory', name: '0' },
      { module: 'wasm-cow:memory#1', name: 'x' },
    ],
    memories: [{ min: 1 }],
  };
  const parsed = parseModule(buildModule(spec));
  assert.equal(privateModuleName(parsed), 'wasm-cow:memory#2');
  const { out } = rewrite(spec);
  assert.equal(out.memoryModule, 'wasm-cow:memory#2');
});

test('data count stays consistent; unconverted segments are copied verbatim', () => {
  const { bytes, out } = rewrite(
    {
      memories: [{ min: 1 }],
      dataCount: true,
      funcs: [initFunc(0), initFunc(1)],
      data: [
        { offset: 0, bytes: [1, 2] },
        { passive: true, bytes: [7, 8, 9] },
      ],
    },
    true,
  );
  assert.ok(WebAssembly.validate(out.bytes));
  const a = parseModule(bytes);
  const b = parseModule(out.bytes);
  assert.equal(b.dataCount, 2);
  assert.equal(b.data.length, 2);
  assert.deepEqual(
    [...out.bytes.subarray(b.data[1]!.dataStart, b.data[1]!.dataEnd)],
    [...bytes.subarray(a.data[1]!.dataStart, a.data[1]!.dataEnd)],
  );
});

for (const backend of BACKENDS) {
  test(`memory.init / data.drop on a converted segment behave as on a dropped active one (${backend})`, () => {
    const bytes = buildModule({
      memories: [{ min: 1, export: 'mem' }],
      dataCount: true,
      funcs: [...stdFuncs, initFunc(0), initFunc(1), dropFunc(0), dropFunc(1)],
      data: [
        { offset: 16, bytes: [1, 2, 3, 4] },
        { passive: true, bytes: [7, 8, 9] },
      ],
    });
    const engine = new Engine({ backend });
    const prepared = engine.prepare(bytes);
    assert.equal(prepared.memories[0]!.excluded, null);
    const calls: [string, number[]][] = [
      ['init0', [0, 0, 0]], // n = 0 at dest 0: fine on a dropped segment
      ['init0', [65536, 0, 0]], // dest == size: fine
      ['init0', [65537, 0, 0]], // dest > size: traps
      ['init0', [0, 0, 1]], // n > 0: traps (dropped)
      ['init0', [0, 1, 0]], // src > 0: traps (dropped)
      ['drop0', []],
      ['init1', [100, 0, 3]],
      ['init1', [100, 1, 3]], // out of the segment: traps
      ['drop1', []],
      ['init1', [100, 0, 1]], // dropped now: traps
      ['load8', [16]],
      ['load8', [101]],
    ];
    const run = (exports: WebAssembly.Exports) =>
      calls.map(([f, args]) => {
        try {
          return fns(exports)[f]!(...args);
        } catch (e) {
          return `${(e as Error).constructor.name}: ${(e as Error).message}`;
        }
      });
    const native = run(new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports);
    const lease = prepared.instantiate();
    assert.deepEqual(run(lease.exports), native);
    assert.equal(native[3], 'RuntimeError: memory access out of bounds');
    lease.release();
    engine.close();
  });

  test(`index spaces: imported functions and globals, start function sees the data (${backend})`, () => {
    const seen: number[] = [];
    const bytes = buildModule({
      importFuncs: [{ module: 'env', name: 'log', params: [I32] }],
      importGlobals: [{ module: 'env', name: 'g' }],
      memories: [{ min: 1 }],
      funcs: [
        // start: log(load8(32) + global 0)
        { body: [0x41, 32, 0x2d, 0x00, 0x00, 0x23, 0x00, 0x6a, 0x10, 0x00] },
        { export: 'get', results: [I32], body: [0x41, 33, 0x2d, 0x00, 0x00] },
      ],
      start: 1,
      data: [{ offset: 32, bytes: [40, 2] }],
    });
    const imports = { env: { log: (v: number) => seen.push(v), g: 2 } };
    new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
    const engine = new Engine({ backend });
    const lease = engine.prepare(bytes).instantiate(imports);
    assert.deepEqual(seen, [42, 42]);
    assert.equal(fns(lease.exports).get!(), 2);
    lease.release();
    engine.close();
  });
}
