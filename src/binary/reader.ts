/**
 * WebAssembly binary reader.
 *
 * Reads just what wasm-cow needs: the section layout, imports, defined
 * memories, exports, start, data count and data segments (with their offset
 * expressions evaluated where they are constant). Code, types, tables,
 * globals, elements and custom sections are located but not decoded: the
 * rewriter copies them verbatim.
 *
 * Every read is bounds-checked against the enclosing section; every LEB128
 * is checked for overlong and unterminated encodings; no array is sized
 * from a count read from the input (entries are pushed as they are read, so
 * an absurd count runs out of bytes first). Any violation throws
 * `WasmFormatError` with the byte offset. The reader never recurses.
 */
import { WasmFormatError } from '../errors.js';
import { DataTable, OFFSET_EXPR, OFFSET_I32, OFFSET_NONE } from './data-table.js';

/** Section ids, in the binary format's numbering. */
export const SectionId = {
  custom: 0,
  type: 1,
  import: 2,
  function: 3,
  table: 4,
  memory: 5,
  global: 6,
  export: 7,
  start: 8,
  element: 9,
  code: 10,
  data: 11,
  dataCount: 12,
  tag: 13,
} as const;

/** Position of each known non-custom section in the required order. */
const SECTION_ORDER: ReadonlyMap<number, number> = new Map([
  [SectionId.type, 1],
  [SectionId.import, 2],
  [SectionId.function, 3],
  [SectionId.table, 4],
  [SectionId.memory, 5],
  [SectionId.tag, 6],
  [SectionId.global, 7],
  [SectionId.export, 8],
  [SectionId.start, 9],
  [SectionId.element, 10],
  [SectionId.dataCount, 11],
  [SectionId.code, 12],
  [SectionId.data, 13],
]);

export interface Section {
  readonly id: number;
  /** Offset of the section id byte. */
  readonly start: number;
  /** Offset of the first content byte (after the size). */
  readonly contentStart: number;
  /** Offset one past the last content byte. */
  readonly end: number;
}

export interface MemoryType {
  /** Initial size in 64 KiB pages. */
  readonly min: number;
  /** Maximum size in pages, or null when unbounded. */
  readonly max: number | null;
  readonly shared: boolean;
  readonly memory64: boolean;
  /** The limits' bytes (flags, min, max) as they stand in the input. */
  readonly limitsStart: number;
  readonly limitsEnd: number;
}

export type ExternKind = 'function' | 'table' | 'memory' | 'global' | 'tag';

export interface ImportEntry {
  readonly module: string;
  readonly name: string;
  readonly kind: ExternKind;
  /** Set for memory imports. */
  readonly memory?: MemoryType;
  /** Set for global imports: value type byte and mutability. */
  readonly global?: { readonly valType: number; readonly mutable: boolean };
  /** Set for table imports: element type byte (0x70 funcref, 0x6f externref, ...) and limits. */
  readonly table?: { readonly elemType: number; readonly min: number; readonly max: number | null };
  /** Set for tag imports: the index of its function type (its parameters). */
  readonly tag?: { readonly typeIndex: number };
}

export interface ExportEntry {
  readonly name: string;
  readonly kind: ExternKind;
  readonly index: number;
}

/** Value type of a constant expression's result. */
export type ConstType = 'i32' | 'i64' | 'other';

/**
 * An offset expression, evaluated as far as it can be without instantiating:
 * `base + constant`, where `base` is the value of an imported global (read
 * at instantiation) or absent. `dynamic` is set when the expression is none
 * of these (for example, the product of two globals).
 */
export interface OffsetExpr {
  readonly type: ConstType;
  /** Constant part, wrapped to the expression's type width. */
  readonly constant: bigint;
  /** Index of a global whose value is added to `constant`, or null. */
  readonly global: number | null;
  /** True when the value cannot be written as `global + constant`. */
  readonly dynamic: boolean;
}

export interface DataSegment {
  /** Index in the data index space. */
  readonly index: number;
  readonly mode: 'active' | 'passive';
  /** Memory index for active segments (0 for passive ones). */
  readonly memory: number;
  /** Offset expression for active segments, null for passive ones. */
  readonly offset: OffsetExpr | null;
  /** The segment's bytes: [dataStart, dataEnd) of the input. */
  readonly dataStart: number;
  readonly dataEnd: number;
  /** The whole entry: [start, end) of the input. */
  readonly start: number;
  readonly end: number;
}

export interface ParsedModule {
  readonly byteLength: number;
  readonly sections: readonly Section[];
  readonly imports: readonly ImportEntry[];
  /** Memory types of the memories the module defines (memory section). */
  readonly memories: readonly MemoryType[];
  readonly exports: readonly ExportEntry[];
  readonly start: number | null;
  readonly dataCount: number | null;
  /** The data segments as objects, made from `dataTable` on first use. */
  readonly data: readonly DataSegment[];
  /** The data segments as columns (what the planner reads: no object per segment). */
  readonly dataTable: DataTable;
  readonly importedMemoryCount: number;
  readonly importedGlobalCount: number;
}

const EXTERN_KINDS: readonly ExternKind[] = ['function', 'table', 'memory', 'global', 'tag'];
const utf8 = new TextDecoder('utf-8', { fatal: true });
const MASK32 = 0xffff_ffffn;
const MASK64 = 0xffff_ffff_ffff_ffffn;

/** A bounded cursor over the input. */
/** After i32ConstAt() found the expression: the position just past its `end`. */
let constEnd = 0;

/**
 * `i32.const n; end` at b[p], with n in at most 4 LEB bytes (any such
 * encoding is valid) and room for them before `end`: n as an unsigned
 * 32-bit value (constEnd set past the `end` opcode), or -1 when the bytes
 * are not of that form. The data segments' fast path (a module can have
 * 100,000 of them; the general evaluator, constExpr(), allocates).
 */
function i32ConstAt(b: Uint8Array, p: number, end: number): number {
  if (b[p] !== 0x41 || p + 6 > end) return -1;
  let v = 0;
  let shift = 0;
  let q = p + 1;
  for (; q < p + 5; q++) {
    const x = b[q]!;
    v |= (x & 0x7f) << shift;
    shift += 7;
    if ((x & 0x80) === 0) break;
  }
  if (q === p + 5 || b[q + 1] !== 0x0b) return -1;
  if (shift < 32 && (b[q]! & 0x40) !== 0) v |= -1 << shift; // sign-extend
  constEnd = q + 2;
  return v >>> 0;
}

class Cursor {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    pos: number,
    public end: number,
  ) {
    this.pos = pos;
  }

  fail(message: string, at = this.pos): never {
    throw new WasmFormatError(message, at);
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  u8(): number {
    if (this.pos >= this.end) this.fail('unexpected end');
    return this.bytes[this.pos++]!;
  }

  /** Unsigned LEB128 of at most `bits` bits, as a number (bits <= 32). */
  u32(): number {
    const start = this.pos;
    let result = 0;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) this.fail('unterminated LEB128', start);
      const b = this.bytes[this.pos++]!;
      if (i === 4 && (b & 0xf0) !== 0) this.fail('overlong or out-of-range u32 LEB128', start);
      result += (b & 0x7f) * 2 ** (7 * i);
      if ((b & 0x80) === 0) return result;
    }
    return this.fail('unterminated LEB128', start);
  }

  /** Unsigned LEB128 up to 64 bits. */
  u64(): bigint {
    const start = this.pos;
    let result = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('unterminated LEB128', start);
      const b = this.bytes[this.pos++]!;
      if (i === 9 && (b & 0xfe) !== 0) this.fail('overlong or out-of-range u64 LEB128', start);
      result |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) return result;
    }
    return this.fail('unterminated LEB128', start);
  }

  /** Signed LEB128 of `bits` bits (32, 33 or 64), as a two's complement bigint. */
  sleb(bits: 32 | 33 | 64): bigint {
    const start = this.pos;
    const maxBytes = Math.ceil(bits / 7);
    let result = 0n;
    let shift = 0;
    for (let i = 0; i < maxBytes; i++) {
      if (this.pos >= this.end) this.fail('unterminated LEB128', start);
      const b = this.bytes[this.pos++]!;
      result |= BigInt(b & 0x7f) << BigInt(shift);
      shift += 7;
      if (i === maxBytes - 1) {
        // The unused high bits of the last byte must all equal the sign bit.
        const used = bits - 7 * (maxBytes - 1);
        const rest = (b & 0x7f) >> (used - 1);
        if ((b & 0x80) !== 0 || (rest !== 0 && rest !== 0x7f >> (used - 1))) {
          this.fail(`overlong or out-of-range s${bits} LEB128`, start);
        }
      }
      if ((b & 0x80) === 0) {
        if ((b & 0x40) !== 0) result -= 1n << BigInt(shift);
        return BigInt.asIntN(bits, result);
      }
    }
    return this.fail('unterminated LEB128', start);
  }

  skip(n: number): void {
    if (n > this.end - this.pos) this.fail(`length ${n} runs past the end`);
    this.pos += n;
  }

  name(): string {
    const len = this.u32();
    const at = this.pos;
    this.skip(len);
    try {
      return utf8.decode(this.bytes.subarray(at, at + len));
    } catch {
      return this.fail('name is not valid UTF-8', at);
    }
  }

  /** A value type; reference types with a heap type operand are accepted. */
  valType(): number {
    const t = this.u8();
    if (t === 0x63 || t === 0x64) this.sleb(33);
    return t;
  }

  limits(isMemory: boolean): MemoryType {
    const limitsStart = this.pos;
    const flags = this.u8();
    if (flags > 7) this.fail(`unsupported limits flags 0x${flags.toString(16)}`, limitsStart);
    const hasMax = (flags & 1) !== 0;
    const shared = (flags & 2) !== 0;
    const wide = (flags & 4) !== 0;
    if (!isMemory && shared) this.fail('shared flag on a table', limitsStart);
    const read = (): number => (wide ? Number(this.u64()) : this.u32());
    const min = read();
    const max = hasMax ? read() : null;
    return { min, max, shared, memory64: wide, limitsStart, limitsEnd: this.pos };
  }

  /**
   * i32ConstAt() at the cursor: reads `i32.const n; end` and returns n (as
   * an unsigned 32-bit value), or returns -1 and reads nothing when the
   * expression is not of that form (constExpr() then reads it).
   */
  constI32(): number {
    const v = i32ConstAt(this.bytes, this.pos, this.end);
    if (v >= 0) this.pos = constEnd;
    return v;
  }

  /**
   * A constant expression, up to and including its `end`. Returns its value
   * as `global + constant` where it can. (Data segments try constI32() first.)
   */
  constExpr(): OffsetExpr {
    type V = { type: ConstType; k: bigint; g: number | null; dyn: boolean };
    const stack: V[] = [];
    const pop = (): V => stack.pop() ?? this.fail('constant expression pops an empty stack');
    const wrap = (type: ConstType, k: bigint): bigint =>
      type === 'i32' ? k & MASK32 : type === 'i64' ? k & MASK64 : 0n;
    const binary = (type: ConstType, op: 'add' | 'sub' | 'mul'): void => {
      const b = pop();
      const a = pop();
      // A global's type is checked by the caller (only imported globals
      // have one we know), so a global operand passes as either width.
      const typed = (v: V): boolean => v.type === type || (v.g !== null && v.type === 'other');
      const dyn = a.dyn || b.dyn || b.g !== null || (op === 'mul' && a.g !== null) || !typed(a) || !typed(b);
      const k = op === 'add' ? a.k + b.k : op === 'sub' ? a.k - b.k : a.k * b.k;
      stack.push({ type: a.g !== null && !dyn ? 'other' : type, k: wrap(type, k), g: dyn ? null : a.g, dyn });
    };
    const constant = (type: ConstType, k: bigint): void => {
      stack.push({ type, k: wrap(type, k), g: null, dyn: false });
    };
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      switch (op) {
        case 0x0b: {
          // end
          if (stack.length !== 1) {
            return { type: 'other', constant: 0n, global: null, dynamic: true };
          }
          const v = stack[0]!;
          return { type: v.type, constant: v.k, global: v.g, dynamic: v.dyn };
        }
        case 0x41:
          constant('i32', this.sleb(32));
          break;
        case 0x42:
          constant('i64', this.sleb(64));
          break;
        case 0x43:
          this.skip(4);
          stack.push({ type: 'other', k: 0n, g: null, dyn: true });
          break;
        case 0x44:
          this.skip(8);
          stack.push({ type: 'other', k: 0n, g: null, dyn: true });
          break;
        case 0x23: {
          // global.get: its type is known only for imported globals; the
          // rewriter treats anything else as dynamic.
          const g = this.u32();
          stack.push({ type: 'other', k: 0n, g, dyn: false });
          break;
        }
        case 0x6a:
          binary('i32', 'add');
          break;
        case 0x6b:
          binary('i32', 'sub');
          break;
        case 0x6c:
          binary('i32', 'mul');
          break;
        case 0x7c:
          binary('i64', 'add');
          break;
        case 0x7d:
          binary('i64', 'sub');
          break;
        case 0x7e:
          binary('i64', 'mul');
          break;
        case 0xd0:
          this.sleb(33);
          stack.push({ type: 'other', k: 0n, g: null, dyn: true });
          break;
        case 0xd2:
          this.u32();
          stack.push({ type: 'other', k: 0n, g: null, dyn: true });
          break;
        case 0xfd: {
          const sub = this.u32();
          if (sub !== 12) this.fail(`unsupported constant expression opcode 0xfd ${sub}`, at);
          this.skip(16);
          stack.push({ type: 'other', k: 0n, g: null, dyn: true });
          break;
        }
        default:
          this.fail(`unsupported constant expression opcode 0x${op.toString(16)}`, at);
      }
    }
  }

  expectEnd(what: string): void {
    if (this.pos !== this.end) this.fail(`${what} section size mismatch`);
  }
}

/**
 * Parses a module's binary. Throws WasmFormatError on malformed input.
 * `bytes` is not modified and not retained.
 */
export function parseModule(bytes: Uint8Array): ParsedModule {
  const c = new Cursor(bytes, 0, bytes.length);
  if (bytes.length < 8) c.fail('module is shorter than its 8-byte header', 0);
  if (bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    c.fail('magic number is not \\0asm', 0);
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    c.fail('unsupported binary version (expected 1)', 4);
  }
  c.pos = 8;

  const sections: Section[] = [];
  const imports: ImportEntry[] = [];
  const memories: MemoryType[] = [];
  const exportsList: ExportEntry[] = [];
  let dataTable: DataTable | null = null;
  let start: number | null = null;
  let dataCount: number | null = null;
  let lastOrder = 0;

  while (!c.done) {
    const sectionStart = c.pos;
    const id = c.u8();
    const size = c.u32();
    const contentStart = c.pos;
    if (size > bytes.length - contentStart) c.fail(`section ${id} length ${size} runs past the end`, sectionStart);
    const end = contentStart + size;
    if (id !== SectionId.custom) {
      const order = SECTION_ORDER.get(id);
      if (order === undefined) return c.fail(`unknown section id ${id}`, sectionStart);
      if (order <= lastOrder) c.fail(`section ${id} is duplicated or out of order`, sectionStart);
      lastOrder = order;
    }
    sections.push({ id, start: sectionStart, contentStart, end });
    const s = new Cursor(bytes, contentStart, end);
    switch (id) {
      case SectionId.custom:
        s.name();
        break;
      case SectionId.import:
        readImports(s, imports);
        s.expectEnd('import');
        break;
      case SectionId.memory: {
        const n = s.u32();
        for (let i = 0; i < n; i++) memories.push(s.limits(true));
        s.expectEnd('memory');
        break;
      }
      case SectionId.export: {
        const n = s.u32();
        for (let i = 0; i < n; i++) {
          const name = s.name();
          const kindAt = s.pos;
          const kind = EXTERN_KINDS[s.u8()] ?? s.fail('unknown export kind', kindAt);
          exportsList.push({ name, kind, index: s.u32() });
        }
        s.expectEnd('export');
        break;
      }
      case SectionId.start:
        start = s.u32();
        s.expectEnd('start');
        break;
      case SectionId.dataCount:
        dataCount = s.u32();
        s.expectEnd('data count');
        break;
      case SectionId.data:
        dataTable = readData(s);
        s.expectEnd('data');
        break;
      default:
        // Verbatim sections: their contents are V8's to validate.
        break;
    }
    c.pos = end;
  }

  const table = dataTable ?? new DataTable(0);
  return {
    byteLength: bytes.length,
    sections,
    imports,
    memories,
    exports: exportsList,
    start,
    dataCount,
    get data(): readonly DataSegment[] {
      const made = table.segments();
      Object.defineProperty(this, 'data', { value: made, enumerable: true, writable: false, configurable: false });
      return made;
    },
    dataTable: table,
    importedMemoryCount: imports.filter((i) => i.kind === 'memory').length,
    importedGlobalCount: imports.filter((i) => i.kind === 'global').length,
  };
}

function readImports(s: Cursor, out: ImportEntry[]): void {
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const module = s.name();
    const name = s.name();
    const kindAt = s.pos;
    const kindByte = s.u8();
    switch (kindByte) {
      case 0:
        s.u32();
        out.push({ module, name, kind: 'function' });
        break;
      case 1: {
        const elemType = s.valType();
        const { min, max } = s.limits(false);
        out.push({ module, name, kind: 'table', table: { elemType, min, max } });
        break;
      }
      case 2:
        out.push({ module, name, kind: 'memory', memory: s.limits(true) });
        break;
      case 3: {
        const valType = s.valType();
        const mutAt = s.pos;
        const mut = s.u8();
        if (mut > 1) s.fail('invalid global mutability', mutAt);
        out.push({ module, name, kind: 'global', global: { valType, mutable: mut === 1 } });
        break;
      }
      case 4:
        s.u8();
        out.push({ module, name, kind: 'tag', tag: { typeIndex: s.u32() } });
        break;
      default:
        s.fail(`unknown import kind ${kindByte}`, kindAt);
    }
  }
}

/** Rows a data table starts with at most (esbuild.wasm has 98,450 segments: one doubling and a copy of the columns). */
const DATA_ROWS_FIRST = 65536;

function readData(s: Cursor): DataTable {
  const n = s.u32();
  // Room for the count, up to DATA_ROWS_FIRST rows (the table doubles as it
  // fills): a malformed count over a large section must not reserve 34
  // bytes of columns per 2 bytes of input before the first entry is read.
  const table = new DataTable(Math.min(n, Math.floor((s.end - s.pos) / 2), DATA_ROWS_FIRST));
  let i = 0;
  while (i < n) {
    i = readPlainData(s, table, i, n);
    if (i === n) break;
    readDataEntry(s, table);
    i++;
  }
  return table;
}

/**
 * Reads entries i, i+1, ... while they are the usual active segment of
 * memory 0 at an `i32.const` offset in at most 4 LEB bytes with a length in
 * at most 4 (`00 41 n.. 0b len.. bytes`), in one tight loop (a Go module has
 * 100,000 of them, and this runs once, mostly before V8 optimizes it).
 * Stops before an entry of any other form, or one that runs past the end,
 * for readDataEntry() (which reads it, or throws, exactly as it always did).
 * Returns the index of the first entry not read.
 */
function readPlainData(s: Cursor, table: DataTable, i: number, n: number): number {
  const b = s.bytes;
  const end = s.end;
  const cap = table.capacity;
  const kind = table.offsetKind;
  const value = table.offsetValue;
  const start = table.start;
  const dataStart = table.dataStart;
  const dataEnd = table.dataEnd;
  let pos = s.pos;
  for (; i < n && i < cap; i++) {
    // flags 0, then `i32.const n; end`
    if (b[pos] !== 0x00) break;
    const v = i32ConstAt(b, pos + 1, end);
    if (v < 0) break;
    let r = constEnd;
    let len = 0;
    let lenShift = 0;
    for (;;) {
      if (r >= end || lenShift === 28) {
        lenShift = -1;
        break;
      }
      const x = b[r++]!;
      len |= (x & 0x7f) << lenShift;
      lenShift += 7;
      if ((x & 0x80) === 0) break;
    }
    if (lenShift < 0 || len > end - r) break;
    kind[i] = OFFSET_I32;
    value[i] = v;
    start[i] = pos;
    dataStart[i] = r;
    dataEnd[i] = r + len;
    pos = r + len;
  }
  // Rows are zero-filled: passive 0 (active), memory 0, as these entries are.
  table.length = i;
  s.pos = pos;
  return i;
}

/** Reads one data segment entry of any form. */
function readDataEntry(s: Cursor, table: DataTable): void {
  const start = s.pos;
  const flags = s.u32();
  let passive = false;
  let memory = 0;
  let kind = OFFSET_NONE;
  let value = 0;
  let expr: OffsetExpr | null = null;
  if (flags === 0 || flags === 2) {
    if (flags === 2) memory = s.u32();
    value = s.constI32();
    if (value >= 0) kind = OFFSET_I32;
    else {
      value = 0;
      kind = OFFSET_EXPR;
      expr = s.constExpr();
    }
  } else if (flags === 1) {
    passive = true;
  } else {
    s.fail(`invalid data segment flags ${flags}`, start);
  }
  const len = s.u32();
  const dataStart = s.pos;
  s.skip(len);
  const row = table.push(passive, memory, kind, value, start, dataStart, s.pos);
  if (expr !== null) table.exprs.set(row, expr);
}
