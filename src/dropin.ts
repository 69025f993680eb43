/**
 * The drop-in `instantiate(bytes, imports)`: a bounded, content-addressed
 * cache of the modules it has seen, shared by all drop-in calls.
 *
 * Later calls are recognised byte for byte, so a copy of the bytes must be
 * kept, and the caller may change its buffer once a call returns. A fresh
 * copy costs about 0.7 ms per MiB here (page faults, not memcpy): 15-25% of
 * V8's own call for esbuild, swc or ffmpeg, however much of it is code. So
 * no call pays for a copy it does not win back in the same call:
 *
 *  - The first call on some bytes is `WebAssembly.instantiate(bytes,
 *    imports)` itself; it notes the bytes' length, a sampled hash and, from
 *    a walk of the section headers (a few dozen reads), whether they are
 *    mostly code. For such bytes it holds the module V8 compiled, which
 *    costs no time: V8 then compiles equal bytes again, synchronously, from
 *    its own cache of native modules (it compares the bytes itself: a
 *    fraction of a compile) for as long as that module lives.
 *  - The second call on bytes mostly of code (same length and sampled hash)
 *    compiles them with `new WebAssembly.Module(bytes)`, which V8 serves
 *    from that cache, and copies them right after (no JavaScript between:
 *    the copy is what V8 compiled): together well under V8's asynchronous
 *    compile (which never uses the cache). Other bytes (mostly data: V8
 *    compiles little, so the copy would be a large part of the call) are
 *    instantiated natively at the second call, and copied after it returns,
 *    on a later turn of the event loop; since the caller may have changed
 *    them by then, the kept module is compiled again from the copy (V8's
 *    asynchronous compile, off the main thread: little code).
 *  - Either way the module is then prepared on a later turn of the event
 *    loop, and later calls on the same bytes (length, sampled hash, then
 *    every byte) compile nothing: they instantiate the kept module, or, once
 *    prepared, go through the prepared module where its image in a new
 *    memory beats V8's copy (new memories each time: nothing is pooled).
 *
 * `result.module` is always the caller's module as V8 compiled it (never
 * wasm-cow's rewrite): `WebAssembly.Module.imports()` lists its own imports
 * and `new WebAssembly.Instance(result.module, imports)` works. From the
 * third call on the same bytes, it is the same Module object each time
 * (natively each call compiles a new one). Every call reads the imports
 * when V8 would: on a later turn of the event loop, after its asynchronous
 * compile. V8 is called through the functions as they were before anything
 * replaced the globals (wasm-api.ts): a program may install this as
 * `WebAssembly.instantiate`, and the register hook replaces them.
 */
import { afterCompile, laterTurn } from './later-turn.js';
import { bufferView } from './buffer-source.js';
import { CODE_SHARE, codeShare } from './code-share.js';
import { coreOf, type Engine } from './engine.js';
import { EngineClosedError } from './errors.js';
import { type Imports, newMemoryWins, PreparedModule, planModule } from './prepared.js';
import { wasm } from './wasm-api.js';

export { CODE_SHARE, codeShare } from './code-share.js';

/** Turns of the event loop a background step (copy, preparation) waits for no drop-in call to be in flight, at most. */
const QUIET_TURNS = 64;

/** Entries kept, and bytes of module kept over all entries; least recently used go first. */
export const DROP_IN_LIMITS = { entries: 16, bytes: 256 * 1024 * 1024 } as const;

interface Entry {
  readonly hash: number;
  readonly length: number;
  /** Bytes counted against DROP_IN_LIMITS.bytes for what it holds (its length once it holds a module or bytes). */
  held: number;
  /** The bytes and the module V8 compiled from them; null while only seen. */
  bytes: Buffer | null;
  /**
   * Once kept: the module V8 compiled from `bytes`. While only seen, for
   * bytes mostly of code: the module of the first call, held so that V8
   * compiles equal bytes again from its cache (never taken for the bytes:
   * V8 compares them).
   */
  module: WebAssembly.Module | null;
  /**
   * 'seen': one call so far (nothing copied); 'copying': the second call is
   * running (or its copy is scheduled); 'kept': bytes and module kept;
   * 'preparing': preparation scheduled; 'prepared': use `prepared`;
   * 'native': preparing brought nothing (or failed): instantiate `module`.
   */
  state: 'seen' | 'copying' | 'kept' | 'preparing' | 'prepared' | 'native';
  prepared: PreparedModule | null;
}

/** What a second call on bytes mostly of code does (counted, for tests and benchmarks). */
export interface DropInCounts {
  /** Second calls compiled from V8's cache and copied at the call (bytes mostly of code). */
  cachedCompiles: number;
  /** Second calls left to V8, the bytes copied and compiled again after the call returned (mostly data). */
  deferredCopies: number;
  /** Deferred copies dropped: the caller's bytes had changed (or been detached) by then, or V8 rejected the copy. */
  deferredDropped: number;
}

/**
 * The bytes of a BufferSource as V8 reads them (internal slots, never
 * shadowable properties), without copying; null for anything V8 would not
 * take as it is (it then throws its own TypeError) and for shared memory
 * (left to V8).
 */
function viewOf(source: unknown): Buffer | null {
  const view = bufferView(source);
  if (view === null || view.shared) return null;
  return Buffer.from(view.bytes.buffer, view.bytes.byteOffset, view.bytes.byteLength);
}

/**
 * A cheap hash of some of the bytes: the length, the first and last 64
 * bytes and 32 samples of 8 bytes between (FNV-1a); about 700 bytes read,
 * which the first, still interpreted, call does in well under 0.1 ms. Equal
 * bytes hash equal; it only narrows the search: a match is confirmed byte
 * for byte, and bytes merely seen are never taken for any others.
 */
export function sampledHash(b: Uint8Array): number {
  let h = 0x811c9dc5 ^ b.length;
  const mix = (from: number, to: number): void => {
    for (let i = from; i < to; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  };
  const n = b.length;
  if (n <= 1024) {
    mix(0, n);
    return h >>> 0;
  }
  mix(0, 64);
  const step = Math.floor((n - 128) / 32);
  for (let k = 0; k < 32; k++) {
    const at = 64 + k * step;
    mix(at, at + 8);
  }
  mix(n - 64, n);
  return h >>> 0;
}

/** What prepares a kept module: a PreparedModule of `bytes` (`original`: V8's module of them), or null when none is made. */
export type DropInPrepare = (
  engine: Engine,
  bytes: Uint8Array<ArrayBuffer>,
  original: WebAssembly.Module,
  /** Resolves on a turn with no drop-in call in flight: what to await before more synchronous work. */
  quiet: () => Promise<void>,
) => PreparedModule | null | Promise<PreparedModule | null>;

/**
 * Prepares a kept module as the register hook does: the rewrite is planned
 * here (on the main thread) and compiled by V8 asynchronously, off it (a
 * synchronous compile would stall the program's event loop for as long as
 * V8's compile of the module, which V8 itself does off the main thread for
 * WebAssembly.instantiate). Null when there is nothing to rewrite or V8
 * rejects the rewrite: the kept module is then as fast.
 */
export async function prepareInBackground(
  engine: Engine,
  bytes: Uint8Array<ArrayBuffer>,
  original: WebAssembly.Module,
  quiet: () => Promise<void> = () => Promise.resolve(),
): Promise<PreparedModule | null> {
  const core = coreOf(engine);
  core.checkOpen('prepare()');
  const plan = planModule(core, bytes);
  // Only where new memories with the image beat V8's copy (newMemory.mode
  // 'image', which the cache asks for): not for images only for memories
  // the module imports (the drop-in instantiates asynchronously, which never
  // takes those: see conditional.ts), nor for too little data, nor for
  // images resolved per instantiation (conditional: never 'image'). No compile.
  if (plan.rewritten === null || !newMemoryWins(core, plan) || plan.plans.some((p) => p.condition !== null && p.excluded === null)) return null;
  let module: WebAssembly.Module;
  try {
    module = await wasm.compile(plan.rewritten.bytes);
  } catch {
    return null;
  }
  // Making the image is synchronous too: not inside a call that began
  // while V8 compiled.
  await quiet();
  core.checkOpen('prepare()'); // closed meanwhile
  return new PreparedModule(core, bytes, { plan, compiled: { bytes: plan.rewritten.bytes, module }, original });
}


export class DropInCache {
  readonly #engine: () => Engine;
  readonly #prepare: DropInPrepare;
  /** Least recently used first. */
  readonly #entries = new Map<Entry, true>();
  #bytes = 0;
  /** Preparations scheduled or running. */
  readonly #pending = new Set<Promise<void>>();
  /** `length:hash` of the first calls running (the one that will note its bytes). */
  readonly #firstCalls = new Set<string>();
  /** Drop-in calls started and not settled. */
  #inFlight = 0;

  constructor(engine: () => Engine, prepare: DropInPrepare) {
    this.#engine = engine;
    this.#prepare = prepare;
  }

  /** Resolves once no preparation is scheduled or running (for tests and benchmarks). */
  async settled(): Promise<void> {
    // Turns of the event loop while waiting: the jobs' own immediates do not
    // keep the process alive (unref'd: a program that is done never waits
    // for them), these do.
    while (this.#pending.size > 0) await Promise.race([Promise.allSettled([...this.#pending]), afterCompile()]);
  }

  /** Entries kept now (for tests). */
  get size(): number {
    return this.#entries.size;
  }

  /** What second calls did so far (for tests and benchmarks). */
  readonly counts: DropInCounts = { cachedCompiles: 0, deferredCopies: 0, deferredDropped: 0 };

  async instantiate(source: BufferSource, imports?: Imports): Promise<WebAssembly.WebAssemblyInstantiatedSource> {
    this.#inFlight++;
    try {
      return await this.#call(source, imports);
    } finally {
      this.#inFlight--;
    }
  }

  /**
   * Resolves on a later turn of the event loop with no drop-in call in
   * flight (or after QUIET_TURNS turns, so that calls that never stop still
   * get their preparation). A copy, a plan or an image is synchronous work
   * on the caller's thread: started while a call awaits its own later turn,
   * it would run inside that call (calls 3 and 4 measured up to 1.1x and
   * 1.6x native so). The turns are unref'd: a program that is done never
   * waits for them.
   */
  #quiet(): Promise<void> {
    return new Promise<void>((resolve) => {
      let turns = 0;
      const check = (): void => {
        if (this.#inFlight === 0 || ++turns >= QUIET_TURNS) resolve();
        else laterTurn(check).unref();
      };
      laterTurn(check).unref();
    });
  }

  async #call(source: BufferSource, imports?: Imports): Promise<WebAssembly.WebAssemblyInstantiatedSource> {
    const view = viewOf(source);
    if (view === null || view.length === 0) return wasm.instantiate(source, imports);
    const hash = sampledHash(view);
    const entry = this.#find(view, hash);
    if (entry === null || entry.state === 'copying') {
      // Exactly native: the first call on these bytes (or one while the
      // second is still running). Of first calls made at once on the same
      // length and hash, only the earliest notes them: one entry (and one
      // held module) per content, not one per call.
      const key = entry === null ? `${view.length}:${hash}` : null;
      const notes = key !== null && !this.#firstCalls.has(key);
      if (notes) this.#firstCalls.add(key!);
      const code = notes && codeShare(view) >= CODE_SHARE;
      let result: WebAssembly.WebAssemblyInstantiatedSource;
      try {
        result = await wasm.instantiate(source, imports);
      } finally {
        if (notes) this.#firstCalls.delete(key!);
      }
      if (notes) {
        const seen: Entry = { hash, length: view.length, held: 0, bytes: null, module: code ? result.module : null, state: 'seen', prepared: null };
        if (code) this.#hold(seen); // the module it holds
        this.#add(seen);
      }
      return result;
    }
    if (entry.state === 'seen') {
      return entry.module !== null ? this.#secondFromCache(entry, source, view, imports) : this.#secondDeferred(entry, source, view, imports);
    }
    const module = entry.module!;
    // V8 took the bytes at the call (as the comparison above did), but reads
    // the imports only once its asynchronous compile is done: after the
    // caller's synchronous code and the microtasks already queued. So does
    // this, though it compiles nothing.
    await afterCompile();
    if (entry.state === 'prepared') {
      let called = false;
      const v8 = (m: WebAssembly.Module, i: Imports | undefined): Promise<WebAssembly.Instance> => {
        called = true;
        return wasm.instantiate(m, i);
      };
      try {
        return { module, instance: await entry.prepared!.instantiateUnpooled(imports, v8) };
      } catch (e) {
        if (called) throw e; // V8's own error (link, trap, start function): the caller's to see
        // The engine failed before V8 ran (a memory or mapping it could not
        // make): V8 instantiates the kept module instead, as natively.
        if (e instanceof EngineClosedError) entry.state = 'native'; // for good
        else coreOf(this.#engine()).fallback('dropin-engine-error');
      }
    }
    return { module, instance: await wasm.instantiate(module, imports) };
  }

  /**
   * The second call on bytes mostly of code, while the first call's module
   * is held: `new WebAssembly.Module(bytes)` (which V8 serves from its cache
   * of native modules when the bytes equal that module's, and compiles in
   * full otherwise: the result is V8's either way), then a copy of the bytes
   * with no JavaScript between, so that the kept copy is what V8 compiled.
   */
  async #secondFromCache(entry: Entry, source: BufferSource, view: Buffer, imports: Imports | undefined): Promise<WebAssembly.WebAssemblyInstantiatedSource> {
    let module: WebAssembly.Module;
    try {
      module = new wasm.Module(view as Buffer<ArrayBuffer>); // viewOf() leaves shared memory to V8
    } catch {
      // V8's own rejection, with the message WebAssembly.instantiate gives.
      return wasm.instantiate(source, imports);
    }
    let copy: Buffer | null = null;
    try {
      copy = Buffer.allocUnsafeSlow(view.length); // its own ArrayBuffer, never a pooled slab
    } catch {
      // No memory for a copy: nothing is kept, the call goes on as V8's would.
    }
    if (copy !== null) {
      view.copy(copy);
      this.counts.cachedCompiles++;
      this.#keep(entry, copy, module, false);
    }
    await afterCompile(); // the imports are read when V8 would read them
    try {
      return { module, instance: await wasm.instantiate(module, imports) };
    } finally {
      // Prepared after this call, never on its path.
      if (entry.state === 'kept') this.#schedulePrepare(entry);
    }
  }

  /**
   * The second call on other bytes (mostly data): native, and the bytes are
   * copied after it returned, on a later turn of the event loop. The caller
   * may have changed them by then, so the kept module is compiled again
   * from the copy (asynchronously: off the main thread), never taken from
   * this call.
   */
  async #secondDeferred(entry: Entry, source: BufferSource, view: Buffer, imports: Imports | undefined): Promise<WebAssembly.WebAssemblyInstantiatedSource> {
    entry.state = 'copying';
    let result: WebAssembly.WebAssemblyInstantiatedSource;
    try {
      result = await wasm.instantiate(source, imports);
    } catch (e) {
      if (entry.state === 'copying') entry.state = 'seen';
      throw e;
    }
    this.counts.deferredCopies++;
    const job = this.#quiet()
      .then(async () => {
        if (entry.state !== 'copying' || !this.#entries.has(entry)) return; // dropped meanwhile
        // A detached buffer reads as empty; changed bytes are another module's.
        if (view.length !== entry.length || sampledHash(view) !== entry.hash) throw new Error('changed');
        const copy = Buffer.allocUnsafeSlow(view.length);
        view.copy(copy);
        const module = await wasm.compile(copy); // what the copy holds, whatever the caller did
        if (entry.state !== 'copying' || !this.#entries.has(entry)) return;
        // Prepared when no call is in flight (unless bounds dropped it).
        if (this.#keep(entry, copy, module, false)) this.#schedulePrepare(entry);
      })
      .catch(() => {
        this.counts.deferredDropped++;
        if (entry.state === 'copying') entry.state = 'seen';
      })
      .finally(() => this.#pending.delete(job));
    this.#pending.add(job);
    return result;
  }

  /** Counts the entry's length against the bounds, once. */
  #hold(entry: Entry): void {
    this.#bytes += entry.length - entry.held;
    entry.held = entry.length;
  }

  /** Keeps `copy` and the module V8 compiled from exactly those bytes, and schedules the preparation (unless `prepare` is false). */
  #keep(entry: Entry, copy: Buffer, module: WebAssembly.Module, prepare = true): boolean {
    this.#hold(entry);
    entry.bytes = copy;
    entry.module = module;
    entry.state = 'kept';
    this.#bound();
    if (entry.state !== 'kept') return false; // dropped by the bounds
    if (prepare) this.#schedulePrepare(entry);
    return true;
  }

  /** Forgets every entry (their prepared modules are disposed). */
  clear(): void {
    for (const entry of this.#entries.keys()) this.#drop(entry);
  }

  /**
   * The entry for these bytes: one that kept them, if they are equal byte
   * for byte; else one that has only seen bytes of this length and hash.
   */
  #find(view: Buffer, hash: number): Entry | null {
    let seen: Entry | null = null;
    for (const entry of this.#entries.keys()) {
      if (entry.hash !== hash || entry.length !== view.length) continue;
      if (entry.bytes === null) {
        seen ??= entry;
        continue;
      }
      if (!entry.bytes.equals(view)) continue;
      seen = entry;
      break;
    }
    if (seen !== null) {
      this.#entries.delete(seen);
      this.#entries.set(seen, true);
    }
    return seen;
  }

  #add(entry: Entry): void {
    this.#entries.set(entry, true);
    this.#bound();
  }

  /** Drops the least recently used entries past the bounds (an entry too large for them, at once). */
  #bound(): void {
    while (this.#entries.size > DROP_IN_LIMITS.entries || this.#bytes > DROP_IN_LIMITS.bytes) {
      this.#drop(this.#entries.keys().next().value as Entry);
    }
  }

  #drop(entry: Entry): void {
    if (!this.#entries.delete(entry)) return;
    this.#bytes -= entry.held;
    entry.held = 0;
    entry.bytes = null;
    if (entry.state === 'seen') entry.module = null;
    entry.prepared?.dispose();
    entry.prepared = null;
    entry.state = 'native';
  }

  /**
   * Prepares the entry's module on a later turn of the event loop (`now`:
   * at once, from a job already on one); the calls that wait for it
   * instantiate the kept module meanwhile.
   */
  #schedulePrepare(entry: Entry): void {
    entry.state = 'preparing';
    const job = this.#quiet()
      .then(() => {
        if (entry.state !== 'preparing' || entry.bytes === null) return null; // dropped meanwhile
        const bytes = new Uint8Array(entry.bytes.buffer, entry.bytes.byteOffset, entry.bytes.length) as Uint8Array<ArrayBuffer>;
        return this.#prepare(this.#engine(), bytes, entry.module!, () => this.#quiet());
      })
      .catch(() => null)
      .then((prepared) => {
        // Only where new memories with the image beat V8's copy (otherwise
        // the kept module is exactly as fast), and only if the entry was not
        // dropped meanwhile.
        if (prepared !== null && entry.state === 'preparing' && prepared.newMemory?.mode === 'image') {
          entry.prepared = prepared;
          entry.state = 'prepared';
        } else {
          prepared?.dispose();
          if (entry.state === 'preparing') entry.state = 'native';
        }
      })
      .finally(() => this.#pending.delete(job));
    this.#pending.add(job);
  }
}
