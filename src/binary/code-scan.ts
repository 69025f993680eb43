/**
 * Instruction scanner: decodes every instruction of every function body and
 * reports what the module's code can do to its own state, for instance
 * reuse (src/reuse/).
 *
 * It knows the MVP, sign extension, saturating truncation (0xFC 0-7), bulk
 * memory and reference types (0xFC 8-17, table.get/set, ref.*), SIMD and
 * relaxed SIMD (0xFD), threads (0xFE), tail calls, typed function
 * references (call_ref, br_on_null, ...), legacy and new exception handling
 * (try/catch/delegate, try_table/throw_ref), multi-value block types (type
 * indices) and multi-memory memory arguments. Anything else (GC's 0xFB
 * prefix, an unassigned opcode, a prefix sub-opcode it does not list) makes
 * the whole result `unknown`, with the reason and byte offset: the scanner
 * never guesses an immediate's size.
 *
 * It does not validate (V8 does, before any instance exists); it only needs
 * to find every instruction. Function bodies are read in order; the
 * scanner never recurses and allocates nothing per instruction.
 */
import { ByteCursor, CursorError } from './cursor.js';
import type { ParsedModule } from './reader.js';

/** What the code of a module can do, when every instruction was understood. */
export interface CodeFacts {
  readonly kind: 'known';
  /** Function bodies read. */
  readonly functions: number;
  /**
   * Tables whose entries or size code can change: table.set, table.fill,
   * table.grow, and the destination of table.copy and table.init.
   */
  readonly mutatedTables: ReadonlySet<number>;
  /** Tables code can grow (table.grow); a subset of mutatedTables. */
  readonly grownTables: ReadonlySet<number>;
  /** Data segments code drops (data.drop). */
  readonly droppedData: ReadonlySet<number>;
  /** Element segments code drops (elem.drop). */
  readonly droppedElems: ReadonlySet<number>;
  /** Data segments code reads (memory.init). */
  readonly initData: ReadonlySet<number>;
  /** Element segments code reads (table.init). */
  readonly initElems: ReadonlySet<number>;
  /** Memories code can grow (memory.grow). */
  readonly grownMemories: ReadonlySet<number>;
  /** Globals code writes (global.set). */
  readonly globalSets: ReadonlySet<number>;
}

export interface CodeUnknown {
  readonly kind: 'unknown';
  /** Why the code could not be read (an opcode the scanner does not know, a truncated body, ...). */
  readonly reason: string;
  /** Byte offset in the module. */
  readonly offset: number;
}

export type CodeScan = CodeFacts | CodeUnknown;

const SECTION_CODE = 10;

/** What the scanner does not understand; its message is the result's reason. */
class Stop extends CursorError {
  constructor(reason: string, at: number) {
    super('invalid', reason, at);
  }
}

/**
 * SIMD sub-opcodes 0x5e..0xff with no immediate that are not assigned in
 * the final SIMD proposal (holes in the opcode map).
 */
const SIMD_HOLES = new Set([0x9a, 0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee]);

/** ByteCursor plus the instruction immediates only the scanner reads. */
class Reader extends ByteCursor {
  /** A block type: empty, a value type, or a type index (multi-value). */
  blockType(): void {
    const t = this.b[this.pos];
    if (t === 0x40) {
      this.pos++;
      return;
    }
    if (t !== undefined && (t === 0x63 || t === 0x64 || (t >= 0x7b && t <= 0x7f) || (t >= 0x69 && t <= 0x74))) {
      this.valType();
      return;
    }
    const at = this.pos;
    const index = this.s33();
    if (index < 0) throw new Stop('unknown block type', at);
  }
  /** A memory argument: alignment (bit 6: a memory index follows), then the offset. */
  memarg(): void {
    const align = this.u32();
    if ((align & 0x40) !== 0) this.u32();
    this.skipLeb();
  }
}

/** What the scanner reports for what its cursor could not read. */
function cursorReason(e: CursorError): string {
  if (e.kind === 'end') return 'unexpected end of a function body';
  if (e.kind === 'length') return 'immediate runs past the end of the body';
  return e.message; // 'unterminated LEB128', 'unknown value type 0x..', or the scanner's own (Stop)
}

/** Scans every function body of `bytes` (parsed by parseModule). */
export function scanCode(bytes: Uint8Array, parsed: ParsedModule): CodeScan {
  const mutatedTables = new Set<number>();
  const grownTables = new Set<number>();
  const droppedData = new Set<number>();
  const droppedElems = new Set<number>();
  const initData = new Set<number>();
  const initElems = new Set<number>();
  const grownMemories = new Set<number>();
  const globalSets = new Set<number>();
  const code = parsed.sections.find((s) => s.id === SECTION_CODE);
  let functions = 0;
  try {
    if (code !== undefined) {
      const r = new Reader(bytes, code.contentStart, code.end);
      const count = r.u32();
      for (let f = 0; f < count; f++) {
        const size = r.u32();
        const bodyStart = r.pos;
        if (size > code.end - bodyStart) throw new Stop('function body runs past the code section', bodyStart);
        const body = new Reader(bytes, bodyStart, bodyStart + size);
        for (let groups = body.u32(); groups > 0; groups--) {
          body.u32();
          body.valType();
        }
        scanBody(body);
        r.pos = bodyStart + size;
        functions++;
      }
      if (r.pos !== code.end) throw new Stop('code section size mismatch', r.pos);
    }
  } catch (e) {
    if (e instanceof CursorError) return { kind: 'unknown', reason: cursorReason(e), offset: e.at };
    throw e;
  }
  return { kind: 'known', functions, mutatedTables, grownTables, droppedData, droppedElems, initData, initElems, grownMemories, globalSets };

  function scanBody(r: Reader): void {
    let depth = 1; // the function's own block
    while (depth > 0) {
      const at = r.pos;
      const op = r.u8();
      if (op >= 0x45 && op <= 0xc4) continue; // numeric instructions and sign extension: no immediates
      if (op >= 0x28 && op <= 0x3e) {
        r.memarg();
        continue;
      }
      switch (op) {
        case 0x00: // unreachable
        case 0x01: // nop
        case 0x0f: // return
        case 0x1a: // drop
        case 0x1b: // select
        case 0x0a: // throw_ref
        case 0xd1: // ref.is_null
        case 0xd3: // ref.as_non_null
        case 0xd5: // ref.eq
          break;
        case 0x02: // block
        case 0x03: // loop
        case 0x04: // if
        case 0x06: // try (legacy exceptions)
          r.blockType();
          depth++;
          break;
        case 0x1f: {
          // try_table: block type, then catch clauses
          r.blockType();
          for (let n = r.u32(); n > 0; n--) {
            const kindAt = r.pos;
            const kind = r.u8();
            if (kind === 0 || kind === 1) {
              r.u32(); // tag
              r.u32(); // label
            } else if (kind === 2 || kind === 3) {
              r.u32(); // label
            } else {
              throw new Stop(`unknown try_table catch kind ${kind}`, kindAt);
            }
          }
          depth++;
          break;
        }
        case 0x05: // else
        case 0x19: // catch_all
          break;
        case 0x07: // catch tag
        case 0x08: // throw tag
        case 0x09: // rethrow label
          r.u32();
          break;
        case 0x18: // delegate label: ends the try
          r.u32();
          depth--;
          break;
        case 0x0b: // end
          depth--;
          break;
        case 0x0c: // br
        case 0x0d: // br_if
        case 0xd4: // br_on_null
        case 0xd6: // br_on_non_null
          r.u32();
          break;
        case 0x0e: // br_table
          for (let n = r.u32(); n > 0; n--) r.u32();
          r.u32();
          break;
        case 0x10: // call
        case 0x12: // return_call
        case 0x14: // call_ref
        case 0x15: // return_call_ref
        case 0xd2: // ref.func
          r.u32();
          break;
        case 0x11: // call_indirect
        case 0x13: // return_call_indirect
          r.u32();
          r.u32();
          break;
        case 0x1c: // select t*
          for (let n = r.u32(); n > 0; n--) r.valType();
          break;
        case 0x20: // local.get
        case 0x21: // local.set
        case 0x22: // local.tee
        case 0x23: // global.get
          r.u32();
          break;
        case 0x24: // global.set
          globalSets.add(r.u32());
          break;
        case 0x25: // table.get
          r.u32();
          break;
        case 0x26: // table.set
          mutatedTables.add(r.u32());
          break;
        case 0x3f: // memory.size
          r.u32();
          break;
        case 0x40: // memory.grow
          grownMemories.add(r.u32());
          break;
        case 0x41: // i32.const
        case 0x42: // i64.const
          r.skipLeb();
          break;
        case 0x43:
          r.skip(4);
          break;
        case 0x44:
          r.skip(8);
          break;
        case 0xd0: // ref.null heap type
          r.s33();
          break;
        case 0xfc:
          prefixFC(r, at);
          break;
        case 0xfd:
          prefixFD(r, at);
          break;
        case 0xfe:
          prefixFE(r, at);
          break;
        default:
          throw new Stop(`unknown opcode 0x${op.toString(16)}`, at);
      }
    }
    if (r.pos !== r.end) throw new Stop('instructions after the function body’s end', r.pos);
  }

  function prefixFC(r: Reader, at: number): void {
    const sub = r.u32();
    if (sub <= 7) return; // saturating truncations
    switch (sub) {
      case 8: // memory.init data memory
        initData.add(r.u32());
        r.u32();
        return;
      case 9: // data.drop
        droppedData.add(r.u32());
        return;
      case 10: // memory.copy dst src
        r.u32();
        r.u32();
        return;
      case 11: // memory.fill
        r.u32();
        return;
      case 12: {
        // table.init elem table
        initElems.add(r.u32());
        mutatedTables.add(r.u32());
        return;
      }
      case 13: // elem.drop
        droppedElems.add(r.u32());
        return;
      case 14: {
        // table.copy dst src
        mutatedTables.add(r.u32());
        r.u32();
        return;
      }
      case 15: {
        // table.grow
        const t = r.u32();
        mutatedTables.add(t);
        grownTables.add(t);
        return;
      }
      case 16: // table.size
        r.u32();
        return;
      case 17: // table.fill
        mutatedTables.add(r.u32());
        return;
      default:
        throw new Stop(`unknown opcode 0xfc ${sub}`, at);
    }
  }

  function prefixFD(r: Reader, at: number): void {
    const sub = r.u32();
    if (sub <= 11 || sub === 92 || sub === 93) {
      r.memarg(); // v128 loads and stores, load32_zero, load64_zero
      return;
    }
    if (sub === 12 || sub === 13) {
      r.skip(16); // v128.const, i8x16.shuffle
      return;
    }
    if (sub >= 14 && sub <= 20) return; // swizzle, splats
    if (sub >= 21 && sub <= 34) {
      r.skip(1); // extract_lane / replace_lane: lane index
      return;
    }
    if (sub >= 35 && sub <= 83) return; // comparisons, bitwise, any_true
    if (sub >= 84 && sub <= 91) {
      r.memarg(); // load/store lane: memarg, lane index
      r.skip(1);
      return;
    }
    if (sub >= 94 && sub <= 0xff && !SIMD_HOLES.has(sub)) return;
    if (sub >= 0x100 && sub <= 0x113) return; // relaxed SIMD
    throw new Stop(`unknown opcode 0xfd ${sub}`, at);
  }

  function prefixFE(r: Reader, at: number): void {
    const sub = r.u32();
    if (sub === 3) {
      // atomic.fence: one reserved byte
      if (r.u8() !== 0) throw new Stop('atomic.fence with a non-zero immediate', at);
      return;
    }
    if (sub <= 2 || (sub >= 0x10 && sub <= 0x4e)) {
      r.memarg();
      return;
    }
    throw new Stop(`unknown opcode 0xfe ${sub}`, at);
  }
}
