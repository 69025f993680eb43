import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseModule } from '../src/binary/reader.js';
import { scanCode, type CodeScan, type CodeFacts } from '../src/binary/code-scan.js';
import { I32, I64, sleb, uleb } from './helpers/wasm.js';
import { buildRaw, F32, FUNCREF, type RawModule } from './helpers/raw-wasm.js';

const scan = (bytes: Uint8Array): CodeScan => scanCode(bytes, parseModule(bytes));
const known = (s: CodeScan): CodeFacts => {
  if (s.kind !== 'known') assert.fail(`expected known, got: ${s.reason} at ${s.offset}`);
  return s;
};
const sorted = (s: ReadonlySet<number>): number[] => [...s].sort((a, b) => a - b);

const i32c = (v: number): number[] => [0x41, ...sleb(v)];
const fc = (sub: number, ...imm: number[]): number[] => [0xfc, ...uleb(sub), ...imm.flatMap((x) => uleb(x))];
const fd = (sub: number): number[] => [0xfd, ...uleb(sub)];
const v128 = (b = 0): number[] => [...fd(12), ...new Array<number>(16).fill(b)];

/** A module whose one body uses every prefix and every immediate shape V8 20 validates. */
function everything(): RawModule {
  const body = [
    // block with a type index (multi-value), loop, if/else with a value type
    ...i32c(1), ...i32c(2), 0x02, ...sleb(2), 0x0b, 0x1a, 0x1a,
    0x03, 0x40, 0x0b,
    ...i32c(0), 0x04, I32, ...i32c(1), 0x05, ...i32c(2), 0x0b, 0x1a,
    // legacy exceptions: try / throw / catch / catch_all
    0x06, 0x40, 0x08, 0, 0x07, 0, 0x19, 0x0b,
    // br_table inside a block, br, br_if
    0x02, 0x40, ...i32c(0), 0x0e, 1, 0, 0, 0x0b,
    0x02, 0x40, 0x0c, 0, 0x0b,
    0x02, 0x40, ...i32c(0), 0x0d, 0, 0x0b,
    // numeric with every constant kind
    0x42, ...sleb(-1234567890123n), 0x42, ...sleb(5), 0x7c, 0x1a,
    0x43, 0, 0, 0x80, 0x3f, 0x1a,
    0x44, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x1a,
    ...i32c(1), 0xc0, 0x1a, // i32.extend8_s
    // saturating truncation
    0x43, 0, 0, 0, 0, ...fc(0), 0x1a,
    0x44, 0, 0, 0, 0, 0, 0, 0, 0, ...fc(7), 0x1a,
    // select, typed select
    ...i32c(1), ...i32c(2), ...i32c(0), 0x1b, 0x1a,
    ...i32c(1), ...i32c(2), ...i32c(0), 0x1c, 1, I32, 0x1a,
    // loads and stores with memargs, memory.size / grow
    ...i32c(0), 0x28, 2, 0, 0x1a,
    ...i32c(0), 0x42, 7, 0x37, 3, ...uleb(100000),
    0x3f, 0, 0x1a,
    ...i32c(0), 0x40, 0, 0x1a,
    // bulk memory
    ...i32c(0), ...i32c(0), ...i32c(0), ...fc(8, 0, 0),
    ...fc(9, 0),
    ...i32c(0), ...i32c(0), ...i32c(0), ...fc(10, 0, 0),
    ...i32c(0), ...i32c(0), ...i32c(0), ...fc(11, 0),
    // tables: table.init into 1, elem.drop 0, table.copy 1 <- 0, grow 1, size 0, fill 1, set 1, get 0
    ...i32c(0), ...i32c(0), ...i32c(0), ...fc(12, 0, 1),
    ...fc(13, 0),
    ...i32c(0), ...i32c(0), ...i32c(0), ...fc(14, 1, 0),
    0xd0, FUNCREF, ...i32c(1), ...fc(15, 1), 0x1a,
    ...fc(16, 0), 0x1a,
    ...i32c(0), 0xd2, 0, ...i32c(0), ...fc(17, 1),
    ...i32c(0), 0xd0, FUNCREF, 0x26, 1,
    ...i32c(0), 0x25, 0, 0xd1, 0x1a,
    // calls
    ...i32c(0), 0x11, 0, 0,
    ...i32c(3), 0x10, 1, 0x1a,
    // globals
    0x23, 1, 0x1a,
    ...i32c(5), 0x24, 0,
    // SIMD: v128.const, shuffle, extract lane, load lane, load, arithmetic (two-byte LEB sub-opcode), load32_zero
    ...v128(1), ...v128(2), ...fd(13), ...new Array<number>(16).fill(3), ...fd(27), 0, 0x1a,
    ...i32c(0), ...v128(), ...fd(84), 0, 0, 0, 0x1a,
    ...i32c(0), ...fd(0), 4, 0, 0x1a,
    ...v128(), ...v128(), ...fd(174), 0x1a,
    ...i32c(0), ...fd(92), 2, 8, 0x1a,
    ...v128(), ...fd(0xff), 0x1a,
    // tail call
    0x12, 0,
  ];
  return {
    types: [
      { params: [], results: [] },
      { params: [I32], results: [I32] },
      { params: [I32, I32], results: [I32, I32] },
    ],
    funcs: [
      { type: 0, body },
      { type: 1, body: [0x20, 0] },
    ],
    tables: [
      [FUNCREF, 0x00, 2],
      [FUNCREF, 0x01, 2, 10],
    ],
    memories: [[0x00, 1]],
    tags: [0],
    globals: [
      { type: [I32], mutable: true, init: i32c(0) },
      { type: [I32], mutable: false, init: i32c(7) },
    ],
    elems: [
      [0x01, 0x00, ...uleb(1), 0], // passive, funcs [0]
      [0x00, ...i32c(0), 0x0b, ...uleb(2), 0, 1], // active table 0
    ],
    dataCount: 1,
    data: [[0x01, 3, 1, 2, 3]],
  };
}

test('every instruction of a module using every prefix is decoded, and the facts are exact', () => {
  const bytes = buildRaw(everything());
  assert.ok(WebAssembly.validate(bytes), 'V8 validates the test module');
  const f = known(scan(bytes));
  assert.equal(f.functions, 2);
  assert.deepEqual(sorted(f.mutatedTables), [1]);
  assert.deepEqual(sorted(f.grownTables), [1]);
  assert.deepEqual(sorted(f.droppedData), [0]);
  assert.deepEqual(sorted(f.droppedElems), [0]);
  assert.deepEqual(sorted(f.initData), [0]);
  assert.deepEqual(sorted(f.initElems), [0]);
  assert.deepEqual(sorted(f.grownMemories), [0]);
  assert.deepEqual(sorted(f.globalSets), [0]);
});

test('a module with no mutation reports empty sets', () => {
  const bytes = buildRaw({ types: [{ params: [I32], results: [I32] }], funcs: [{ type: 0, body: [0x20, 0, 0x20, 0, 0x6a] }] });
  const f = known(scan(bytes));
  assert.equal(f.functions, 1);
  for (const s of [f.mutatedTables, f.grownTables, f.droppedData, f.droppedElems, f.initData, f.initElems, f.grownMemories, f.globalSets]) {
    assert.equal(s.size, 0);
  }
  assert.equal(known(scan(buildRaw({}))).functions, 0);
});

/** One body, not validated by V8 (proposals Node 20 does not ship, or shared memory): the scanner only. */
function scanBody(body: number[], locals: [number, number][] = []): CodeScan {
  return scan(buildRaw({ types: [{ params: [], results: [] }], funcs: [{ type: 0, locals, body }] }));
}

test('threads, try_table, typed function references and relaxed SIMD are decoded', () => {
  const atomics = [
    ...i32c(0), ...i32c(0), 0xfe, 0x00, 2, 0, 0x1a, // memory.atomic.notify
    0xfe, 0x03, 0x00, // atomic.fence
    ...i32c(0), 0xfe, 0x10, 2, 4, 0x1a, // i32.atomic.load
    ...i32c(0), 0x42, 0, 0x42, 0, 0xfe, 0x4e, 3, 0, 0x1a, // i64.atomic.rmw32.cmpxchg_u
  ];
  assert.equal(known(scanBody(atomics)).functions, 1);
  const tryTable = [0x1f, 0x40, 4, 0, 0, 0, 1, 0, 0, 2, 0, 3, 0, 0x0b, 0x0a];
  assert.equal(scanBody(tryTable).kind, 'known');
  const typed = [0xd2, 0, 0x14, 0, 0xd2, 0, 0x15, 0, 0x02, 0x40, 0xd0, 0x70, 0xd4, 0, 0xd6, 0, 0x1a, 0x0b, 0xd3, 0xd5, 0x13, 0, 0];
  assert.equal(scanBody(typed).kind, 'known');
  assert.equal(scanBody([...v128(), ...v128(), ...v128(), ...fd(0x105), 0x1a, ...fd(0x113)]).kind, 'known');
  assert.equal(scanBody([], [[1, I64], [2, F32]]).kind, 'known');
});

test('an opcode the scanner does not know makes the result unknown, with where', () => {
  const cases: [number[], RegExp][] = [
    [[0xfb, 0x00, 0, 0x1a], /unknown opcode 0xfb/],
    [[...fc(18, 0)], /unknown opcode 0xfc 18/],
    [[...v128(), ...fd(0x9a), 0x1a], /unknown opcode 0xfd 154/],
    [[...fd(0x114)], /unknown opcode 0xfd 276/],
    [[0xfe, 0x04], /unknown opcode 0xfe 4/],
    [[0x27], /unknown opcode 0x27/],
    [[0xd7], /unknown opcode 0xd7/],
    [[0x02, 0x40], /unexpected end|after the function/],
    [[0x1f, 0x40, 1, 9, 0, 0x0b], /try_table catch kind 9/],
    [[0x02, 0x50, 0x0b], /block type/],
  ];
  for (const [body, re] of cases) {
    const s = scanBody(body);
    assert.equal(s.kind, 'unknown', `body ${body.join(',')}`);
    if (s.kind === 'unknown') {
      assert.match(s.reason, re);
      assert.ok(s.offset > 8);
    }
  }
});

test('a truncated or overlong code section is unknown, never a guess', () => {
  const bytes = buildRaw({ types: [{ params: [], results: [] }], funcs: [{ type: 0, body: [...i32c(1), 0x1a] }] });
  // Make the body claim a byte past the code section (the last section).
  const p = parseModule(bytes);
  const code = p.sections.find((s) => s.id === 10)!;
  const copy = bytes.slice();
  copy[code.contentStart + 1]! += 1; // the body size
  assert.equal(scanCode(copy, p).kind, 'unknown');
  // An instruction after the body's final end.
  const extra = buildRaw({ types: [{ params: [], results: [] }], funcs: [{ type: 0, body: [0x0b, 0x01] }] });
  assert.match((scan(extra) as { reason: string }).reason, /after the function/);
});

test('a real module is read to the end: sql.js', () => {
  const require = createRequire(import.meta.url);
  const sql = readFileSync(require.resolve('sql.js/dist/sql-wasm.wasm'));
  const f = known(scan(sql));
  assert.ok(f.functions > 1000);
  assert.equal(f.droppedElems.size, 0);
  assert.equal(f.mutatedTables.size, 0, 'sql.js code never changes its table');
});
