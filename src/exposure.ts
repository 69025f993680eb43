/**
 * What an instance of a module can hand to JavaScript that reaches its
 * memories without going through `lease.exports`' revocable wrappers.
 *
 * The engine lets a pooled memory serve the next tenant only when nothing
 * the released lease handed out can still reach it (docs/guarantees.md,
 * "What a release revokes"). The instance's own function objects (the
 * genuine exports) run on its memories and cannot be revoked, so every path
 * by which one of them can reach JS counts:
 *
 *  - an exported table or global whose type can hold a function reference
 *    (`table.get`, `global.value`);
 *  - an exported function whose results can (it returns a function);
 *  - the module's imports: a function import with a parameter that can hold
 *    a function reference (wasm passes its own function to the host), an
 *    imported table or mutable global of such a type (wasm stores its own
 *    function there), a tag with such a parameter that JS can name
 *    (imported or exported: a caught exception's payload).
 *
 * The first two are decided when the export is handed out (lease.ts); the
 * last makes every instance of the module count as exposed from the start.
 *
 * "Can hold a function reference": `funcref` and every typed reference but
 * those to `extern` / `noextern`. An `externref` holds only what JS put in
 * it unless the module uses GC types (which can wrap a struct holding a
 * function as an extern): a module with any type other than a plain
 * function type is treated as exposed from the start. So is a module this
 * reader does not understand.
 */
import { ByteCursor, CursorError } from './binary/cursor.js';
import type { ParsedModule } from './binary/reader.js';

export interface ExposurePlan {
  /** Every instance counts as exposed from instantiation (see above). */
  readonly atInstantiation: boolean;
  /** Exports that can carry the instance's own functions out (tables, globals, functions returning them). */
  readonly rawExports: ReadonlySet<string>;
  /** Names of the exported memories, in export order. */
  readonly memoryExports: readonly string[];
}

/** For a module we could not read: nothing it hands out is trusted. */
export const ALL_RAW: ExposurePlan = { atInstantiation: true, rawExports: new Set(), memoryExports: [] };

/** Anything this reader does not understand (analyzeExposure answers ALL_RAW). */
class Unknown extends CursorError {
  constructor() {
    super('invalid', 'not understood by the exposure reader', -1);
  }
}

class Cur extends ByteCursor {
  /** The heap type of the last typed reference valType() read. */
  private heap = 0;
  protected override heapType(): void {
    this.heap = this.s33();
  }
  /**
   * A value type: whether it can hold a function reference. Numbers,
   * `externref` and references to extern / noextern cannot.
   */
  holdsFunctions(): boolean {
    const t = this.valType(); // numbers, v128, 0x63 / 0x64 and 0x69..0x74; anything else throws
    if (t >= 0x7b && t <= 0x7f) return false; // i32 i64 f32 f64 v128
    if (t === 0x6f || t === 0x72) return false; // externref, nullexternref
    if (t === 0x63 || t === 0x64) return this.heap !== -0x11 && this.heap !== -0x0e; // (ref null? extern / noextern)
    return true; // funcref and the other abstract references
  }
}

interface FuncType {
  readonly paramsHoldFunctions: boolean;
  readonly resultsHoldFunctions: boolean;
}

/** The exposure plan of a module `parseModule` read. */
export function analyzeExposure(bytes: Uint8Array, parsed: ParsedModule): ExposurePlan {
  try {
    return analyze(bytes, parsed);
  } catch {
    return ALL_RAW; // not understood (Unknown), or anything else: trust nothing
  }
}

function analyze(bytes: Uint8Array, parsed: ParsedModule): ExposurePlan {
  const types: FuncType[] = [];
  const funcs: FuncType[] = [];
  const tables: boolean[] = [];
  const globals: boolean[] = [];
  const tags: boolean[] = [];
  const rawExports = new Set<string>();
  const memoryExports: string[] = [];
  let atInstantiation = false;
  const typeOf = (i: number): FuncType => types[i] ?? failUnknown();

  for (const sec of parsed.sections) {
    const c = new Cur(bytes, sec.contentStart, sec.end);
    switch (sec.id) {
      case 1: {
        for (let n = c.u32(); n > 0; n--) {
          if (c.u8() !== 0x60) throw new Unknown(); // GC types: see the header
          let params = false;
          for (let k = c.u32(); k > 0; k--) params = c.holdsFunctions() || params;
          let results = false;
          for (let k = c.u32(); k > 0; k--) results = c.holdsFunctions() || results;
          types.push({ paramsHoldFunctions: params, resultsHoldFunctions: results });
        }
        break;
      }
      case 2: {
        for (let n = c.u32(); n > 0; n--) {
          c.name();
          c.name();
          const kind = c.u8();
          if (kind === 0) {
            const t = typeOf(c.u32());
            funcs.push(t);
            if (t.paramsHoldFunctions) atInstantiation = true;
          } else if (kind === 1) {
            const holds = c.holdsFunctions();
            c.limits();
            tables.push(holds);
            if (holds) atInstantiation = true;
          } else if (kind === 2) {
            c.limits();
          } else if (kind === 3) {
            const holds = c.holdsFunctions();
            const mutable = c.u8() === 1;
            globals.push(holds);
            if (holds && mutable) atInstantiation = true;
          } else if (kind === 4) {
            c.u8();
            const holds = typeOf(c.u32()).paramsHoldFunctions;
            tags.push(holds);
            if (holds) atInstantiation = true;
          } else {
            throw new Unknown();
          }
        }
        break;
      }
      case 3:
        for (let n = c.u32(); n > 0; n--) funcs.push(typeOf(c.u32()));
        break;
      case 4:
        for (let n = c.u32(); n > 0; n--) {
          let withInit = false;
          if (c.b[c.pos] === 0x40) {
            c.u8();
            if (c.u8() !== 0) throw new Unknown();
            withInit = true;
          }
          tables.push(c.holdsFunctions());
          c.limits();
          if (withInit) c.constExpr();
        }
        break;
      case 6:
        for (let n = c.u32(); n > 0; n--) {
          globals.push(c.holdsFunctions());
          c.u8();
          c.constExpr();
        }
        break;
      case 13:
        for (let n = c.u32(); n > 0; n--) {
          c.u8();
          tags.push(typeOf(c.u32()).paramsHoldFunctions);
        }
        break;
      default:
        break;
    }
  }
  for (const e of parsed.exports) {
    switch (e.kind) {
      case 'function':
        if ((funcs[e.index] ?? failUnknown()).resultsHoldFunctions) rawExports.add(e.name);
        break;
      case 'table':
        if (tables[e.index] ?? failUnknown()) rawExports.add(e.name);
        break;
      case 'global':
        if (globals[e.index] ?? failUnknown()) rawExports.add(e.name);
        break;
      case 'memory':
        memoryExports.push(e.name);
        break;
      case 'tag':
        if (tags[e.index] ?? failUnknown()) atInstantiation = true;
        break;
    }
  }
  return { atInstantiation, rawExports, memoryExports };
}

function failUnknown(): never {
  throw new Unknown();
}
