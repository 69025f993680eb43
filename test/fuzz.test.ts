/**
 * Hostile input, differential: mutated modules (bit flips, truncation,
 * overlong LEB128, huge counts and lengths, segments at 0xFFFFFFFF,
 * min > max, 65536-page memories, 100,000 segments, duplicate import
 * names). For each input: if V8 rejects it, engine.prepare throws a
 * CompileError (WasmFormatError is one); if V8 accepts it, the engine's
 * instance behaves the same: same exports, same instantiation error, same
 * memory contents. Never a crash, a hang or an unbounded allocation.
 *
 * WASM_COW_FUZZ_INPUTS (default 20,000) and WASM_COW_SEED set the run.
 * A failing input is written to out/fuzz-failures/; commit it to
 * test/fixtures/fuzz-regressions/, which runs first on every run.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/index.js';
import { stubImports } from '../src/bench/compare.js';
import { concat } from '../src/binary/writer.js';
import { BACKENDS, digest } from './helpers/env.js';
import { buildModule, dropFunc, I32, initFunc, pseudoRandomBytes, rng, stdFuncs, uleb, type ModuleSpec } from './helpers/wasm.js';

const INPUTS = Number(process.env['WASM_COW_FUZZ_INPUTS'] ?? 20_000);
const SEED = Number(process.env['WASM_COW_SEED'] ?? 424242);
const regressions = fileURLToPath(new URL('../../test/fixtures/fuzz-regressions/', import.meta.url));
const failures = fileURLToPath(new URL('../fuzz-failures/', import.meta.url));

const corpusSpecs: ModuleSpec[] = [
  { memories: [{ min: 1, max: 2, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 10, bytes: [1, 2, 3, 4] }, { offset: 5000, bytes: pseudoRandomBytes(100, 1) }] },
  {
    importFuncs: [{ module: 'env', name: 'f', params: [I32] }],
    importGlobals: [{ module: 'env', name: 'g' }],
    memories: [{ min: 2, export: 'memory' }],
    funcs: [...stdFuncs, initFunc(1), dropFunc(1)],
    dataCount: true,
    data: [{ offset: { global: 0 }, bytes: [9, 9] }, { passive: true, bytes: [7, 7, 7] }, { offset: 70000, bytes: [5] }],
  },
  { importMemory: { module: 'env', name: 'm', min: 1, max: 3 }, funcs: stdFuncs, data: [{ offset: 0, bytes: [1] }] },
  { funcs: [{ export: 'f', results: [I32], body: [0x41, 42] }] },
  {
    memories: [{ min: 1, export: 'mem' }],
    funcs: [{ body: [0x41, 0, 0x41, 1, 0x3a, 0, 0] }, ...stdFuncs],
    start: 0,
    data: [{ offset: 65530, bytes: [1, 2, 3, 4, 5, 6] }],
  },
];

/** Inputs built to be hostile, not mutated: also kept as regression fixtures. */
function hostileInputs(): Uint8Array<ArrayBuffer>[] {
  const out: Uint8Array<ArrayBuffer>[] = [];
  out.push(buildModule({ memories: [{ min: 1, export: 'mem' }], funcs: stdFuncs, data: [{ offset: -1, bytes: [1] }] }));
  out.push(buildModule({ memories: [{ min: 1, export: 'mem' }], data: [{ offset: -1, bytes: [] }] }));
  out.push(buildModule({ memories: [{ min: 3, max: 2 }] }));
  out.push(buildModule({ memories: [{ min: 65536, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 0xffff_0000 | 0, bytes: [1, 2] }] }));
  out.push(buildModule({ memories: [{ min: 65537 }] }));
  out.push(
    buildModule({
      memories: [{ min: 2, export: 'mem' }],
      funcs: stdFuncs,
      data: Array.from({ length: 100_000 }, (_, i) => ({ offset: (i * 13) % 131000, bytes: [i & 0xff, 1] })),
    }),
  );
  out.push(
    buildModule({
      importFuncs: [
        { module: 'env', name: 'f' },
        { module: 'env', name: 'f' },
        { module: 'wasm-cow:memory', name: '0' },
      ],
      memories: [{ min: 1, export: 'mem' }],
      data: [{ offset: 0, bytes: [1] }],
    }),
  );
  // Data section claiming 0xFFFFFFFF segments; a segment length of 0xFFFFFFFF.
  out.push(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1, 11, 5, ...uleb(0xffffffff)]));
  out.push(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1, 11, 10, 1, 0, 0x41, 0, 0x0b, ...uleb(0xffffffff)]));
  // Overlong LEB128 section size and memory limits.
  out.push(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 0x83, 0x80, 0x80, 0x80, 0x00, 1, 0, 1]));
  out.push(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 7, 1, 0, 0x81, 0x80, 0x80, 0x80, 0x00]));
  // A custom section with a huge name length.
  out.push(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0, 6, ...uleb(0xfffffff0)]));
  // Duplicate export names.
  out.push(buildModule({ memories: [{ min: 1, export: 'x' }], funcs: [{ export: 'x', body: [] }] }));
  return out;
}

function mutate(seed: Uint8Array, random: () => number): Uint8Array<ArrayBuffer> {
  const int = (n: number) => Math.floor(random() * n);
  const b = Uint8Array.from(seed);
  switch (int(6)) {
    case 0: {
      const flips = 1 + int(8);
      for (let i = 0; i < flips; i++) b[8 + int(b.length - 8)]! ^= 1 << int(8);
      return b;
    }
    case 1:
      return b.slice(0, int(b.length + 1));
    case 2: {
      // Overlong LEB128: a byte becomes a continued, zero-extended encoding.
      const at = 8 + int(b.length - 8);
      const v = b[at]! & 0x7f;
      return concat([b.subarray(0, at), [v | 0x80, 0x80, 0x80, 0x00], b.subarray(at + 1)]);
    }
    case 3: {
      // A huge count or length.
      const at = 8 + int(b.length - 8);
      return concat([b.subarray(0, at), uleb([0xffffffff, 0x7fffffff, 0x10000, 0xfffffff0][int(4)]!), b.subarray(at + 1)]);
    }
    case 4: {
      // Random bytes spliced in.
      const at = 8 + int(b.length - 8);
      return concat([b.subarray(0, at), pseudoRandomBytes(1 + int(16), int(1 << 30) + 1), b.subarray(at)]);
    }
    default: {
      // A byte set to a boundary value.
      b[8 + int(b.length - 8)] = [0, 0x7f, 0x80, 0xff, 0x40, 0x0b][int(6)]!;
      return b;
    }
  }
}

const outcome = (e: unknown) => (e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e));

/** What an instance shows: its exports and the contents of its memories. */
function observe(instance: WebAssembly.Instance): string {
  const parts: string[] = [];
  for (const [name, v] of Object.entries(instance.exports)) {
    if (v instanceof WebAssembly.Memory) {
      const len = v.buffer.byteLength;
      parts.push(`${name}:memory:${len}:${len <= 16 * 1024 * 1024 ? digest(v) : 'large'}`);
    } else parts.push(`${name}:${typeof v}`);
  }
  return parts.join(' ');
}

/** Checks one input; returns a description of the mismatch, or null. */
function check(engine: Engine, bytes: Uint8Array<ArrayBuffer>): string | null {
  let nativeModule: WebAssembly.Module;
  try {
    nativeModule = new WebAssembly.Module(bytes);
  } catch (e) {
    try {
      engine.prepare(bytes);
      return `V8 rejects (${outcome(e)}) but prepare accepted`;
    } catch (e2) {
      return e2 instanceof WebAssembly.CompileError ? null : `prepare threw ${outcome(e2)}, not a CompileError`;
    }
  }
  let prepared;
  try {
    prepared = engine.prepare(bytes);
  } catch (e) {
    return `V8 accepts but prepare threw ${outcome(e)}`;
  }
  const imports = stubImports(bytes, nativeModule);
  let native: string;
  try {
    native = `ok ${observe(new WebAssembly.Instance(nativeModule, imports))}`;
  } catch (e) {
    native = outcome(e);
  }
  let ours: string;
  const imports2 = stubImports(bytes, nativeModule);
  try {
    const lease = prepared.instantiate(imports2);
    ours = `ok ${observe(lease.instance)}`;
    lease.release();
  } catch (e) {
    ours = outcome(e);
  }
  prepared.dispose();
  return native === ours ? null : `native: ${native}\n   engine: ${ours}`;
}

for (const backend of BACKENDS) {
  const inputs = backend === 'native' ? INPUTS : Math.ceil(INPUTS / 4);
  test(`fuzz: regression fixtures and hostile inputs (${backend})`, () => {
    const engine = new Engine({ backend, maxInstances: 10 });
    const fixtures = readdirSync(regressions).filter((f) => f.endsWith('.wasm'));
    for (const f of fixtures) {
      const r = check(engine, new Uint8Array(readFileSync(regressions + f)));
      assert.equal(r, null, `${f}: ${r}`);
    }
    for (const [i, bytes] of hostileInputs().entries()) {
      const r = check(engine, bytes);
      assert.equal(r, null, `hostile input ${i}: ${r}`);
    }
    assert.ok(fixtures.length >= 5, 'regression fixtures are present');
    engine.close();
  });

  test(`fuzz: ${inputs} seeded mutated inputs behave as native (${backend}, seed ${SEED})`, () => {
    const random = rng(SEED + (backend === 'native' ? 0 : 1));
    const corpus = corpusSpecs.map(buildModule);
    const engine = new Engine({ backend, maxInstances: 10 });
    let rejected = 0;
    for (let i = 0; i < inputs; i++) {
      const input = mutate(corpus[Math.floor(random() * corpus.length)]!, random);
      const r = check(engine, input);
      if (r !== null) {
        mkdirSync(failures, { recursive: true });
        const file = `${failures}seed${SEED}-${backend}-${i}.wasm`;
        writeFileSync(file, input);
        assert.fail(`input ${i} (saved to ${file}; commit it to test/fixtures/fuzz-regressions/):\n   ${r}`);
      }
      try {
        new WebAssembly.Module(input);
      } catch {
        rejected++;
      }
    }
    assert.equal(engine.stats().liveLeases, 0);
    console.log(`${backend}: ${inputs} inputs, ${rejected} rejected by V8, ${inputs - rejected} accepted and compared`);
    assert.ok(rejected > inputs / 10 && rejected < inputs, 'the mutations produce both valid and invalid modules');
    engine.close();
  });
}

/** Writes the hostile inputs as fixtures (run once by hand: node out/test/fuzz.test.js --write-fixtures). */
if (process.argv.includes('--write-fixtures')) {
  hostileInputs().forEach((b, i) => writeFileSync(`${regressions}hostile-${String(i).padStart(2, '0')}.wasm`, b));
}
