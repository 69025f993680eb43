import test from 'node:test';
import assert from 'node:assert/strict';
import { ByteCursor, CursorError, type CursorErrorKind } from '../src/binary/cursor.js';

const cur = (bytes: number[], pos = 0, end = bytes.length): ByteCursor => new ByteCursor(new Uint8Array(bytes), pos, end);

/** Runs `f` and asserts it throws a CursorError of `kind` at offset `at`. */
function throwsAt(f: () => unknown, kind: CursorErrorKind, at: number): CursorError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof CursorError, `expected a CursorError, got ${String(e)}`);
    assert.equal(e.kind, kind);
    assert.equal(e.at, at);
    return e;
  }
  return assert.fail(`expected a CursorError (${kind} at ${at})`);
}

test('u8 reads up to end, never past it (end, not the buffer, bounds it)', () => {
  const c = cur([1, 2, 3], 1, 2);
  assert.equal(c.u8(), 2);
  assert.equal(c.pos, 2);
  throwsAt(() => c.u8(), 'end', 2);
  assert.equal(c.pos, 2);
});

test('u32: one to five bytes, values above 2^32 - 1 from a fifth byte are not range-checked', () => {
  assert.equal(cur([0x00]).u32(), 0);
  assert.equal(cur([0x7f]).u32(), 127);
  assert.equal(cur([0xe5, 0x8e, 0x26]).u32(), 624485);
  const c = cur([0x80, 0x80, 0x80, 0x80, 0x00, 0xaa]); // overlong zero: accepted, five bytes consumed
  assert.equal(c.u32(), 0);
  assert.equal(c.pos, 5);
  assert.equal(cur([0xff, 0xff, 0xff, 0xff, 0x0f]).u32(), 0xffff_ffff);
  assert.equal(cur([0xff, 0xff, 0xff, 0xff, 0x7f]).u32(), 2 ** 35 - 1);
});

test('u32: a sixth byte is an unterminated LEB at its first byte; a cut one is an end at the missing byte', () => {
  const e = throwsAt(() => cur([0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 1).u32(), 'leb', 1);
  assert.equal(e.message, 'unterminated LEB128');
  throwsAt(() => cur([0x80, 0x80]).u32(), 'end', 2);
  throwsAt(() => cur([0x80, 0x80, 0x00], 0, 2).u32(), 'end', 2);
});

test('u64 and skipLeb: up to ten bytes, an eleventh is unterminated', () => {
  const ten = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
  assert.equal(cur(ten).u64(), 2 ** 63);
  const c = cur([...ten, 0x55]);
  c.skipLeb();
  assert.equal(c.pos, 10);
  assert.equal(cur([0x80, 0x80, 0x80, 0x80, 0x80, 0x00]).u64(), 0); // six bytes: too long for u32, fine here
  const eleven = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
  throwsAt(() => cur(eleven).skipLeb(), 'leb', 0);
  throwsAt(() => cur(eleven).u64(), 'leb', 0);
  throwsAt(() => cur([0xff, 0xff, 0xff]).skipLeb(), 'end', 3);
});

test('s33: sign taken from bit 6 of the last byte, at most five bytes', () => {
  assert.equal(cur([0x00]).s33(), 0);
  assert.equal(cur([0x3f]).s33(), 63);
  assert.equal(cur([0x40]).s33(), -64);
  assert.equal(cur([0x7f]).s33(), -1);
  assert.equal(cur([0x70]).s33(), -0x10); // funcref as a heap type
  assert.equal(cur([0x6f]).s33(), -0x11); // extern
  assert.equal(cur([0xc0, 0x00]).s33(), 64);
  assert.equal(cur([0xc0, 0x7f]).s33(), -64); // overlong negative: accepted
  assert.equal(cur([0x80, 0x80, 0x80, 0x80, 0x10]).s33(), 2 ** 32);
  assert.equal(cur([0x80, 0x80, 0x80, 0x80, 0x70]).s33(), -(2 ** 32));
  assert.equal(cur([0xff, 0xff, 0xff, 0xff, 0x7f]).s33(), -1);
  throwsAt(() => cur([0x80, 0x80, 0x80, 0x80, 0x80, 0x00]).s33(), 'leb', 0);
  throwsAt(() => cur([0xff]).s33(), 'end', 1);
});

test('skip and name stay within end', () => {
  const c = cur([3, 0x61, 0x62, 0x63, 9]);
  c.name();
  assert.equal(c.pos, 4);
  throwsAt(() => c.skip(2), 'length', 4);
  assert.equal(c.pos, 4);
  c.skip(1);
  assert.equal(c.pos, 5);
  c.skip(0);
  throwsAt(() => cur([5, 1, 2]).name(), 'length', 1);
});

test('limits: flags, min, max only with bit 0, 64-bit bounds with bit 2', () => {
  assert.deepEqual(cur([0x00, 0x02]).limits(), { flags: 0, min: 2, max: null });
  assert.deepEqual(cur([0x01, 0x02, 0x80, 0x02]).limits(), { flags: 1, min: 2, max: 256 });
  assert.deepEqual(cur([0x03, 0x01, 0x01]).limits(), { flags: 3, min: 1, max: 1 });
  // 64-bit: a six-byte bound is read, a u32 would refuse it
  const c = cur([0x05, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00]);
  assert.deepEqual(c.limits(), { flags: 5, min: 2 ** 35, max: 0 });
  assert.equal(c.pos, 8);
  throwsAt(() => cur([0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00]).limits(), 'leb', 1);
  throwsAt(() => cur([0x01, 0x02]).limits(), 'end', 2);
  // flags are not judged here (users that refuse unknown flags check them)
  assert.deepEqual(cur([0x08, 0x00]).limits(), { flags: 8, min: 0, max: null });
});

test('valType: numbers, v128, the reference shorthands, typed references with an s33 heap type', () => {
  for (const t of [0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69, 0x74]) {
    const c = cur([t, 0xee]);
    assert.equal(c.valType(), t);
    assert.equal(c.pos, 1);
  }
  const r = cur([0x64, 0x70, 0xee]); // (ref func)
  assert.equal(r.valType(), 0x64);
  assert.equal(r.pos, 2);
  const idx = cur([0x63, 0x80, 0x01]); // (ref null 128)
  assert.equal(idx.valType(), 0x63);
  assert.equal(idx.pos, 3);
  for (const t of [0x7a, 0x75, 0x68, 0x60, 0x40, 0x00]) {
    const e = throwsAt(() => cur([0x00, t], 1).valType(), 'valType', 1);
    assert.equal(e.message, `unknown value type 0x${t.toString(16)}`);
  }
  throwsAt(() => cur([0x63, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]).valType(), 'leb', 1);
  throwsAt(() => cur([0x64]).valType(), 'end', 1);
});

test('constExpr: skips through end; unknown opcodes and cut expressions throw', () => {
  const ok = (bytes: number[]): number => {
    const c = cur([...bytes, 0xee]);
    c.constExpr();
    return c.pos;
  };
  assert.equal(ok([0x0b]), 1);
  assert.equal(ok([0x41, 0x7f, 0x0b]), 3); // i32.const -1
  assert.equal(ok([0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x0b]), 12); // ten-byte i64
  assert.equal(ok([0x43, 0, 0, 0, 0, 0x0b]), 6);
  assert.equal(ok([0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b]), 10);
  assert.equal(ok([0x23, 0x80, 0x01, 0x0b]), 4); // global.get 128
  assert.equal(ok([0xd2, 0x00, 0x0b]), 3); // ref.func 0
  assert.equal(ok([0xd0, 0x70, 0x0b]), 3); // ref.null func
  assert.equal(ok([0x41, 0x01, 0x41, 0x02, 0x6a, 0x0b]), 6); // extended const: i32.add
  assert.equal(ok([0xfd, 0x0c, ...new Array<number>(16).fill(7), 0x0b]), 19); // v128.const
  throwsAt(() => ok([0xfd, 0x0d, 0x0b]), 'invalid', 0);
  throwsAt(() => ok([0x41, 0x00, 0x20, 0x00, 0x0b]), 'invalid', 2); // local.get
  throwsAt(() => ok([0x23, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b]), 'leb', 1); // global.get index is a u32
  throwsAt(() => ok([0xd0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b]), 'leb', 1); // heap type is an s33
  throwsAt(() => ok([0x44, 0, 0]), 'length', 1);
  throwsAt(() => cur([0x41, 0x00]).constExpr(), 'end', 2); // no end
});

test('subclasses choose the width of heap types and constant indices', () => {
  class Wide extends ByteCursor {
    protected override heapType(): void {
      this.skipLeb();
    }
    protected override constIndex(): void {
      this.skipLeb();
    }
  }
  const six = [0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
  const w = new Wide(new Uint8Array([0x63, ...six, 0xd0, ...six, 0x23, ...six, 0x0b]), 0, 22);
  assert.equal(w.valType(), 0x63);
  assert.equal(w.pos, 7);
  w.constExpr();
  assert.equal(w.pos, 22);
});
