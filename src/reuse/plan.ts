/**
 * Whether a module's instances can be reused (reset and handed to the next
 * tenant), decided at prepare from the module alone.
 *
 * A reused instance must be exactly what a fresh instantiation gives. The
 * engine restores: the memories it supplies (their image, as any pooled
 * memory), every defined mutable global code writes, every defined table
 * code mutates, and it runs the start function again. So a module is
 * eligible only when everything else an instance holds cannot change, or is
 * the caller's own (imports):
 *
 *  - 'unparsed' / 'unsupported-types': the module could not be read, or has
 *    types beyond plain function types (GC);
 *  - 'scanner-unknown': some instruction is not known to the scanner
 *    (src/binary/code-scan.ts), so what code mutates is unknown;
 *  - 'shared-memory': a shared memory (other threads can hold it);
 *  - 'memory-not-pooled': a defined memory the engine does not supply with
 *    a fixed image (memory64, data V8 must apply at each instantiation,
 *    position-independent data);
 *  - 'imported-memory-data' / 'imported-table-elements': active data or
 *    element segments aimed at an imported memory or table (a fresh
 *    instantiation writes them into the caller's object again);
 *  - 'dropped-segment': code drops a passive data or element segment
 *    (data.drop, elem.drop): a dropped segment cannot be restored;
 *  - 'v128-global': a mutable v128 global (JavaScript cannot write one);
 *  - 'exposure': the module's imports can pass its functions out
 *    (src/exposure.ts): every instance is handed out at instantiation;
 *  - 'duplicate-import': the same (module, name) is imported twice (each
 *    import gets its own trampoline, keyed by name);
 *  - 'reserved-name': an export already uses the engine's private prefix;
 *  - 'rewrite-rejected': V8 rejected the rewrite.
 */
import type { ParsedModule } from '../binary/reader.js';
import type { CodeFacts } from '../binary/code-scan.js';
import { scanCode } from '../binary/code-scan.js';
import type { MemoryPlan } from '../image/analyze.js';
import type { ExposurePlan } from '../exposure.js';
import { readModuleInfo, type ModuleInfo } from './module-info.js';
import { tableRestore, type TableRestorer } from './table-restore.js';
import { type ExtraExport, internalExports, isInternalName } from './internal.js';

/** Why a module, or one instantiation, was not served by a reused instance. Stable strings. */
export type ReuseReason =
  // decided at prepare (counted at each instantiation of the module)
  | 'unparsed'
  | 'unsupported-types'
  | 'scanner-unknown'
  | 'shared-memory'
  | 'memory-not-pooled'
  | 'imported-memory-data'
  | 'imported-table-elements'
  | 'dropped-segment'
  | 'v128-global'
  | 'exposure'
  | 'duplicate-import'
  | 'reserved-name'
  | 'rewrite-rejected'
  // decided per instantiation or at release
  | 'import-not-js'
  | 'imports-differ'
  | 'imports-vary'
  | 'exposed'
  | 'grown'
  | 'table-grown'
  | 'nan-global'
  | 'start-trap'
  | 'reset-failed'
  | 'pool-full';

/** What reuse needs from the module, when eligible. */
export interface ReusePlan {
  readonly info: ModuleInfo;
  readonly facts: CodeFacts;
  /** The private exports to add (and the start section is dropped when the module has one). */
  readonly extraExports: readonly ExtraExport[];
  readonly dropStart: boolean;
  /** Defined mutable globals code writes: restored at release (global indices). */
  readonly restoreGlobals: readonly number[];
  /** Defined tables code mutates: restored at release (table indices). */
  readonly restoreTables: readonly number[];
  /** What the rewrite appends for restoring them in one wasm call (table-restore.ts), or null (JavaScript restore). */
  readonly append: TableRestorer['append'] | null;
  /** Per import (declaration order): its kind. */
  readonly importKinds: readonly string[];
  /** Arity (parameter count) of each import; -1 for imports that are not functions. */
  readonly importArity: readonly number[];
  /**
   * Exports that hand out an object the next tenant would share: defined
   * tables, mutable globals, tags, and immutable globals of a reference
   * type. Reading one keeps the instance from the next tenant.
   */
  readonly guarded: ReadonlySet<string>;
  /**
   * Exported defined immutable globals of a number type, with that type:
   * each lease hands out a Global of its own holding the same value.
   */
  readonly fresh: ReadonlyMap<string, 'i32' | 'i64' | 'f32' | 'f64'>;
}

const NUMBER_TYPES = new Map<number, 'i32' | 'i64' | 'f32' | 'f64'>([
  [0x7f, 'i32'],
  [0x7e, 'i64'],
  [0x7d, 'f32'],
  [0x7c, 'f64'],
]);

export type ReuseDecision = { readonly enabled: true; readonly plan: ReusePlan } | { readonly enabled: false; readonly reason: ReuseReason; readonly detail: string };

const no = (reason: ReuseReason, detail: string): ReuseDecision => ({ enabled: false, reason, detail });

export function planReuse(bytes: Uint8Array, parsed: ParsedModule, plans: readonly MemoryPlan[], exposure: ExposurePlan, memoriesMovable: boolean): ReuseDecision {
  const info = readModuleInfo(bytes, parsed);
  if (info === null) return no('unsupported-types', 'the module has types or sections instance reuse does not read (GC types?)');
  const facts = scanCode(bytes, parsed);
  if (facts.kind === 'unknown') return no('scanner-unknown', `${facts.reason} at byte offset ${facts.offset}`);
  for (const imp of parsed.imports) if (imp.memory?.shared) return no('shared-memory', 'an imported memory is shared');
  for (const m of parsed.memories) if (m.shared) return no('shared-memory', 'a defined memory is shared');
  if (parsed.memories.length > 0 && !memoriesMovable) return no('memory-not-pooled', 'the module’s memories cannot be supplied by the engine');
  for (const p of plans) {
    if (p.imported) continue;
    if (p.excluded !== null) return no('memory-not-pooled', `memory ${p.index} has no image: ${p.excluded.message}`);
    if (p.condition !== null) return no('memory-not-pooled', `memory ${p.index}'s image depends on the imports (${p.condition})`);
  }
  const data = parsed.dataTable; // columns: no object per segment (a Go module has 100,000)
  for (let i = 0; i < data.length; i++) {
    if (data.passive[i] === 0 && data.memory[i]! < parsed.importedMemoryCount) {
      return no('imported-memory-data', `data segment ${i} is written into imported memory ${data.memory[i]} at each instantiation`);
    }
  }
  for (const [i, e] of info.elems.entries()) {
    if (e.mode === 'active' && e.table < info.importedTables) {
      return no('imported-table-elements', `element segment ${i} is written into imported table ${e.table} at each instantiation`);
    }
  }
  for (const d of facts.droppedData) {
    if (d < data.length && data.passive[d] === 1 && data.dataEnd[d]! > data.dataStart[d]!) return no('dropped-segment', `code drops passive data segment ${d} (data.drop)`);
  }
  for (const e of facts.droppedElems) {
    if (info.elems[e]?.mode === 'passive') return no('dropped-segment', `code drops passive element segment ${e} (elem.drop)`);
  }
  const restoreGlobals: number[] = [];
  for (const [i, g] of info.globals.entries()) {
    if (!g.mutable) continue;
    const index = info.importedGlobals + i;
    if (g.valType === 0x7b) return no('v128-global', `global ${index} is a mutable v128`);
    if (facts.globalSets.has(index)) restoreGlobals.push(index);
  }
  const restoreTables = [...facts.mutatedTables].filter((t) => t >= info.importedTables).sort((a, b) => a - b);
  if (exposure.atInstantiation) return no('exposure', 'the module’s imports (or tags, or types) can pass its functions out');
  const seen = new Set<string>();
  for (const imp of parsed.imports) {
    const key = `${imp.module}\u0000${imp.name}`;
    if (seen.has(key)) return no('duplicate-import', `"${imp.module}"."${imp.name}" is imported more than once`);
    seen.add(key);
  }
  for (const e of parsed.exports) if (isInternalName(e.name)) return no('reserved-name', `export ${JSON.stringify(e.name)} uses the engine’s private prefix`);

  const guarded = new Set<string>();
  const fresh = new Map<string, 'i32' | 'i64' | 'f32' | 'f64'>();
  const importedTags = parsed.imports.filter((i) => i.kind === 'tag').length;
  for (const e of parsed.exports) {
    if (e.kind === 'table' && e.index >= info.importedTables) guarded.add(e.name);
    if (e.kind === 'tag' && e.index >= importedTags) guarded.add(e.name);
    if (e.kind === 'global' && e.index >= info.importedGlobals) {
      const g = info.globals[e.index - info.importedGlobals];
      const type = g === undefined ? undefined : NUMBER_TYPES.get(g.valType);
      if (g === undefined || g.mutable || type === undefined) guarded.add(e.name);
      else fresh.set(e.name, type);
    }
  }
  let f = 0;
  const importArity = parsed.imports.map((imp) => (imp.kind === 'function' ? info.importFuncTypes[f++]!.params : -1));
  const dropStart = parsed.start !== null;
  const restorer = tableRestore(bytes, info, restoreTables);
  const extraExports = internalExports(parsed, info, dropStart);
  if (restorer !== null) extraExports.push(restorer.export);
  return {
    enabled: true,
    plan: {
      info,
      facts,
      extraExports,
      append: restorer?.append ?? null,
      dropStart,
      restoreGlobals,
      restoreTables,
      importKinds: parsed.imports.map((i) => i.kind),
      importArity,
      guarded,
      fresh,
    },
  };
}
