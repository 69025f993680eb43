/**
 * prepared.snapshot(lease): the module, rewritten so that its instances
 * start in the state the lease reached (rewrite.ts), from what the lease's
 * memories and globals hold now (capture.ts). Every refusal (errors.ts
 * lists them) comes before any memory is read or anything is built.
 *
 * What the state is: the instance's defined memories (contents and size),
 * its defined mutable globals, and its tables as long as they still hold
 * what the element segments put there. What it is not: anything the host
 * keeps (imported memories, tables and globals, the JS state of glue code,
 * open files, node:wasi's descriptors), which a snapshot's instance gets
 * anew from the imports it is given.
 */
import { type CodeScan, scanCode } from '../binary/code-scan.js';
import { type ParsedModule, SectionId } from '../binary/reader.js';
import { internalGlobalName, isInternalName } from '../reuse/internal.js';
import { type ModuleInfo, readModuleInfo } from '../reuse/module-info.js';
import type { ExposurePlan } from '../exposure.js';
import { type LeaseView, leaseView, type Lease } from '../lease.js';
import { type CapturedMemory, captureMemory, constantOf } from './capture.js';
import { SnapshotError } from './errors.js';
import { type DefinedGlobal, definedGlobals, snapshotModule } from './rewrite.js';

/** What a prepared module keeps to snapshot its leases: the original module (for a snapshot: its root's). */
export interface SnapshotSource {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly parsed: ParsedModule;
  /** What the code can do (binary/code-scan.ts), scanned at the first snapshot. */
  scan?: CodeScan;
  /** The module's other sections as module-info.ts reads them (null: not understood), read at the first snapshot. */
  info?: ModuleInfo | null;
}

/** Reads the state of `lease`, an instance of the prepared module whose exposure plan is `plan`; returns the snapshot module's bytes. */
export function snapshotBytes(source: SnapshotSource, lease: Lease, plan: ExposurePlan, pageSize: number): Uint8Array<ArrayBuffer> {
  if (lease.released) throw new SnapshotError('released', 'the lease was released. Snapshot a lease before releasing it.');
  const view = leaseView(lease);
  if (view.plan !== plan) {
    throw new SnapshotError('foreign-lease', 'the lease is an instance of another prepared module. Call snapshot() on the module that made it.');
  }
  if (view.inCall) {
    throw new SnapshotError(
      'in-call',
      'a call into the instance is running: the state of its frames is not in memory. Snapshot between calls.',
    );
  }
  const { bytes, parsed } = source;
  for (const e of parsed.exports) {
    if (isInternalName(e.name)) {
      throw new SnapshotError(
        'reserved-name',
        `the module exports ${JSON.stringify(e.name)}, a name with the engine's private prefix: the engine cannot tell its own exports from the module's.`,
      );
    }
  }
  checkMemories(parsed);
  checkCode(source);
  checkTables(parsed, view);
  const globals = definedGlobals(bytes, parsed);
  const values = readGlobals(parsed, globals, view);
  const memories = readMemories(parsed, view, pageSize);
  return snapshotModule(bytes, parsed, globals, { memories, globals: values });
}

function checkMemories(parsed: ParsedModule): void {
  if (parsed.importedMemoryCount > 0) {
    throw new SnapshotError(
      'imported-memory',
      'the module imports a memory: its contents belong to the host, which passes it to each instance. Snapshots capture memories the module defines.',
    );
  }
  for (const m of parsed.memories) {
    if (m.shared) throw new SnapshotError('shared-memory', 'a memory is shared: other threads can change it while it is read.');
    if (m.memory64) throw new SnapshotError('memory64', 'a memory is 64-bit, which snapshots do not support.');
  }
}

/**
 * What the code can change that the snapshot keeps from the original
 * module: tables (left to the element segments) and passive segments
 * (copied as they were). Active segments were dropped at instantiation
 * either way, so dropping them again changes nothing.
 */
function checkCode(source: SnapshotSource): void {
  const { bytes, parsed } = source;
  const scan = (source.scan ??= scanCode(bytes, parsed));
  const info = source.info === undefined ? (source.info = readModuleInfo(bytes, parsed)) : source.info;
  const tables = parsed.imports.some((i) => i.kind === 'table') || parsed.sections.some((s) => s.id === SectionId.table);
  const passiveData = new Set(parsed.data.filter((d) => d.mode === 'passive').map((d) => d.index));
  if (scan.kind === 'unknown' || info === null) {
    if (tables || passiveData.size > 0 || parsed.sections.some((s) => s.id === SectionId.element)) {
      const why = scan.kind === 'unknown' ? `${scan.reason} at byte offset ${scan.offset}` : 'its sections could not be read';
      throw new SnapshotError(
        'unparsed',
        `the module's code could not be scanned (${why}), so whether it changed its tables or dropped segments is unknown.`,
      );
    }
    return;
  }
  if (scan.mutatedTables.size > 0) {
    throw new SnapshotError(
      'mutable-table',
      `the module's code can change table ${[...scan.mutatedTables].join(', ')} (table.set, .grow, .fill, .copy or .init), ` +
        'so its element segments may no longer describe it. Snapshots support modules whose tables only their element segments fill.',
    );
  }
  const passiveElems = new Set<number>();
  info.elems.forEach((e, i) => {
    if (e.mode === 'passive') passiveElems.add(i);
  });
  const data = [...scan.droppedData].filter((i) => passiveData.has(i));
  const elems = [...scan.droppedElems].filter((i) => passiveElems.has(i));
  if (data.length > 0 || elems.length > 0) {
    const what = [...data.map((i) => `data segment ${i}`), ...elems.map((i) => `element segment ${i}`)].join(', ');
    throw new SnapshotError(
      'dropped-segments',
      `the module's code can drop ${what} (data.drop / elem.drop), and whether it did is not visible. Snapshots support modules that keep their passive segments.`,
    );
  }
}

function checkTables(parsed: ParsedModule, view: LeaseView): void {
  const importedTables = parsed.imports.filter((i) => i.kind === 'table').length;
  for (const e of parsed.exports) {
    if (e.kind !== 'table' || e.index < importedTables) continue; // an imported table is the host's
    if (view.reached(e.name)) {
      throw new SnapshotError(
        'reachable-table',
        `the exported table "${e.name}" was handed to JS (lease.exports, lease.instance or an exception), which can change it. ` +
          'Snapshot a lease whose tables JS has not been given.',
      );
    }
  }
}

function readGlobals(parsed: ParsedModule, globals: readonly DefinedGlobal[], view: LeaseView): (number[] | null)[] {
  const first = parsed.importedGlobalCount;
  const exported = new Map<number, string>();
  for (const e of parsed.exports) if (e.kind === 'global' && !exported.has(e.index)) exported.set(e.index, e.name);
  const raw = view.instance.exports;
  return globals.map((g, k) => {
    if (!g.mutable) return null;
    const name = exported.get(first + k);
    const what = `global ${first + k}${name === undefined ? '' : ` (export "${name}")`}`;
    // The rewrite's private export, else the module's own.
    let object = raw[internalGlobalName(first + k)];
    if (!(object instanceof WebAssembly.Global) && name !== undefined) object = raw[name];
    if (!(object instanceof WebAssembly.Global)) {
      throw new SnapshotError(
        'unreachable',
        `${what} is mutable and not exported, and this instance is of the original module (the cost model ran it as V8 would, ` +
          'or V8 rejected the rewrite), which gives the engine no way to read it. Create the Engine with nativeWhenFaster: false.',
      );
    }
    return constantOf(g.valType, () => object.value, what);
  });
}

function readMemories(parsed: ParsedModule, view: LeaseView, pageSize: number): CapturedMemory[] {
  return parsed.memories.map((_, d) => {
    let memory: WebAssembly.Memory | undefined = view.memories[d];
    if (memory === undefined) {
      const e = parsed.exports.find((x) => x.kind === 'memory' && x.index === d);
      const value = e === undefined ? undefined : view.instance.exports[e.name];
      if (value instanceof WebAssembly.Memory) memory = value;
    }
    if (memory === undefined) {
      throw new SnapshotError(
        'unreachable',
        `memory ${d} is not exported and V8 made it (the module ran as V8 would), so the engine cannot read it. ` +
          'Prepare the module with nativeWhenFaster: false, or export the memory.',
      );
    }
    return captureMemory(memory, pageSize);
  });
}
