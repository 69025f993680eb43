/**
 * The drop-in `instantiate(bytes, imports)`: a bounded, content-addressed
 * cache of the modules it has seen, shared by all drop-in calls.
 *
 *  - The first call on some bytes is `WebAssembly.instantiate(bytes,
 *    imports)` itself (plus a copy of the bytes, kept to recognise them), and
 *    keeps the compiled module V8 returns.
 *  - A later call on the same bytes (same length, a sampled hash, then every
 *    byte compared) compiles nothing: it instantiates the kept module, and
 *    returns it as `result.module`. The first such call also schedules the
 *    module's preparation on a later turn of the event loop; once prepared,
 *    calls whose memories an image can fill faster than V8's copy go through
 *    the prepared module (new memories each time: nothing is pooled), the
 *    others keep instantiating the kept module, exactly as V8 would.
 *
 * `result.module` is always the caller's module as V8 compiled it (never
 * wasm-cow's rewrite): `WebAssembly.Module.imports()` lists its own imports
 * and `new WebAssembly.Instance(result.module, imports)` works. Calls after
 * the first on the same bytes return the same Module object (natively each
 * call compiles a new one).
 */
import type { Engine } from './engine.js';
import { EngineClosedError } from './errors.js';
import type { Imports, PreparedModule } from './prepared.js';

/** Entries kept, and bytes of module kept over all entries; least recently used go first. */
export const DROP_IN_LIMITS = { entries: 16, bytes: 256 * 1024 * 1024 } as const;

interface Entry {
  readonly hash: number;
  readonly bytes: Buffer;
  readonly module: WebAssembly.Module;
  /**
   * 'new': seen once; 'preparing': preparation scheduled; 'prepared': use
   * `prepared`; 'native': preparing brought nothing (or failed): instantiate
   * `module`.
   */
  state: 'new' | 'preparing' | 'prepared' | 'native';
  prepared: PreparedModule | null;
}

/** The bytes of a BufferSource, without copying; null for anything else (V8 then throws its own TypeError). */
function viewOf(source: unknown): Buffer | null {
  if (source instanceof ArrayBuffer) return Buffer.from(source, 0, source.byteLength);
  if (ArrayBuffer.isView(source) && source.buffer instanceof ArrayBuffer) {
    return Buffer.from(source.buffer, source.byteOffset, source.byteLength);
  }
  return null;
}

/**
 * A cheap hash of some of the bytes: the length, the first and last KiB and
 * 64 samples of 8 bytes between (FNV-1a). Equal bytes hash equal; a match
 * is then confirmed byte for byte.
 */
export function sampledHash(b: Uint8Array): number {
  let h = 0x811c9dc5 ^ b.length;
  const mix = (from: number, to: number): void => {
    for (let i = from; i < to; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  };
  const n = b.length;
  if (n <= 4096) {
    mix(0, n);
    return h >>> 0;
  }
  mix(0, 1024);
  const step = Math.floor((n - 2048) / 64);
  for (let k = 0; k < 64; k++) {
    const at = 1024 + k * step;
    mix(at, at + 8);
  }
  mix(n - 1024, n);
  return h >>> 0;
}

export class DropInCache {
  readonly #engine: () => Engine;
  readonly #prepare: (engine: Engine, bytes: Uint8Array<ArrayBuffer>, original: WebAssembly.Module) => PreparedModule;
  /** Least recently used first. */
  readonly #entries = new Map<Entry, true>();
  #bytes = 0;

  constructor(
    engine: () => Engine,
    prepare: (engine: Engine, bytes: Uint8Array<ArrayBuffer>, original: WebAssembly.Module) => PreparedModule,
  ) {
    this.#engine = engine;
    this.#prepare = prepare;
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
    if (entry === null) {
      // Exactly native. The copy is taken now, as V8 takes its own, so it
      // holds the bytes V8 compiles even if the caller changes them later.
      const copy = Buffer.allocUnsafeSlow(view.length); // its own ArrayBuffer, never a pooled slab
      view.copy(copy);
      const result = await WebAssembly.instantiate(source, imports);
      this.#add({ hash, bytes: copy, module: result.module, state: 'new', prepared: null });
      return result;
    }
    if (entry.state === 'new') this.#schedulePrepare(entry);
    if (entry.state === 'prepared') {
      try {
        return { module: entry.module, instance: await entry.prepared!.instantiateUnpooled(imports) };
      } catch (e) {
        if (!(e instanceof EngineClosedError)) throw e;
        entry.state = 'native'; // the engine was closed: V8 it is
      }
    }
    return { module: entry.module, instance: await WebAssembly.instantiate(entry.module, imports) };
  }

  /** Forgets every entry (their prepared modules are disposed). */
  clear(): void {
    for (const entry of this.#entries.keys()) this.#drop(entry);
  }

  #find(view: Buffer, hash: number): Entry | null {
    for (const entry of this.#entries.keys()) {
      if (entry.hash !== hash || entry.bytes.length !== view.length || !entry.bytes.equals(view)) continue;
      this.#entries.delete(entry);
      this.#entries.set(entry, true);
      return entry;
    }
    return null;
  }

  #add(entry: Entry): void {
    if (entry.bytes.length > DROP_IN_LIMITS.bytes) return;
    this.#entries.set(entry, true);
    this.#bytes += entry.bytes.length;
    while (this.#entries.size > DROP_IN_LIMITS.entries || this.#bytes > DROP_IN_LIMITS.bytes) {
      this.#drop(this.#entries.keys().next().value as Entry);
    }
  }

  #drop(entry: Entry): void {
    if (!this.#entries.delete(entry)) return;
    this.#bytes -= entry.bytes.length;
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
    setImmediate(() => {
      if (entry.state !== 'preparing') return; // dropped meanwhile
      let prepared: PreparedModule | null = null;
      try {
        const bytes = new Uint8Array(entry.bytes.buffer, entry.bytes.byteOffset, entry.bytes.length) as Uint8Array<ArrayBuffer>;
        prepared = this.#prepare(this.#engine(), bytes, entry.module);
      } catch {
        prepared = null;
      }
      // Only where new memories with the image beat V8's copy: otherwise the
      // kept module is exactly as fast.
      if (prepared !== null && prepared.newMemory?.mode === 'image') {
        entry.prepared = prepared;
        entry.state = 'prepared';
      } else {
        prepared?.dispose();
        entry.state = 'native';
      }
    }).unref();
  }
}
