/**
 * The snapshot's module: the original module, rewritten so that a new
 * instance starts in the captured state.
 *
 *  - Each defined memory's declared initial size becomes its size now
 *    (its maximum and flags are unchanged).
 *  - Every active data segment becomes an empty passive one (an active
 *    segment is dropped at instantiation, and a dropped segment behaves as
 *    an empty one, so code that names it sees no difference; indices are
 *    unchanged). Passive segments are copied: the caller checked that no
 *    code drops them. The captured runs are appended as new active
 *    segments, after every original one (no code names them); the data
 *    count, where there is one, counts them.
 *  - Each defined mutable global's initialiser becomes the captured
 *    constant. Immutable globals keep theirs: they cannot have changed.
 *  - The start section is removed: its effects are in the state.
 * Everything else (types, imports, functions, tables, element segments,
 * exports, code, custom sections) is copied byte for byte: the caller
 * checked that the tables still hold what the element segments put there.
 * The output is then prepared like any module: its data becomes a sealed
 * image, mapped copy-on-write into each instance.
 */
import { ByteCursor, CursorError } from '../binary/cursor.js';
import { type ParsedModule, SectionId } from '../binary/reader.js';
import { concat, u32 } from '../binary/writer.js';
import type { CapturedMemory } from './capture.js';
import { SnapshotError } from './errors.js';

/** A global the module defines: its type, mutability and where its initialiser lies in the input. */
export interface DefinedGlobal {
  /** Value type byte (0x63 / 0x64: a typed reference, heap type follows in the input). */
  readonly valType: number;
  readonly mutable: boolean;
  /** The initialiser, `end` included: [initStart, initEnd) of the input. */
  readonly initStart: number;
  readonly initEnd: number;
  /** The global's type and mutability, as they stand in the input: [typeStart, initStart). */
  readonly typeStart: number;
}

export interface SnapshotState {
  /** One per defined memory, in memory section order. */
  readonly memories: readonly CapturedMemory[];
  /** One per defined global: its new initialiser (with `end`), or null to keep it. */
  readonly globals: readonly (readonly number[] | null)[];
}

/** Reads the global section: the module's defined globals, in order. Throws SnapshotError('unparsed') on what it cannot read. */
export function definedGlobals(bytes: Uint8Array, parsed: ParsedModule): DefinedGlobal[] {
  try {
    return readGlobals(bytes, parsed);
  } catch (e) {
    if (e instanceof CursorError) unparsed();
    throw e;
  }
}

function readGlobals(bytes: Uint8Array, parsed: ParsedModule): DefinedGlobal[] {
  const section = parsed.sections.find((s) => s.id === SectionId.global);
  if (section === undefined) return [];
  const c = new Cur(bytes, section.contentStart, section.end);
  const out: DefinedGlobal[] = [];
  const n = c.u32();
  for (let i = 0; i < n; i++) {
    const typeStart = c.pos;
    const valType = c.u8();
    if (valType === 0x63 || valType === 0x64) c.skipLeb();
    const mut = c.u8();
    if (mut > 1) c.fail();
    const initStart = c.pos;
    c.constExpr();
    out.push({ valType, mutable: mut === 1, typeStart, initStart, initEnd: c.pos });
  }
  if (c.pos !== c.end) c.fail();
  return out;
}

/** The snapshot module's bytes. `bytes` and `parsed` are the original module. */
export function snapshotModule(bytes: Uint8Array, parsed: ParsedModule, globals: readonly DefinedGlobal[], state: SnapshotState): Uint8Array<ArrayBuffer> {
  const added: (Uint8Array | readonly number[])[] = [];
  let addedCount = 0;
  state.memories.forEach((m, d) => {
    const index = parsed.importedMemoryCount + d;
    for (const run of m.runs) {
      // Active: flags 0 for memory 0, else flags 2 and the memory index.
      const head = index === 0 ? [0x00] : [0x02, ...u32(index)];
      added.push([...head, 0x41, ...i32(run.offset), 0x0b, ...u32(run.bytes.length)], run.bytes);
      addedCount++;
    }
  });

  const chunks: (Uint8Array | readonly number[])[] = [bytes.subarray(0, 8)];
  const emit = (id: number, content: readonly (Uint8Array | readonly number[])[]): void => {
    const body = concat(content);
    chunks.push([id, ...u32(body.length)], body);
  };
  const dataSection = (): void => {
    const content: (Uint8Array | readonly number[])[] = [u32(parsed.data.length + addedCount)];
    for (const seg of parsed.data) content.push(seg.mode === 'active' ? EMPTY_PASSIVE : bytes.subarray(seg.start, seg.end));
    content.push(...added);
    emit(SectionId.data, content);
  };
  const hasData = parsed.sections.some((s) => s.id === SectionId.data);
  let lastOrdered = -1;
  parsed.sections.forEach((s, i) => {
    if (s.id !== SectionId.custom) lastOrdered = i;
  });

  parsed.sections.forEach((section, i) => {
    switch (section.id) {
      case SectionId.memory: {
        const content: (Uint8Array | readonly number[])[] = [u32(parsed.memories.length)];
        parsed.memories.forEach((m, d) => {
          const flags = bytes[m.limitsStart]!;
          content.push([flags, ...u32(state.memories[d]!.pages), ...(m.max !== null ? u32(m.max) : [])]);
        });
        emit(SectionId.memory, content);
        break;
      }
      case SectionId.global: {
        const content: (Uint8Array | readonly number[])[] = [u32(globals.length)];
        globals.forEach((g, k) => {
          const init = state.globals[k] ?? null;
          content.push(bytes.subarray(g.typeStart, g.initStart), init ?? bytes.subarray(g.initStart, g.initEnd));
        });
        emit(SectionId.global, content);
        break;
      }
      case SectionId.start:
        break; // its effects are in the state
      case SectionId.dataCount:
        emit(SectionId.dataCount, [u32(parsed.data.length + addedCount)]);
        break;
      case SectionId.data:
        dataSection();
        break;
      default:
        chunks.push(bytes.subarray(section.start, section.end));
    }
    // No data section: it goes after the last non-custom section (data is last in order).
    if (!hasData && i === lastOrdered && addedCount > 0) dataSection();
  });
  if (lastOrdered < 0 && addedCount > 0) dataSection();
  return concat(chunks);
}

const EMPTY_PASSIVE = [0x01, 0x00];

/** Signed LEB128 of an i32.const operand given as an unsigned offset below 2^32. */
function i32(offset: number): number[] {
  let v = offset | 0;
  const out: number[] = [];
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

/** ByteCursor over the global section, heap types (ref.null, typed references) skipped at up to 10 bytes; anything unexpected is 'unparsed'. */
class Cur extends ByteCursor {
  fail(): never {
    return unparsed();
  }
  protected override heapType(): void {
    this.skipLeb();
  }
}

function unparsed(): never {
  throw new SnapshotError('unparsed', 'the module\'s global section uses an encoding the snapshot writer does not read (for example GC constant expressions).');
}
