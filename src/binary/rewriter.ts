/**
 * Module rewriter.
 *
 * Produces a module that behaves as the original except that:
 *  1. Every memory the original defines is imported instead, from a private
 *     module name that no import of the original uses, as field "0", "1", ...
 *     (the defined-memory ordinal). The new imports are appended after all
 *     original imports, so imported memories keep indices 0..k-1 and the
 *     formerly defined ones keep k.., exactly as before. No other index
 *     space changes (memories have their own).
 *  2. Each active data segment listed in `convert` becomes an empty passive
 *     segment. Data indices are unchanged (entries are rewritten in place),
 *     so the data count section stays consistent. An active segment is
 *     dropped after instantiation; memory.init/data.drop on a dropped
 *     segment behave exactly as on an empty passive one, so code that uses
 *     them sees no difference.
 * Everything else, including code, custom sections and segments not in
 * `convert`, is copied byte for byte.
 *
 * The memory import's limits are copied from the memory section verbatim,
 * so the import carries exactly the declared type (and V8 validates it just
 * as it validated the definition).
 */
import { type ParsedModule, type Section, SectionId } from './reader.js';
import { concat, name, u32 } from './writer.js';
import { IndexSet } from './data-table.js';

export interface RewriteOptions {
  /** Move defined memories to imports from `memoryModule`. */
  readonly importMemories: boolean;
  /** Data segment indices to turn into empty passive segments (a Set, or an IndexSet). */
  readonly convert: { has(index: number): boolean; readonly size: number };
  /**
   * Exports to append (instance reuse, src/reuse/: the engine's private
   * view of defined mutable globals, tables and the start function). An
   * export shifts no index space; the names must not be used by the
   * module's own exports (the caller checks).
   */
  readonly extraExports?: readonly { readonly name: string; readonly kind: 'function' | 'table' | 'global'; readonly index: number }[];
  /** Leave out the start section (the engine calls the start function itself, through an extra export). */
  readonly dropStart?: boolean;
  /**
   * Entries appended at the end of the type, function (with their bodies
   * in the code section) and element index spaces: nothing existing is
   * renumbered. Types and functions need the module to have type, function
   * and code sections already. (Instance reuse: the table restore function,
   * src/reuse/table-restore.ts.)
   */
  readonly append?: {
    /** Encoded function types (0x60 ...). */
    readonly types: readonly (readonly number[])[];
    /** Type index and encoded body (locals and code, with its `end`, without the size). */
    readonly funcs: readonly { readonly type: number; readonly body: readonly number[] }[];
    /** Encoded element segments. */
    readonly elems: readonly (readonly number[])[];
  };
}

export interface RewriteResult {
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The private import module name, or null when no memory was moved. */
  readonly memoryModule: string | null;
}

const BASE_MODULE_NAME = 'wasm-cow:memory';
const EXPORT_KIND = { function: 0, table: 1, global: 3 } as const;
/** Sections that must follow the export section. */
const AFTER_EXPORT: ReadonlySet<number> = new Set([SectionId.start, SectionId.element, SectionId.dataCount, SectionId.code, SectionId.data]);

/** A module name no import of `parsed` uses. */
export function privateModuleName(parsed: ParsedModule): string {
  const used = new Set(parsed.imports.map((i) => i.module));
  let candidate = BASE_MODULE_NAME;
  for (let n = 1; used.has(candidate); n++) candidate = `${BASE_MODULE_NAME}#${n}`;
  return candidate;
}

export function rewriteModule(bytes: Uint8Array, parsed: ParsedModule, options: RewriteOptions): RewriteResult {
  const moveMemories = options.importMemories && parsed.memories.length > 0;
  const memoryModule = moveMemories ? privateModuleName(parsed) : null;

  const memoryImports: number[] = [];
  if (memoryModule !== null) {
    parsed.memories.forEach((m, i) => {
      memoryImports.push(...name(memoryModule), ...name(String(i)), 0x02);
      for (let p = m.limitsStart; p < m.limitsEnd; p++) memoryImports.push(bytes[p]!);
    });
  }

  const chunks: (Uint8Array | number[])[] = [bytes.subarray(0, 8)];
  const emitSection = (id: number, content: readonly (Uint8Array | readonly number[])[]): void => {
    const body = concat(content);
    chunks.push([id, ...u32(body.length)], body);
  };
  const extra = options.extraExports ?? [];
  const extraBytes: number[] = [];
  for (const e of extra) extraBytes.push(...name(e.name), EXPORT_KIND[e.kind], ...u32(e.index));
  let exportsEmitted = extra.length === 0 || parsed.sections.some((s) => s.id === SectionId.export);
  const emitNewExportSection = (): void => {
    emitSection(SectionId.export, [u32(extra.length), extraBytes]);
    exportsEmitted = true;
  };
  const append = options.append;
  let elemsEmitted = append === undefined || append.elems.length === 0 || parsed.sections.some((s) => s.id === SectionId.element);
  const emitNewElemSection = (): void => {
    emitSection(SectionId.element, [u32(append!.elems.length), ...append!.elems]);
    elemsEmitted = true;
  };
  /** A vector section with `extra` entries appended: the count rewritten, the entries copied. */
  const appended = (section: Section, extra: readonly (readonly number[])[]): void => {
    let p = section.contentStart;
    let count = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[p++]!;
      count += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) break;
    }
    emitSection(section.id, [u32(count + extra.length), bytes.subarray(p, section.end), ...extra]);
  };
  const hasImportSection = parsed.sections.some((s) => s.id === SectionId.import);
  let importsEmitted = !moveMemories || hasImportSection;
  const emitNewImportSection = (): void => {
    emitSection(SectionId.import, [u32(parsed.memories.length), memoryImports]);
    importsEmitted = true;
  };

  for (const section of parsed.sections) {
    // An import section that did not exist goes before the first section
    // that must follow it (anything but type and custom sections).
    if (!importsEmitted && section.id !== SectionId.custom && section.id !== SectionId.type) {
      emitNewImportSection();
    }
    // Likewise a new export section goes before the first section that must follow it.
    if (!exportsEmitted && AFTER_EXPORT.has(section.id)) emitNewExportSection();
    if (!elemsEmitted && (section.id === SectionId.dataCount || section.id === SectionId.code || section.id === SectionId.data)) emitNewElemSection();
    if (append !== undefined && section.id === SectionId.type && append.types.length > 0) {
      appended(section, append.types);
      continue;
    }
    if (append !== undefined && section.id === SectionId.function && append.funcs.length > 0) {
      appended(section, append.funcs.map((f) => u32(f.type)));
      continue;
    }
    if (append !== undefined && section.id === SectionId.code && append.funcs.length > 0) {
      appended(section, append.funcs.map((f) => [...u32(f.body.length), ...f.body]));
      continue;
    }
    if (append !== undefined && section.id === SectionId.element && append.elems.length > 0) {
      appended(section, append.elems);
      continue;
    }
    if (section.id === SectionId.import && moveMemories) {
      const count = parsed.imports.length + parsed.memories.length;
      // Skip the original count; copy the entries verbatim.
      let p = section.contentStart;
      while (bytes[p]! & 0x80) p++;
      p++;
      emitSection(SectionId.import, [u32(count), bytes.subarray(p, section.end), memoryImports]);
    } else if (section.id === SectionId.export && extra.length > 0) {
      const count = parsed.exports.length + extra.length;
      let p = section.contentStart;
      while (bytes[p]! & 0x80) p++;
      p++;
      emitSection(SectionId.export, [u32(count), bytes.subarray(p, section.end), extraBytes]);
    } else if (section.id === SectionId.start && options.dropStart === true) {
      // Left out: the caller runs the start function itself.
    } else if (section.id === SectionId.memory && moveMemories) {
      // Dropped: its memories are now imports.
    } else if (section.id === SectionId.data && options.convert.size > 0) {
      chunks.push(dataSection(bytes, parsed, options.convert));
    } else {
      chunks.push(bytes.subarray(section.start, section.end));
    }
  }
  if (!importsEmitted) emitNewImportSection();
  if (!exportsEmitted) emitNewExportSection();
  if (!elemsEmitted) emitNewElemSection();
  return { bytes: concat(chunks), memoryModule };
}

/**
 * The data section with the segments in `convert` made empty and passive
 * (flags 1, length 0), the others copied: built in one buffer, with no
 * object or copy per segment (a Go module has about 100,000 segments).
 * Runs of consecutive kept entries are copied at once.
 */
function dataSection(bytes: Uint8Array, parsed: ParsedModule, convert: RewriteOptions['convert']): Uint8Array {
  const table = parsed.dataTable;
  const n = table.length;
  const count = u32(n);
  let size = count.length;
  let converted: Uint8Array;
  if (convert instanceof IndexSet && convert.marks.length === n) converted = convert.marks;
  else {
    converted = new Uint8Array(n);
    for (let i = 0; i < n; i++) if (convert.has(i)) converted[i] = 1;
  }
  const { start, dataEnd } = table;
  for (let i = 0; i < n; i++) size += converted[i] === 1 ? 2 : dataEnd[i]! - start[i]!;
  const head = u32(size);
  const out = new Uint8Array(1 + head.length + size);
  out[0] = SectionId.data;
  out.set(head, 1);
  let pos = 1 + head.length;
  out.set(count, pos);
  pos += count.length;
  for (let i = 0; i < n; ) {
    if (converted[i] === 1) {
      out[pos++] = 0x01;
      out[pos++] = 0x00;
      i++;
      continue;
    }
    // Entries are contiguous: copy the run of kept ones in one go.
    const from = start[i]!;
    let j = i + 1;
    while (j < n && converted[j] === 0) j++;
    const to = dataEnd[j - 1]!;
    out.set(bytes.subarray(from, to), pos);
    pos += to - from;
    i = j;
  }
  return out;
}
