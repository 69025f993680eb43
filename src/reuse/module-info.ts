/**
 * What instance reuse needs to know about a module beyond what
 * binary/reader.ts reads: function types (for the import trampolines'
 * arity), function imports' types, defined globals and tables, element
 * segments' modes and tags. Bounds-checked; anything it does not understand
 * yields null (the module is then not eligible for reuse).
 */
import { ByteCursor, CursorError, type Limits } from '../binary/cursor.js';
import type { ParsedModule } from '../binary/reader.js';

export interface FuncTypeInfo {
  readonly params: number;
  readonly results: number;
  /** The parameters' value type bytes (0x7f i32, ... ; a reference type's first byte). */
  readonly paramTypes: readonly number[];
}

export interface GlobalInfo {
  /** First byte of the value type (0x7f i32, 0x7e i64, 0x7d f32, 0x7c f64, 0x7b v128, references). */
  readonly valType: number;
  readonly mutable: boolean;
}

export interface TableInfo {
  readonly elemType: number;
  readonly min: number;
  readonly max: number | null;
  /** The table's initialiser expression, without its `end` ([start, end) of the input), or null (ref.null). */
  readonly init: readonly [number, number] | null;
}

/** An element segment, with where its parts lie in the input (for table restore, table-restore.ts). */
export interface ElemInfo {
  readonly mode: 'active' | 'passive' | 'declarative';
  readonly table: number;
  readonly flags: number;
  /** Active: the offset expression without its `end`. */
  readonly offset: readonly [number, number] | null;
  /** Element type byte (0x70 funcref for the `elemkind` forms), and whether items are expressions. */
  readonly elemType: number;
  readonly exprs: boolean;
  /** The item vector (count and items), [start, end) of the input. */
  readonly items: readonly [number, number];
  readonly count: number;
}

export interface ModuleInfo {
  readonly types: readonly FuncTypeInfo[];
  /** Type of each function import, in import order. */
  readonly importFuncTypes: readonly FuncTypeInfo[];
  readonly importedFuncs: number;
  readonly importedTables: number;
  readonly importedGlobals: number;
  /** Defined globals (indices importedGlobals + i). */
  readonly globals: readonly GlobalInfo[];
  /** Defined tables (indices importedTables + i). */
  readonly tables: readonly TableInfo[];
  /** Element segments in order. */
  readonly elems: readonly ElemInfo[];
  /** Defined functions (function section entries). */
  readonly definedFuncs: number;
  /** Whether the module defines or imports tags. */
  readonly tags: boolean;
}

/** Anything this reader does not understand (readModuleInfo answers null). */
class Bad extends CursorError {
  constructor() {
    super('invalid', 'not understood by the module-info reader', -1);
  }
}

/** ByteCursor as this reader always read: limits flags above 7 rejected, LEB128s after a typed reference, ref.null, global.get and ref.func skipped at up to 10 bytes. */
class Cur extends ByteCursor {
  override limits(): Limits {
    const l = super.limits();
    if (l.flags > 7) throw new Bad();
    return l;
  }
  /** Both widths read as a u32 (a 64-bit bound whose LEB needs more than 5 bytes is not understood). */
  protected override bound(): number {
    return this.u32();
  }
  protected override heapType(): void {
    this.skipLeb();
  }
  protected override constIndex(): void {
    this.skipLeb();
  }
}

/** Reads the module's types, globals, tables and element modes; null when any is not understood. */
export function readModuleInfo(bytes: Uint8Array, parsed: ParsedModule): ModuleInfo | null {
  try {
    return read(bytes, parsed);
  } catch (e) {
    if (e instanceof CursorError) return null;
    throw e;
  }
}

function read(bytes: Uint8Array, parsed: ParsedModule): ModuleInfo {
  const types: FuncTypeInfo[] = [];
  const importFuncTypes: FuncTypeInfo[] = [];
  const globals: GlobalInfo[] = [];
  const tables: TableInfo[] = [];
  const elems: ElemInfo[] = [];
  let definedFuncs = 0;
  let importedFuncs = 0;
  let importedTables = 0;
  let importedGlobals = 0;
  let tags = false;
  const typeAt = (i: number): FuncTypeInfo => types[i] ?? fail();
  for (const sec of parsed.sections) {
    const c = new Cur(bytes, sec.contentStart, sec.end);
    switch (sec.id) {
      case 1:
        for (let n = c.u32(); n > 0; n--) {
          if (c.u8() !== 0x60) throw new Bad(); // GC types: not eligible
          const paramTypes: number[] = [];
          for (let k = c.u32(); k > 0; k--) paramTypes.push(c.valType());
          let results = 0;
          for (let k = c.u32(); k > 0; k--, results++) c.valType();
          types.push({ params: paramTypes.length, results, paramTypes });
        }
        break;
      case 2:
        for (let n = c.u32(); n > 0; n--) {
          c.name();
          c.name();
          const kind = c.u8();
          if (kind === 0) {
            importFuncTypes.push(typeAt(c.u32()));
            importedFuncs++;
          } else if (kind === 1) {
            c.valType();
            c.limits();
            importedTables++;
          } else if (kind === 2) {
            c.limits();
          } else if (kind === 3) {
            c.valType();
            c.u8();
            importedGlobals++;
          } else if (kind === 4) {
            c.u8();
            c.u32();
            tags = true;
          } else {
            throw new Bad();
          }
        }
        break;
      case 4:
        for (let n = c.u32(); n > 0; n--) {
          let withInit = false;
          if (c.b[c.pos] === 0x40) {
            c.u8();
            if (c.u8() !== 0) throw new Bad();
            withInit = true;
          }
          const elemType = c.valType();
          const { min, max } = c.limits();
          let init: [number, number] | null = null;
          if (withInit) {
            const at = c.pos;
            c.constExpr();
            init = [at, c.pos - 1];
          }
          tables.push({ elemType, min, max, init });
        }
        break;
      case 6:
        for (let n = c.u32(); n > 0; n--) {
          const valType = c.valType();
          const m = c.u8();
          if (m > 1) throw new Bad();
          c.constExpr();
          globals.push({ valType, mutable: m === 1 });
        }
        break;
      case 3:
        definedFuncs = c.u32();
        break;
      case 9:
        for (let n = c.u32(); n > 0; n--) elems.push(readElem(c));
        break;
      case 13:
        if (c.u32() > 0) tags = true;
        break;
      default:
        break;
    }
  }
  return { types, importFuncTypes, importedFuncs, importedTables, importedGlobals, globals, tables, elems, tags, definedFuncs };
}

function readElem(c: Cur): ElemInfo {
  const flags = c.u32();
  if (flags > 7) throw new Bad();
  const passiveOrDecl = (flags & 1) !== 0;
  const explicitTable = (flags & 2) !== 0;
  const exprs = (flags & 4) !== 0;
  let table = 0;
  let mode: 'active' | 'passive' | 'declarative' = 'active';
  let offset: [number, number] | null = null;
  if (!passiveOrDecl) {
    if (explicitTable) table = c.u32();
    const at = c.pos;
    c.constExpr();
    offset = [at, c.pos - 1];
  } else {
    mode = explicitTable ? 'declarative' : 'passive';
  }
  // elemkind / reftype: present unless flags is 0 or 4.
  let elemType = 0x70;
  if (flags !== 0 && flags !== 4) {
    if (exprs) elemType = c.valType();
    else if (c.u8() !== 0) throw new Bad();
  }
  const itemsStart = c.pos;
  const count = c.u32();
  for (let n = count; n > 0; n--) {
    if (exprs) c.constExpr();
    else c.u32();
  }
  return { mode, table, flags, offset, elemType, exprs, items: [itemsStart, c.pos], count };
}

function fail(): never {
  throw new Bad();
}
