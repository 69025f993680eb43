/**
 * prepared.snapshot(lease): the module, rewritten so that its instances
 * start in the state the lease reached (rewrite.ts), from what the lease's
 * memories and globals hold now (capture.ts). Every check that can refuse
 * runs before anything is read or built (errors.ts lists them).
 *
 * What the state is: the instance's defined memories (contents and size),
 * its defined mutable globals, and its tables as long as they still hold
 * what the element segments put there. What it is not: anything the host
 * keeps (imported memories, tables and globals, the JS state of glue code,
 * open files, node:wasi's descriptors), which a snapshot's instance gets
 * anew from the imports it is given.
 */
import type { ParsedModule } from '../binary/reader.js';
import type { ExposurePlan } from '../exposure.js';
import { type LeaseView, leaseView, type Lease } from '../lease.js';
import { type CapturedMemory, captureMemory, constantOf } from './capture.js';
import { SnapshotError } from './errors.js';
import { type DefinedGlobal, definedGlobals, snapshotModule } from './rewrite.js';

/** What a prepared module keeps to snapshot its leases: the original module (for a snapshot: its root's). */
export interface SnapshotSource {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly parsed: ParsedModule;
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
  checkMemories(parsed);
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
  return globals.map((g, k) => {
    if (!g.mutable) return null;
    const name = exported.get(first + k);
    const what = `global ${first + k}${name === undefined ? '' : ` (export "${name}")`}`;
    const object = name === undefined ? undefined : view.instance.exports[name];
    if (!(object instanceof WebAssembly.Global)) {
      throw new SnapshotError('not-enabled', `${what} is mutable and not exported, and cannot be read.`);
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
        'memory-unreachable',
        `memory ${d} is not exported and V8 made it (the module ran as V8 would), so the engine cannot read it. ` +
          'Prepare the module with nativeWhenFaster: false, or export the memory.',
      );
    }
    return captureMemory(memory, pageSize);
  });
}
