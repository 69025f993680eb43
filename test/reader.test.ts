import test from 'node:test';
import assert from 'node:assert/strict';
import { parseModule } from '../src/binary/reader.js';
import { WasmFormatError } from '../src/index.js';
import { buildModule, stdFuncs, I32, uleb } from './helpers/wasm.js';

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

function malformed(bytes: number[] | Uint8Array, offset?: number, pattern?: RegExp): void {
  const input = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  assert.throws(
    () => parseModule(input),
    (e: unknown) => {
      assert.ok(e instanceof WasmFormatError, `expected WasmFormatError, got ${String(e)}`);
      assert.ok(e instanceof WebAssembly.CompileError);
      assert.equal(e.code, 'ERR_WASM_COW_FORMAT');
      if (offset !== undefined) assert.equal(e.offset, offset, e.message);
      if (pattern) assert.match(e.message, pattern);
      return true;
    },
  );
}

test('reads imports, memories, exports, start, data count and segments', () => {
  const bytes = buildModule({
    importFuncs: [{ module: 'env', name: 'f', params: [I32] }],
    importGlobals: [{ module: 'env', name: 'base' }],
    memories: [{ min: 2, max: 5, export: 'mem' }],
    funcs: stdFuncs,
    dataCount: true,
    start: 1,
    data: [
      { offset: 16, bytes: [1, 2, 3] },
      { passive: true, bytes: [9] },
      { offset: { global: 0, add: 8 }, bytes: [4] },
      { offset: { expr: [0x41, ...uleb(3), 0x41, 4, 0x6c] }, bytes: [5] },
    ],
  });
  const m = parseModule(bytes);
  assert.deepEqual(
    m.imports.map((i) => [i.module, i.name, i.kind]),
    [
      ['env', 'f', 'function'],
      ['env', 'base', 'global'],
    ],
  );
  assert.equal(m.importedGlobalCount, 1);
  assert.equal(m.memories.length, 1);
  assert.equal(m.memories[0]!.min, 2);
  assert.equal(m.memories[0]!.max, 5);
  assert.equal(m.start, 1);
  assert.equal(m.dataCount, 4);
  assert.deepEqual(
    m.exports.find((e) => e.name === 'mem'),
    { name: 'mem', kind: 'memory', index: 0 },
  );
  const [a, b, c, d] = m.data;
  assert.equal(a!.mode, 'active');
  assert.equal(a!.offset!.constant, 16n);
  assert.deepEqual([...bytes.subarray(a!.dataStart, a!.dataEnd)], [1, 2, 3]);
  assert.equal(b!.mode, 'passive');
  assert.equal(b!.offset, null);
  assert.equal(c!.offset!.global, 0);
  assert.equal(c!.offset!.constant, 8n);
  assert.equal(c!.offset!.dynamic, false);
  assert.equal(d!.offset!.constant, 12n, 'extended-const i32.mul is evaluated');
});

test('offset expressions: wrapping, i64, dynamic forms', () => {
  const mk = (expr: number[]) =>
    parseModule(buildModule({ memories: [{ min: 1 }], data: [{ offset: { expr }, bytes: [1] }] })).data[0]!.offset!;
  assert.equal(mk([0x41, 0x7f]).constant, 0xffff_ffffn, 'i32.const -1 reads as 0xFFFFFFFF');
  assert.equal(mk([0x41, 0x7f]).type, 'i32');
  assert.equal(mk([0x42, 0x05]).type, 'i64');
  assert.equal(mk([0x41, 0x7f, 0x41, 0x02, 0x6a]).constant, 1n, 'i32.add wraps');
  assert.equal(mk([0x23, 0x00, 0x23, 0x01, 0x6a]).dynamic, true, 'global + global is dynamic');
  assert.equal(mk([0x23, 0x00, 0x41, 0x02, 0x6c]).dynamic, true, 'global * k is dynamic');
  assert.equal(mk([0x41, 0x01, 0x41, 0x02]).dynamic, true, 'two values left on the stack');
  assert.equal(mk([0x41, 0x01, 0x42, 0x02, 0x6a]).dynamic, true, 'mixed types');
});

test('bad magic, version and truncated header', () => {
  malformed([0x00, 0x61, 0x73], 0, /shorter/);
  malformed([0x01, 0x61, 0x73, 0x6d, 1, 0, 0, 0], 0, /magic/);
  malformed([0x00, 0x61, 0x73, 0x6d, 2, 0, 0, 0], 4, /version/);
});

test('LEB128: unterminated, overlong and out of range', () => {
  // Section size that never terminates.
  malformed([...HEADER, 0x01, 0x80, 0x80], 9, /unterminated/);
  // u32 with 6 bytes.
  malformed([...HEADER, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 9, /overlong/);
  // u32 whose 5th byte sets bits above 32.
  malformed([...HEADER, 0x01, 0xff, 0xff, 0xff, 0xff, 0x1f], 9, /overlong or out-of-range/);
  // s32 i32.const with an overlong encoding inside a data segment offset.
  const body = [1, 0x00, 0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b, 0x00];
  malformed([...HEADER, 0x05, 0x03, 0x01, 0x00, 0x01, 0x0b, body.length, ...body], undefined, /s32/);
});

test('lengths past the end and absurd counts', () => {
  // Section claims 100 bytes, has 1.
  malformed([...HEADER, 0x01, 100, 0x00], 8, /runs past the end/);
  // Data section with count 0xFFFFFFFF and nothing behind it: fails fast.
  const t0 = Date.now();
  malformed([...HEADER, 0x0b, 0x05, 0xff, 0xff, 0xff, 0xff, 0x0f], 15, /unterminated/);
  assert.ok(Date.now() - t0 < 1000);
  // A name whose length runs past the section.
  malformed([...HEADER, 0x00, 0x02, 0x50, 0x00], undefined, /runs past the end/);
  // A data segment whose bytes run past the section.
  malformed([...HEADER, 0x0b, 0x06, 0x01, 0x01, 0x7f, 0x00, 0x00, 0x00], undefined, /runs past the end/);
});

test('section order, duplicates, unknown ids and size mismatches', () => {
  malformed([...HEADER, 0x05, 0x01, 0x00, 0x05, 0x01, 0x00], 11, /duplicated or out of order/);
  malformed([...HEADER, 0x05, 0x01, 0x00, 0x02, 0x01, 0x00], 11, /duplicated or out of order/);
  malformed([...HEADER, 0x0e, 0x00], 8, /unknown section id 14/);
  malformed([...HEADER, 0x05, 0x02, 0x00, 0x00], undefined, /size mismatch/);
  // Custom sections may appear anywhere.
  assert.doesNotThrow(() => parseModule(new Uint8Array([...HEADER, 0x00, 0x02, 0x01, 0x41, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])));
});

test('invalid UTF-8 names, bad kinds and flags', () => {
  malformed([...HEADER, 0x00, 0x02, 0x01, 0xff], 11, /UTF-8/);
  malformed([...HEADER, 0x02, 0x05, 0x01, 0x00, 0x00, 0x07, 0x00], 13, /unknown import kind 7/);
  malformed([...HEADER, 0x0b, 0x03, 0x01, 0x03, 0x00], 11, /invalid data segment flags 3/);
  malformed([...HEADER, 0x05, 0x02, 0x01, 0x10], 11, /limits flags/);
});

test('never reads past a section into the next one', () => {
  // Memory section of size 1 (count only) followed by a data section: the
  // memory entry must not be read from the data section's bytes.
  malformed([...HEADER, 0x05, 0x01, 0x01, 0x0b, 0x01, 0x00], 11, /unexpected end/);
});

test('every truncation of a valid module is rejected without a crash', () => {
  const bytes = buildModule({
    memories: [{ min: 1 }],
    funcs: stdFuncs,
    data: [{ offset: 5, bytes: [1, 2, 3, 4] }],
    custom: [{ name: 'x', bytes: [1, 2] }],
  });
  assert.doesNotThrow(() => parseModule(bytes));
  let rejected = 0;
  for (let n = 0; n < bytes.length; n++) {
    try {
      parseModule(bytes.subarray(0, n));
    } catch (e) {
      assert.ok(e instanceof WasmFormatError);
      assert.ok(e.offset >= 0 && e.offset <= n, `offset ${e.offset} within ${n}`);
      rejected++;
    }
  }
  // Cuts that fall exactly between sections leave a well-formed prefix.
  assert.ok(rejected >= bytes.length - 8, `${rejected} of ${bytes.length}`);
});

test('i32.const offsets in every LEB length and sign, minimal or padded, read as V8 reads them', () => {
  // Encodings of 1 to 5 bytes, padded ones included: the reader's fast path
  // takes up to 4 bytes, the general evaluator the rest.
  const encodings: [number[], number][] = [];
  for (const v of [0, 1, -1, 63, 64, -64, -65, 8191, 8192, -8192, -8193, 2 ** 20, -(2 ** 20), 2 ** 27 - 1, -(2 ** 27), 2 ** 31 - 1, -(2 ** 31)]) {
    const min: number[] = [];
    let x = BigInt(v);
    for (;;) {
      const byte = Number(x & 0x7fn);
      x >>= 7n;
      const done = (x === 0n && (byte & 0x40) === 0) || (x === -1n && (byte & 0x40) !== 0);
      min.push(done ? byte : byte | 0x80);
      if (done) break;
    }
    encodings.push([min, v]);
    // Padded to every longer length up to 5 bytes.
    for (let len = min.length + 1; len <= 5; len++) {
      const pad = v < 0 ? 0x7f : 0x00;
      const e = [...min];
      e[e.length - 1]! |= 0x80;
      while (e.length < len - 1) e.push(pad | 0x80);
      e.push(pad);
      encodings.push([e, v]);
    }
  }
  for (const [enc, v] of encodings) {
    const bytes = buildModule({ memories: [{ min: 1 }], data: [{ offset: { expr: [0x41, ...enc] }, bytes: [1] }] });
    const off = parseModule(bytes).data[0]!.offset!;
    assert.deepEqual(off, { type: 'i32', constant: BigInt(v >>> 0), global: null, dynamic: false }, `encoding ${enc.map((b) => b.toString(16)).join(' ')} of ${v}`);
    // i32.const n; i32.const 0; i32.add also evaluates (the general path).
    const sum = buildModule({ memories: [{ min: 1 }], data: [{ offset: { expr: [0x41, ...enc, 0x41, 0x00, 0x6a] }, bytes: [1] }] });
    assert.equal(parseModule(sum).data[0]!.offset!.constant, BigInt(v >>> 0));
    assert.ok(WebAssembly.validate(bytes), `V8 accepts ${enc.join(',')}`);
  }
});
