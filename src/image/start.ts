/**
 * What a module's start function does to memory, when that can be known
 * before it runs.
 *
 * An image for an imported memory is placed after V8 instantiated the module
 * (only then can its pages be judged by what they hold), but V8 runs the
 * start function inside instantiation, after the data would have been
 * written. A start function that may read memory, call out, or trap cannot
 * run before the data is there: such modules leave the memory to V8.
 *
 * One kind of start function is common and harmless: Emscripten builds that
 * import their memory zero their .bss in it (`memory.fill` at constant
 * offsets, or at `__memory_base` plus constants when position-independent),
 * and set a few globals. Such a function is straight-line code over i32
 * constants, locals and immutable imported globals; it reads no memory and
 * calls nothing. Evaluated here at each instantiation with the imports'
 * values, it says exactly which bytes it fills and whether a fill would
 * trap. The engine then lets V8 run it (on the memory without the data),
 * places the data, and fills those bytes again: fills write constants, so
 * the result is byte for byte V8's (data first, then the fills).
 *
 * Anything else (any other instruction, a start function that is an import,
 * locals that are not i32) makes the start function opaque.
 */
import type { ParsedModule } from '../binary/reader.js';

/** One instruction of a start function this module can evaluate. */
type Op =
  | { readonly op: 'const'; readonly value: number }
  | { readonly op: 'local.get' | 'local.set' | 'local.tee'; readonly index: number }
  | { readonly op: 'global.get'; readonly index: number; readonly imported: boolean }
  | { readonly op: 'global.set'; readonly index: number }
  | { readonly op: 'binary'; readonly code: number }
  | { readonly op: 'drop' }
  | { readonly op: 'fill'; readonly memory: number };

export type StartAnalysis =
  | { readonly kind: 'none' }
  | { readonly kind: 'opaque'; readonly why: string }
  | { readonly kind: 'fills'; readonly locals: number; readonly program: readonly Op[] };

/** A `memory.fill` the start function will do. */
export interface Fill {
  readonly memory: number;
  readonly dest: number;
  readonly value: number;
  readonly length: number;
}

const SECTION_CODE = 10;
const MAX_LOCALS = 1024;
const MAX_OPS = 4096;

/** Reads the start function's body, once, at prepare. */
export function analyzeStart(bytes: Uint8Array, parsed: ParsedModule): StartAnalysis {
  if (parsed.start === null) return { kind: 'none' };
  const importedFuncs = parsed.imports.filter((i) => i.kind === 'function').length;
  if (parsed.start < importedFuncs) return { kind: 'opaque', why: 'the start function is an import' };
  const code = parsed.sections.find((s) => s.id === SECTION_CODE);
  if (!code) return { kind: 'opaque', why: 'no code section' };
  try {
    const r = new Reader(bytes, code.contentStart, code.end);
    const count = r.u32();
    const want = parsed.start - importedFuncs;
    if (want >= count) return { kind: 'opaque', why: 'the start function has no body' };
    for (let i = 0; i < want; i++) {
      const skip = r.u32();
      r.pos += skip;
    }
    const size = r.u32();
    const body = new Reader(bytes, r.pos, r.pos + size);
    return readBody(body, parsed);
  } catch {
    return { kind: 'opaque', why: 'the start function could not be read' };
  }
}

function readBody(r: Reader, parsed: ParsedModule): StartAnalysis {
  const opaque = (why: string): StartAnalysis => ({ kind: 'opaque', why });
  let locals = 0;
  for (let groups = r.u32(); groups > 0; groups--) {
    const n = r.u32();
    if (r.u8() !== 0x7f) return opaque('a local that is not an i32');
    locals += n;
    if (locals > MAX_LOCALS) return opaque('too many locals');
  }
  const importedGlobals = parsed.imports.filter((i) => i.kind === 'global');
  const setGlobals = new Set<number>(); // defined globals this function set before reading them
  const program: Op[] = [];
  const memoryTypes = [
    ...parsed.imports.filter((i) => i.kind === 'memory').map((i) => i.memory!),
    ...parsed.memories,
  ];
  while (r.pos < r.end) {
    if (program.length > MAX_OPS) return opaque(`it has more than ${MAX_OPS} instructions, more than the engine evaluates`);
    const op = r.u8();
    switch (op) {
      case 0x01: // nop
        break;
      case 0x0b: // end: the last byte of the body
        if (r.pos !== r.end) return opaque('control flow');
        return { kind: 'fills', locals, program };
      case 0x1a:
        program.push({ op: 'drop' });
        break;
      case 0x20:
      case 0x21:
      case 0x22: {
        const index = r.u32();
        if (index >= locals) return opaque('a local out of range');
        program.push({ op: op === 0x20 ? 'local.get' : op === 0x21 ? 'local.set' : 'local.tee', index });
        break;
      }
      case 0x23: {
        const index = r.u32();
        if (index < importedGlobals.length) {
          const g = importedGlobals[index]!.global;
          if (!g || g.valType !== 0x7f || g.mutable) return opaque('it reads a global that is not an immutable imported i32');
          program.push({ op: 'global.get', index, imported: true });
        } else {
          if (!setGlobals.has(index)) return opaque('it reads a global it did not set');
          program.push({ op: 'global.get', index, imported: false });
        }
        break;
      }
      case 0x24: {
        const index = r.u32();
        if (index >= importedGlobals.length) setGlobals.add(index);
        program.push({ op: 'global.set', index });
        break;
      }
      case 0x41:
        program.push({ op: 'const', value: r.s32() >>> 0 });
        break;
      case 0x6a: // i32.add
      case 0x6b: // i32.sub
      case 0x6c: // i32.mul
      case 0x71: // i32.and
      case 0x72: // i32.or
      case 0x73: // i32.xor
      case 0x74: // i32.shl
      case 0x76: // i32.shr_u
        program.push({ op: 'binary', code: op });
        break;
      case 0xfc: {
        const sub = r.u32();
        if (sub !== 0x0b) return opaque('an instruction other than memory.fill');
        const memory = r.u32();
        const type = memoryTypes[memory];
        if (!type || type.memory64 || type.shared) return opaque('a fill of a memory that is not a 32-bit unshared one');
        program.push({ op: 'fill', memory });
        break;
      }
      default:
        return opaque(`instruction 0x${op.toString(16)}`);
    }
  }
  return opaque('the body does not end');
}

/**
 * Runs the program on the imports' values. Returns the fills it does, or
 * 'unknown' when a global it reads has no readable value, or 'traps' when a
 * fill would go past its memory's current size (`memoryBytes`, null when
 * unknown: then 'unknown').
 */
export function evaluateStart(
  analysis: Extract<StartAnalysis, { kind: 'fills' }>,
  importedGlobal: (index: number) => number | null,
  memoryBytes: (memory: number) => number | null,
): Fill[] | 'unknown' | 'traps' {
  const locals = new Array<number>(analysis.locals).fill(0);
  const globals = new Map<number, number>();
  const stack: number[] = [];
  const fills: Fill[] = [];
  const pop = (): number => {
    const v = stack.pop();
    if (v === undefined) throw new Error('wasm-cow internal error: start function stack underflow');
    return v;
  };
  for (const o of analysis.program) {
    switch (o.op) {
      case 'const':
        stack.push(o.value);
        break;
      case 'local.get':
        stack.push(locals[o.index]!);
        break;
      case 'local.set':
        locals[o.index] = pop();
        break;
      case 'local.tee':
        locals[o.index] = stack[stack.length - 1]!;
        break;
      case 'global.get': {
        const v = o.imported ? importedGlobal(o.index) : globals.get(o.index);
        if (v === null || v === undefined) return 'unknown';
        stack.push(v >>> 0);
        break;
      }
      case 'global.set':
        globals.set(o.index, pop());
        break;
      case 'drop':
        pop();
        break;
      case 'binary': {
        const b = pop();
        const a = pop();
        stack.push(binary(o.code, a, b));
        break;
      }
      case 'fill': {
        const length = pop();
        const value = pop() & 0xff;
        const dest = pop();
        const size = memoryBytes(o.memory);
        if (size === null) return 'unknown';
        if (dest + length > size) return 'traps';
        fills.push({ memory: o.memory, dest, value, length });
        break;
      }
    }
  }
  return fills;
}

function binary(code: number, a: number, b: number): number {
  switch (code) {
    case 0x6a:
      return (a + b) >>> 0;
    case 0x6b:
      return (a - b) >>> 0;
    case 0x6c:
      return Math.imul(a, b) >>> 0;
    case 0x71:
      return (a & b) >>> 0;
    case 0x72:
      return (a | b) >>> 0;
    case 0x73:
      return (a ^ b) >>> 0;
    case 0x74:
      return (a << (b & 31)) >>> 0;
    case 0x76:
      return a >>> (b & 31);
    default:
      throw new Error(`wasm-cow internal error: binary op 0x${code.toString(16)}`);
  }
}

/** A bounded LEB128 reader. */
class Reader {
  constructor(
    readonly bytes: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {
    if (end > bytes.length || pos > end) throw new RangeError('out of bounds');
  }

  u8(): number {
    if (this.pos >= this.end) throw new RangeError('unexpected end');
    return this.bytes[this.pos++]!;
  }

  u32(): number {
    let result = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.u8();
      result += (b & 0x7f) * 2 ** (7 * i);
      if ((b & 0x80) === 0) return result;
    }
    throw new RangeError('LEB128 too long');
  }

  s32(): number {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.u8();
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80 && shift < 35);
    if (b & 0x80) throw new RangeError('LEB128 too long');
    if (shift < 32 && b & 0x40) result |= -1 << shift;
    return result | 0;
  }
}
