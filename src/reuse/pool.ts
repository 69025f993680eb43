/**
 * The instance pool of a module prepared with `{ reuse: true }`.
 *
 * A released lease's instance is reset to exactly what a fresh
 * instantiation gives and kept for the next tenant:
 *
 *  - memories: the slot's reset (the image, as for any pooled memory); a
 *    memory that grew is not reset to the wrong size, the instance is
 *    dropped;
 *  - defined mutable globals that code writes (the scanner says which;
 *    others cannot change, an exported one read from `lease.exports` drops
 *    the instance): set back to their value before the start function ran;
 *  - defined tables that code mutates: set back to their state before the
 *    start function ran, by one call of the function the rewrite appends
 *    (table-restore.ts), or, for tables of typed references, by JS
 *    table.set of every entry that differs; a table whose length changed
 *    drops the instance;
 *  - the start function: run again for each tenant, with that tenant's
 *    imports. It is exact because everything it can read is back in its
 *    pre-start state (memories, globals, tables: restored; passive
 *    segments: never dropped, plan.ts; imports: the tenant's, as in a fresh
 *    instantiation). The rewrite drops the start section and exports the
 *    function privately, so the first instance runs it the same way, after
 *    the pre-start values are read.
 *
 * Imports: function imports go through trampolines (trampoline.ts) that
 * call the current lease's function; every other import (memory, table,
 * global, tag) must be the identical object (Object.is) as the one the
 * instance was made with, else another idle instance is looked for, or a
 * new one made ('imports-differ'). When MISS_LIMIT instantiations in a row
 * found idle instances but none linked to their imports (a per-tenant
 * value: none will ever match), later misses stop making instances to
 * keep: they are linked directly and never kept, their memories return to
 * the memory pool at release, as without reuse ('imports-vary'); a hit
 * (an idle instance matches) ends the streak. A lease whose function imports V8 would
 * link directly (not plain JavaScript) gets an instance of its own, linked
 * directly ('import-not-js').
 *
 * Isolation: an instance goes to the next tenant only if nothing that could
 * outlive its lease reached the caller: raw `lease.instance`, a memory
 * object or buffer, an exported table or mutable global, a call that ended
 * by throwing, a function reference returned (lease.ts sets `exposed`).
 * Otherwise it is dropped and its memories retired ('exposed').
 */
import type { EngineCore } from '../core.js';
import type { ExposurePlan } from '../exposure.js';
import type { Lease, ReuseTenancy } from '../lease.js';
import { Lease as LeaseClass } from '../lease.js';
import type { SlotRequest } from '../pool.js';
import type { LeaseTicket, Slot } from '../slot.js';
import { bufferOf } from '../memory.js';
import { wasm } from '../wasm-api.js';
import { readInternalState } from './internal.js';
import type { ReusePlan, ReuseReason } from './plan.js';
import { type ImportObjectMaker, ReuseImportReader } from './read-imports.js';
import { isPlainFunction, type Thrown, trampoline } from './trampoline.js';

/** A released lease's ReuseTenancy.complete: it completes once. */
const COMPLETED = (): void => {};

/** Where the trampolines of an instance with no tenant record a throw (never read). */
const NOBODY: Thrown = { raw: false };

/** What the pool needs from its PreparedModule. */
export interface ReuseHost {
  readonly core: EngineCore;
  /** The compiled rewrite (private exports, no start section). */
  readonly module: WebAssembly.Module;
  readonly exposure: ExposurePlan;
  /** The module's imports in declaration order. */
  readonly importList: readonly { readonly module: string; readonly name: string }[];
  /** Our memories' import module name, or null when the module has no defined memory. */
  readonly memoryModule: string | null;
  /** Checks the module and engine are usable (throws as instantiate() does). */
  checkUsable(): void;
  /** The slot requests for the module's defined memories (images built at first use). */
  requests(): SlotRequest[];
  /** The import object V8 is given for an instance linked directly to `given` (or to `pinned`, what was read of it): with our memories. */
  readonly importObject: ImportObjectMaker;
}

interface Entry {
  readonly instance: WebAssembly.Instance;
  readonly slots: Slot[];
  readonly images: readonly SlotRequest[];
  /**
   * Per import: the current lease's function (function imports), read by
   * the trampolines; then, at index `linked.length`, where they record a
   * throw (Thrown: the lease's CallState, or a stand-in).
   */
  readonly cur: unknown[];
  /** Per import: the value linked (non-function imports), compared with Object.is. */
  readonly linked: readonly unknown[];
  readonly globals: readonly { readonly global: WebAssembly.Global; readonly value: unknown }[];
  /** Tables to restore: their length after instantiation, and their entries (when restored from JavaScript). */
  readonly tables: readonly { readonly table: WebAssembly.Table; readonly length: number; readonly entries: readonly unknown[] | null }[];
  /** Restores every table to restore in one call (table-restore.ts), or null. */
  readonly restoreTables: (() => unknown) | null;
  readonly start: (() => unknown) | null;
  /** Set when the instance must not be reused (a reason found at creation). */
  broken: ReuseReason | null;
  /** Memories it holds (counted against the engine-wide maxIdle while idle: EngineCore.keepIdle). */
  readonly memories: number;
  /** Drops it while idle (the engine-wide idle bound: 'pool-full'). */
  evict: () => void;
}

/**
 * Misses in a row (idle instances, none linked to the tenant's imports)
 * after which a miss no longer makes an instance to keep (see the header).
 */
export const MISS_LIMIT = 4;

export class InstancePool {
  readonly #host: ReuseHost;
  readonly #plan: ReusePlan;
  readonly #core: EngineCore;
  readonly #idle: Entry[] = [];
  readonly #hidden: ReadonlySet<string>;
  /** Reads each lease's imports (as V8 would, once). */
  #reader: ReuseImportReader;
  /** Indices of the function imports, and of the others. */
  readonly #functionImports: Int32Array;
  readonly #otherImports: Int32Array;
  /**
   * The last import values whose functions were all found plain, and the
   * idle instances found linked to its other values. Values arrays are
   * never written to, and the reader (read-imports.ts) returns the same
   * array when a lease's imports answer the same: identity means checked.
   * (This keeps one set of import values, the last one checked, alive.)
   */
  #plain: readonly unknown[] | null = null;
  #matched: { readonly values: readonly unknown[]; readonly entries: WeakSet<Entry> } | null = null;
  #disposed = false;
  /** Instantiations in a row that found idle instances, none linked to their imports. */
  #misses = 0;

  constructor(host: ReuseHost, plan: ReusePlan) {
    this.#host = host;
    this.#plan = plan;
    this.#core = host.core;
    this.#hidden = new Set(plan.extraExports.map((e) => e.name));
    this.#reader = new ReuseImportReader(host.importList, host.importObject);
    this.#functionImports = Int32Array.from(plan.importArity.flatMap((a, i) => (a >= 0 ? [i] : [])));
    this.#otherImports = Int32Array.from(plan.importArity.flatMap((a, i) => (a < 0 ? [i] : [])));
  }

  /** Idle instances kept. */
  get idle(): number {
    return this.#idle.length;
  }

  instantiate<T extends WebAssembly.Exports>(imports: WebAssembly.Imports | undefined): Lease<T> {
    const host = this.#host;
    host.checkUsable();
    const core = this.#core;
    core.reserve();
    let values: readonly unknown[] | null;
    let direct: (slots: readonly Slot[]) => WebAssembly.Imports | undefined;
    try {
      ({ values, direct } = this.#reader.read(imports));
      // A getter on the imports may have disposed the module or closed the engine: its typed error.
      host.checkUsable();
    } catch (e) {
      core.unreserve();
      throw e;
    }
    if (values === null || !this.#plainFunctions(values)) {
      this.#decline('import-not-js');
      return this.#direct<T>(direct);
    }
    const entry = this.#take(values);
    if (entry !== null && entry !== 'busy') {
      this.#misses = 0;
      return this.#lease<T>(entry, values, true);
    }
    if (entry === null && this.#idle.length > 0) {
      // Not kept: an instance that will not match again would only hold memories the memory pool can use.
      if (++this.#misses > MISS_LIMIT) {
        this.#decline('imports-vary');
        return this.#direct<T>(direct);
      }
      this.#decline('imports-differ');
    }
    return this.#lease<T>(this.#create(values), values, false);
  }

  /** Drops every idle instance (their memories are retired). */
  dispose(): void {
    this.#disposed = true;
    // Nothing of the last imports read stays reachable.
    this.#reader = new ReuseImportReader(this.#host.importList, this.#host.importObject);
    this.#plain = null;
    this.#matched = null;
    for (const e of this.#idle.splice(0)) {
      this.#core.unkeepIdle(e);
      this.#retire(e);
    }
  }

  /** Whether every function import is plain JavaScript (a function the last checked values had at its place was). */
  #plainFunctions(values: readonly unknown[]): boolean {
    const known = this.#plain;
    if (values === known) return true;
    const fi = this.#functionImports;
    for (let k = 0; k < fi.length; k++) {
      const i = fi[k]!;
      const v = values[i];
      if (known !== null && v === known[i]) continue;
      if (!isPlainFunction(v)) return false;
    }
    this.#plain = values;
    return true;
  }

  /**
   * An idle instance linked to the same non-function imports, settled and
   * clean, oldest first (its reset has had the longest to finish); null if
   * none; 'busy' when the only one is still being reset on the backend's
   * thread: one more instance is made rather than wait (as the memory pool
   * does), so a module used in a loop alternates between two instances.
   * With two or more still resetting, it waits for the oldest.
   */
  #take(values: readonly unknown[]): Entry | null | 'busy' {
    const idle = this.#idle;
    let matching = 0;
    let oldest = -1;
    for (let k = 0; k < idle.length; k++) {
      const e = idle[k]!;
      if (!this.#sameLinks(e, values)) continue;
      if (oldest < 0) oldest = k;
      matching++;
      if (this.#settled(e, false)) return this.#takeAt(k, values);
    }
    if (matching === 0) return null;
    if (matching === 1) return 'busy';
    this.#settled(idle[oldest]!, true);
    return this.#takeAt(oldest, values);
  }

  /** Whether every memory of `e` ended its reset (waiting for it with `wait`). */
  #settled(e: Entry, wait: boolean): boolean {
    for (const s of e.slots) if (!s.settle(wait)) return false;
    return true;
  }

  #takeAt(k: number, values: readonly unknown[]): Entry | null | 'busy' {
    const e = this.#idle.splice(k, 1)[0]!;
    this.#core.unkeepIdle(e);
    for (const s of e.slots) {
      if (s.state !== 'clean') {
        // The reset failed (the slot retired itself) or the memory grew meanwhile.
        this.#decline('reset-failed');
        this.#retire(e);
        return this.#take(values);
      }
    }
    this.#core.counters.resets += e.slots.length;
    return e;
  }

  /**
   * Whether `e` was linked to `values`' non-function imports: the same
   * values by Object.is, except NaN, which never matches (V8 keeps a NaN
   * Number's payload in a float global, and Object.is calls all NaNs the
   * same).
   */
  #sameLinks(e: Entry, values: readonly unknown[]): boolean {
    let matched = this.#matched;
    if (matched !== null && matched.values === values && matched.entries.has(e)) return true;
    const oi = this.#otherImports;
    const linked = e.linked;
    for (let k = 0; k < oi.length; k++) {
      const i = oi[k]!;
      const v = values[i];
      if (v !== v || !Object.is(linked[i], v)) return false;
    }
    if (matched === null || matched.values !== values) this.#matched = matched = { values, entries: new WeakSet() };
    matched.entries.add(e);
    return true;
  }

  /** A new instance linked to trampolines and to `values`' other imports; its start function not run yet. */
  #create(values: readonly unknown[]): Entry {
    const core = this.#core;
    const host = this.#host;
    let slots: Slot[];
    const requests = (() => {
      try {
        return host.requests();
      } catch (e) {
        core.unreserve();
        throw e;
      }
    })();
    try {
      slots = core.acquire(requests)!;
    } catch (e) {
      core.unreserve();
      throw e;
    }
    const n = values.length;
    const cur = new Array<unknown>(n + 1);
    cur[n] = NOBODY;
    const linked = new Array<unknown>(n);
    const io = Object.create(null) as Record<string, Record<string, unknown>>;
    const arity = this.#plan.importArity;
    host.importList.forEach((imp, i) => {
      const ns = (io[imp.module] ??= Object.create(null) as Record<string, unknown>);
      if (arity[i]! >= 0) ns[imp.name] = trampoline(cur, i, arity[i]!, n);
      else ns[imp.name] = linked[i] = values[i];
    });
    if (host.memoryModule !== null) {
      const ns = Object.create(null) as Record<string, unknown>;
      for (let i = 0; i < slots.length; i++) ns[i] = slots[i]!.memory;
      io[host.memoryModule] = ns;
    }
    let instance: WebAssembly.Instance;
    try {
      instance = new wasm.Instance(host.module, io as WebAssembly.Imports);
    } catch (e) {
      core.releaseSlots(slots);
      core.unreserve();
      throw e;
    }
    const state = readInternalState(instance);
    let broken: ReuseReason | null = null;
    const globals = this.#plan.restoreGlobals.map((g) => {
      const global = state.globals.get(g)!;
      const value: unknown = global.value;
      // JavaScript cannot write a NaN's payload back: a float global that starts as NaN is not restored exactly.
      if (typeof value === 'number' && Number.isNaN(value)) broken = 'nan-global';
      return { global, value };
    });
    const restoreTables = state.restoreTables;
    const tables = this.#plan.restoreTables.map((t) => {
      const table = state.tables.get(t)!;
      if (restoreTables !== null) return { table, length: table.length, entries: null };
      const entries = new Array<unknown>(table.length);
      for (let i = 0; i < entries.length; i++) entries[i] = table.get(i);
      return { table, length: entries.length, entries };
    });
    const entry: Entry = {
      instance,
      slots,
      images: requests,
      cur,
      linked,
      globals,
      tables,
      restoreTables,
      start: state.start,
      broken,
      memories: slots.length,
      evict: () => this.#evict(entry),
    };
    return entry;
  }

  /** The engine-wide idle bound drops `e`, idle here (EngineCore has already forgotten it). */
  #evict(e: Entry): void {
    const k = this.#idle.indexOf(e);
    if (k < 0) return;
    this.#idle.splice(k, 1);
    this.#decline('pool-full');
    this.#retire(e);
  }

  /** Hands `e` to a new lease with `values`' functions; runs the start function. */
  #lease<T extends WebAssembly.Exports>(e: Entry, values: readonly unknown[], reused: boolean): Lease<T> {
    const core = this.#core;
    if (reused) {
      try {
        for (let i = 0; i < e.slots.length; i++) e.slots[i]!.acquire(e.images[i]!.image);
      } catch (err) {
        // A slot that failed to take its image retired itself.
        this.#retire(e);
        core.unreserve();
        throw err;
      }
    }
    const fi = this.#functionImports;
    for (let k = 0; k < fi.length; k++) e.cur[fi[k]!] = values[fi[k]!];
    const tenancy: ReuseTenancy = {
      exposed: false,
      guarded: this.#plan.guarded,
      hidden: this.#hidden,
      fresh: this.#plan.fresh,
      complete: (ticket, slots) => this.#complete(e, tenancy, ticket, slots),
      calls: null,
    };
    // An import that throws during the start function, even if the wasm code catches it: see trampoline.ts.
    const thrown: Thrown = { raw: false };
    const n = e.linked.length;
    e.cur[n] = thrown;
    if (e.start !== null) {
      try {
        e.start();
      } catch (err) {
        // As a failed instantiation; the exception passed through the instance's frames: nothing of it is reused.
        this.#decline('start-trap');
        for (const s of e.slots) s.exposed = true;
        core.releaseSlots(e.slots);
        core.unreserve();
        e.cur[n] = NOBODY;
        throw err;
      }
    }
    core.counters.instantiations++;
    if (reused) core.counters.instancesReused++;
    const lease = new LeaseClass<T>(core, e.instance, [...e.slots], this.#host.exposure, this.#hidden, tenancy);
    const calls = tenancy.calls!;
    if (thrown.raw) calls.raw = true;
    e.cur[n] = calls;
    return lease;
  }

  /** An instance linked directly to the caller's imports: never reused. */
  #direct<T extends WebAssembly.Exports>(direct: (slots: readonly Slot[]) => WebAssembly.Imports | undefined): Lease<T> {
    const core = this.#core;
    let slots: Slot[];
    try {
      slots = core.acquire(this.#host.requests())!;
    } catch (e) {
      core.unreserve();
      throw e;
    }
    let instance: WebAssembly.Instance;
    try {
      instance = new wasm.Instance(this.#host.module, direct(slots));
      readInternalState(instance).start?.();
    } catch (e) {
      // The start function may have run: the error can hold the instance (CallSite.getThis()).
      if (this.#plan.dropStart) for (const s of slots) s.exposed = true;
      core.releaseSlots(slots);
      core.unreserve();
      throw e;
    }
    core.counters.instantiations++;
    const tenancy: ReuseTenancy = {
      exposed: false,
      guarded: this.#plan.guarded,
      hidden: this.#hidden,
      fresh: this.#plan.fresh,
      complete: (ticket, s) => core.leaseReleased(ticket, s),
      calls: null,
    };
    return new LeaseClass<T>(core, instance, slots, this.#host.exposure, this.#hidden, tenancy);
  }

  /** Release: reset and keep the instance, or drop it. */
  #complete(e: Entry, tenancy: ReuseTenancy, ticket: LeaseTicket, slots: readonly Slot[]): void {
    const core = this.#core;
    tenancy.complete = COMPLETED; // the released lease's state no longer reaches `e` (nor through it the next lease)
    ticket.open = false;
    core.live--;
    for (const s of slots) s.tenancy.lease = null;
    const why = this.#dropReason(e, tenancy);
    if (why !== null) {
      this.#decline(why);
      core.releaseSlots(e.slots); // exposed memories are retired there, others reset and pooled
      return;
    }
    // Nothing of the old tenant stays reachable from the instance.
    const fi = this.#functionImports;
    for (let k = 0; k < fi.length; k++) e.cur[fi[k]!] = undefined;
    e.cur[e.linked.length] = NOBODY;
    for (const g of e.globals) g.global.value = g.value;
    const background = core.backend.backgroundReset === true;
    let ok = true;
    for (const s of e.slots) if (s.release(background) === 'retired') ok = false;
    if (!ok) {
      this.#decline('reset-failed');
      this.#retire(e);
      return;
    }
    if (this.#disposed || core.closed) {
      this.#retire(e);
      return;
    }
    // Counted against maxIdle with every idle memory of the engine: past it,
    // the least recently released instance or memory is dropped (maybe this one).
    this.#idle.push(e);
    core.keepIdle(e);
  }

  /** Why `e` cannot serve another tenant (checked before anything is reset), or null. Restores its tables. */
  #dropReason(e: Entry, tenancy: ReuseTenancy): ReuseReason | null {
    if (e.broken !== null) return e.broken;
    if (tenancy.exposed) return 'exposed';
    for (const s of e.slots) {
      if (s.exposed) return 'exposed';
      if (bufferOf(s.memory).byteLength !== s.initialBytes) return 'grown';
    }
    for (const t of e.tables) if (t.table.length !== t.length) return 'table-grown';
    if (e.restoreTables !== null) {
      try {
        e.restoreTables();
      } catch {
        return 'reset-failed'; // cannot happen: the same segments fit at instantiation
      }
      return null;
    }
    for (const t of e.tables) {
      const table = t.table;
      const entries = t.entries!;
      for (let i = 0; i < entries.length; i++) {
        const v = entries[i];
        if (table.get(i) !== v) table.set(i, v as never);
      }
    }
    return null;
  }

  /** Drops an instance that is not leased: its memories are retired. */
  #retire(e: Entry): void {
    for (const s of e.slots) {
      if (s.state === 'retired') continue;
      s.retire();
      this.#core.counters.retiredMemories++;
    }
  }

  #decline(reason: ReuseReason): void {
    const d = this.#core.counters.reuseDeclined;
    d[reason] = (d[reason] ?? 0) + 1;
  }
}
