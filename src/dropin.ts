/**
 * The drop-in `instantiate(bytes, imports)`: a bounded, content-addressed
 * cache of the modules it has seen, shared by all drop-in calls.
 *
 *  - The first call on some bytes is `WebAssembly.instantiate(bytes,
 *    imports)` itself; it only notes the bytes' length and a sampled hash.
 *  - The second call on bytes of that length and hash is native too, and
 *    also keeps a copy of the bytes and the module V8 compiled from them.
 *    (Later calls are recognised byte for byte, so a copy must be kept;
 *    taking it at the first call would add up to half of native's cost
 *    there for a module that is mostly data.) It schedules the module's
 *    preparation on a later turn of the event loop.
 *  - Later calls on the same bytes (length, sampled hash, then every byte)
 *    compile nothing: they instantiate the kept module, or, once prepared,
 *    go through the prepared module where its image in a new memory beats
 *    V8's copy (new memories each time: nothing is pooled).
 *
 * `result.module` is always the caller's module as V8 compiled it (never
 * wasm-cow's rewrite): `WebAssembly.Module.imports()` lists its own imports
 * and `new WebAssembly.Instance(result.module, imports)` works. From the
 * third call on the same bytes, it is the same Module object each time
 * (natively each call compiles a new one). Those calls compile nothing, but
 * read the imports when V8 would: on a later turn of the event loop, after
 * its asynchronous compile.
 */
import { bufferView } from './buffer-source.js';
import { coreOf, type Engine } from './engine.js';
import { EngineClosedError } from './errors.js';
import { type Imports, PreparedModule, planModule } from './prepared.js';
import { wasm } from './wasm-api.js';

/** Entries kept, and bytes of module kept over all entries; least recently used go first. */
export const DROP_IN_LIMITS = { entries: 16, bytes: 256 * 1024 * 1024 } as const;

interface Entry {
  readonly hash: number;
  readonly length: number;
  /** The bytes and the module V8 compiled from them; null while only seen. */
  bytes: Buffer | null;
  module: WebAssembly.Module | null;
  /**
   * 'seen': one call so far (nothing kept); 'copying': the second call is
   * running; 'kept': bytes and module kept; 'preparing': preparation
   * scheduled; 'prepared': use `prepared`; 'native': preparing brought
   * nothing (or failed): instantiate `module`.
   */
  state: 'seen' | 'copying' | 'kept' | 'preparing' | 'prepared' | 'native';
  prepared: PreparedModule | null;
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
) => PreparedModule | null | Promise<PreparedModule | null>;

/**
 * Prepares a kept module as the register hook does: the rewrite is planned
 * here (on the main thread) and compiled by V8 asynchronously, off it (a
 * synchronous compile would stall the program's event loop for as long as
 * V8's compile of the module, which V8 itself does off the main thread for
 * WebAssembly.instantiate). Null when there is nothing to rewrite or V8
 * rejects the rewrite: the kept module is then as fast.
 */
export async function prepareInBackground(engine: Engine, bytes: Uint8Array<ArrayBuffer>, original: WebAssembly.Module): Promise<PreparedModule | null> {
  const core = coreOf(engine);
  core.checkOpen('prepare()');
  const plan = planModule(core, bytes);
  if (plan.rewritten === null) return null;
  let module: WebAssembly.Module;
  try {
    module = await wasm.compile(plan.rewritten.bytes);
  } catch {
    return null;
  }
  core.checkOpen('prepare()'); // closed meanwhile
  return new PreparedModule(core, bytes, { plan, compiled: { bytes: plan.rewritten.bytes, module }, original });
}

/** Resolves on a later turn of the event loop, as a promise of V8's asynchronous compile would. */
const afterCompile = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class DropInCache {
  readonly #engine: () => Engine;
  readonly #prepare: DropInPrepare;
  /** Least recently used first. */
  readonly #entries = new Map<Entry, true>();
  #bytes = 0;
  /** Preparations scheduled or running. */
  readonly #pending = new Set<Promise<void>>();

  constructor(engine: () => Engine, prepare: DropInPrepare) {
    this.#engine = engine;
    this.#prepare = prepare;
  }

  /** Resolves once no preparation is scheduled or running (for tests and benchmarks). */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** Entries kept now (for tests). */
  get size(): number {
    return this.#entries.size;
  }

  async instantiate(source: BufferSource, imports?: Imports): Promise<WebAssembly.WebAssemblyInstantiatedSource> {
    const view = viewOf(source);
    if (view === null || view.length === 0) return WebAssembly.instantiate(source, imports);
    const hash = sampledHash(view);
    const entry = this.#find(view, hash);
    if (entry === null || entry.state === 'copying') {
      // Exactly native: the first call on these bytes.
      const result = await WebAssembly.instantiate(source, imports);
      if (entry === null) this.#add({ hash, length: view.length, bytes: null, module: null, state: 'seen', prepared: null });
      return result;
    }
    if (entry.state === 'seen') {
      // Native, keeping the bytes and the module. V8 copies the bytes within
      // the call, before it returns its promise; ours are copied right after,
      // with no JavaScript in between (so they are the bytes V8 compiles, even
      // if the caller changes them later), while V8 compiles off the main
      // thread: the copy overlaps the compile instead of adding to the call.
      entry.state = 'copying';
      const pending = WebAssembly.instantiate(source, imports);
      const copy = Buffer.allocUnsafeSlow(view.length); // its own ArrayBuffer, never a pooled slab
      view.copy(copy);
      let result: WebAssembly.WebAssemblyInstantiatedSource;
      try {
        result = await pending;
      } catch (e) {
        if (entry.state === 'copying') entry.state = 'seen';
        throw e;
      }
      if (entry.state === 'copying' && this.#entries.has(entry)) {
        entry.bytes = copy;
        entry.module = result.module;
        entry.state = 'kept';
        this.#bytes += copy.length;
        this.#bound();
        if (entry.state === 'kept') this.#schedulePrepare(entry);
      }
      return result;
    }
    const module = entry.module!;
    // V8 took the bytes at the call (as the comparison above did), but reads
    // the imports only once its asynchronous compile is done: after the
    // caller's synchronous code and the microtasks already queued. So does
    // this, though it compiles nothing.
    await afterCompile();
    if (entry.state === 'prepared') {
      try {
        return { module, instance: await entry.prepared!.instantiateUnpooled(imports) };
      } catch (e) {
        if (!(e instanceof EngineClosedError)) throw e;
        entry.state = 'native'; // the engine was closed: V8 it is
      }
    }
    return { module, instance: await WebAssembly.instantiate(module, imports) };
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
    if (entry.bytes !== null) this.#bytes -= entry.bytes.length;
    entry.bytes = null;
    entry.prepared?.dispose();
    entry.prepared = null;
    entry.state = 'native';
  }

  /**
   * Prepares the entry's module on a later turn of the event loop (the
   * calls that wait for it instantiate the kept module meanwhile).
   */
  #schedulePrepare(entry: Entry): void {
    entry.state = 'preparing';
    const job = new Promise<void>((resolve) => setImmediate(resolve).unref())
      .then(() => {
        if (entry.state !== 'preparing' || entry.bytes === null) return null; // dropped meanwhile
        const bytes = new Uint8Array(entry.bytes.buffer, entry.bytes.byteOffset, entry.bytes.length) as Uint8Array<ArrayBuffer>;
        return this.#prepare(this.#engine(), bytes, entry.module!);
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
