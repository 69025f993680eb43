/**
 * A bounded byte cursor over part of a wasm module, for the readers that
 * look at a section binary/reader.ts does not decode (exposure.ts,
 * reuse/module-info.ts, binary/code-scan.ts, snapshot/rewrite.ts).
 *
 * It reads, it does not validate: what it cannot read (a read past `end`, a
 * LEB128 longer than its width allows, a value type it does not know) throws
 * a CursorError, which each user turns into its own answer ("not
 * understood", null, an 'unknown' scan result, a SnapshotError). A
 * CursorError never leaves the library.
 *
 * LEB128 widths, as every user read them:
 *  - u32(): at most 5 bytes; the fifth byte's high bits are not checked,
 *    so the value can exceed 2^32 - 1 (up to 2^35 - 1);
 *  - s33(): at most 5 bytes, sign-extended from the last byte's bit 6;
 *  - skipLeb() and u64(): at most 10 bytes (any 64-bit LEB, signed or not).
 * A LEB cut short by `end` is an 'end' error at the byte that is missing;
 * one still continuing after its last allowed byte is a 'leb' error at its
 * first byte.
 */

export type CursorErrorKind =
  /** A read past the cursor's end. */
  | 'end'
  /** A LEB128 with more bytes than its width allows. */
  | 'leb'
  /** skip(n) past the end. */
  | 'length'
  /** A value type byte valType() does not know. */
  | 'valType'
  /** Something a user of the cursor does not understand (thrown by the user). */
  | 'invalid';

/** What a ByteCursor (or its user) could not read, and where. Internal: never leaves the library. */
export class CursorError extends Error {
  constructor(
    readonly kind: CursorErrorKind,
    message: string,
    /** Byte offset in the input, or -1 when the user did not say. */
    readonly at: number,
  ) {
    super(message);
    this.name = 'CursorError';
  }
}

/** Limits as they stand in the input: the flags byte, the minimum and the maximum (flags bit 0) or null. */
export interface Limits {
  readonly flags: number;
  readonly min: number;
  readonly max: number | null;
}

export class ByteCursor {
  constructor(
    readonly b: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}

  u8(): number {
    if (this.pos >= this.end) throw new CursorError('end', 'unexpected end', this.pos);
    return this.b[this.pos++]!;
  }

  /** Unsigned LEB128 of at most 5 bytes (see the header: the fifth byte is not range-checked). */
  u32(): number {
    return this.uleb(5);
  }

  /** Unsigned LEB128 of at most 10 bytes, as a number (exact below 2^53). */
  u64(): number {
    return this.uleb(10);
  }

  /** Signed LEB128 of at most 5 bytes (33 bits: a heap type or block type), as a number. */
  s33(): number {
    const at = this.pos;
    let r = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const x = this.u8();
      r += (x & 0x7f) * 2 ** shift;
      shift += 7;
      if ((x & 0x80) === 0) return (x & 0x40) !== 0 ? r - 2 ** shift : r;
    }
    throw new CursorError('leb', 'unterminated LEB128', at);
  }

  /** Skips any LEB128 of at most 10 bytes (up to 64 bits, signed or not). */
  skipLeb(): void {
    const at = this.pos;
    for (let i = 0; i < 10; i++) if ((this.u8() & 0x80) === 0) return;
    throw new CursorError('leb', 'unterminated LEB128', at);
  }

  skip(n: number): void {
    if (n > this.end - this.pos) throw new CursorError('length', `length ${n} runs past the end`, this.pos);
    this.pos += n;
  }

  /** Skips a name (a u32 length, then that many bytes; not decoded). */
  name(): void {
    this.skip(this.u32());
  }

  /** Limits: the flags byte (not checked here), the minimum and, with flags bit 0, the maximum, each read by bound(). */
  limits(): Limits {
    const flags = this.u8();
    const min = this.bound(flags);
    const max = (flags & 1) !== 0 ? this.bound(flags) : null;
    return { flags, min, max };
  }

  /**
   * A value type: its first byte, after reading the heap type of a typed
   * reference (0x63 / 0x64) with heapType(). Numbers, v128 and the one-byte
   * reference shorthands (0x69..0x74) are accepted; anything else is a
   * 'valType' error at the type's byte.
   */
  valType(): number {
    const at = this.pos;
    const t = this.u8();
    if (t === 0x63 || t === 0x64) this.heapType();
    else if (!((t >= 0x7b && t <= 0x7f) || (t >= 0x69 && t <= 0x74))) throw new CursorError('valType', `unknown value type 0x${t.toString(16)}`, at);
    return t;
  }

  /**
   * Skips a constant expression up to and including its `end`: the numeric
   * constants, global.get, ref.null, ref.func, the extended-constant i32 /
   * i64 add, sub, mul, and v128.const. Any other opcode is 'invalid'.
   */
  constExpr(): void {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      switch (op) {
        case 0x0b:
          return;
        case 0x41: // i32.const
        case 0x42: // i64.const
          this.skipLeb();
          break;
        case 0x43:
          this.skip(4);
          break;
        case 0x44:
          this.skip(8);
          break;
        case 0x23: // global.get
        case 0xd2: // ref.func
          this.constIndex();
          break;
        case 0xd0: // ref.null
          this.heapType();
          break;
        case 0x6a:
        case 0x6b:
        case 0x6c:
        case 0x7c:
        case 0x7d:
        case 0x7e:
          break;
        case 0xfd:
          if (this.u32() !== 12) throw new CursorError('invalid', 'a constant expression with a SIMD opcode other than v128.const', at);
          this.skip(16);
          break;
        default:
          throw new CursorError('invalid', `opcode 0x${op.toString(16)} in a constant expression`, at);
      }
    }
  }

  /** One bound of limits: a u32, or with flags bit 2 (64-bit limits) a u64. */
  protected bound(flags: number): number {
    return (flags & 4) !== 0 ? this.u64() : this.u32();
  }

  /** A heap type (typed references, ref.null): an s33. */
  protected heapType(): void {
    this.s33();
  }

  /** The index operand of global.get / ref.func in a constant expression: a u32. */
  protected constIndex(): void {
    this.u32();
  }

  private uleb(maxBytes: number): number {
    const at = this.pos;
    let r = 0;
    for (let i = 0; i < maxBytes; i++) {
      const x = this.u8();
      r += (x & 0x7f) * 2 ** (7 * i);
      if ((x & 0x80) === 0) return r;
    }
    throw new CursorError('leb', 'unterminated LEB128', at);
  }
}
