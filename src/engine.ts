/**
 * The engine: a backend, a pool of memories and the prepared modules that
 * share them.
 */
import type { BackendKind } from './backend/backend.js';
import { CopyBackend } from './backend/copy.js';
import { NativeBackend } from './backend/native.js';
import { EngineCore } from './core.js';
import { BackendUnavailableError, InvalidArgumentError } from './errors.js';
import { loadBinding } from './native/binding.js';
import { PreparedModule, toBytes } from './prepared.js';
import type { EngineStats } from './stats.js';

export interface EngineOptions {
  /** 'auto' (default): native where the addon loads, else copy. */
  backend?: 'auto' | BackendKind;
  /** Live leases allowed at once; instantiate throws PoolExhaustedError past it. Default 1000. */
  maxInstances?: number;
  /** Idle memories kept for reuse, over all modules, those held by idle reused instances included (docs/api.md); least recently released go first. Default 64. */
  maxIdle?: number;
  /** Largest image, in bytes; a memory whose data spans more is left to V8. Default 1 GiB. */
  imageSizeLimit?: number;
  /**
   * Where a cost model says an image cannot beat V8's own copy for a module
   * (too little data), run it as V8 would: an imported memory's segments are
   * left to V8, and an instantiation that would need a new memory the pool
   * will not get back runs the original module (see
   * PreparedModule.newMemory). Default true; false images wherever it can
   * (to exercise or measure the imaging paths).
   */
  nativeWhenFaster?: boolean;
  /**
   * Tenants one pooled memory serves before it is replaced by a new one,
   * counted only when a release must detach the tenant's buffers (its JS
   * read `memory.buffer`). Default 64. V8 remembers every instance that used
   * a memory until GC, and the `memory.grow(0)` that detaches buffers walks
   * that list, so such a reset slows with each reuse; a new memory every 64
   * tenants keeps it under a microsecond.
   */
  memoryReuseLimit?: number;
  /**
   * Native backend: when a released tenant dirtied at most this many bytes,
   * reset rewrites them in place instead of discarding them, so they stay
   * resident and the next tenant does not fault them in again (each idle
   * memory then keeps up to this much resident). Default 128 KiB; 0 always
   * discards with madvise; Infinity rewrites whatever the tenant dirtied
   * (unless the dirty pages are scattered over more ranges than one scan
   * lists, when it discards).
   */
  keepResident?: number;
  /**
   * Native backend: reset released memories on a background thread (one
   * per Node.js thread), so that release() returns at once and the reset
   * runs on another core. A memory is handed out again only once its reset
   * is done. Default true; false resets inside release().
   */
  backgroundReset?: boolean;
  /**
   * Replace a pooled memory retired at release (it grew, or its tenant was
   * handed it) with a spare made in idle time: a new memory of the same
   * size holding the same image, which the next instantiation takes from
   * the pool (see src/spares.ts; counted in `stats().sparesMade` and
   * `sparesUsed`). Spares count against `maxIdle`. Default true; false
   * makes no spares (the next instantiation then makes its memory itself).
   */
  spareMemories?: boolean;
}

/** Options of Engine.prepare(). */
export interface PrepareOptions {
  /**
   * Let PreparedModule.snapshot() capture this module's leases. The engine
   * then keeps the module's bytes (to rewrite them) for the prepared
   * module's life. Default false.
   */
  readonly snapshots?: boolean;
  /**
   * Reuse instances: a released lease's instance is reset (memories,
   * globals, tables; the start function runs again) and serves the next
   * lease, when the module is eligible (`prepared.reuse`). See docs/api.md.
   * Default false.
   */
  readonly reuse?: boolean;
}

const GiB = 1024 * 1024 * 1024;

/** @internal An engine's core, for wasm-cow's own modules (the register hook). */
export let coreOf: (engine: Engine) => EngineCore;
/** Options of engine.prepare(). */

/**
 * @internal prepare() for bytes V8 has compiled already (the drop-in
 * instantiate()): `bytes` are not copied (the caller keeps them unchanged)
 * and `original` is their compiled module.
 */
export let prepareCompiled: (engine: Engine, bytes: Uint8Array<ArrayBuffer>, original: WebAssembly.Module) => PreparedModule;

export class Engine {
  static {
    coreOf = (engine) => engine.#core;
  }

  /** The backend in use, as resolved from the `backend` option. */
  readonly backend: BackendKind;
  /** Why the native backend is not in use, or null when it is. */
  readonly nativeUnavailableReason: string | null;
  readonly #core: EngineCore;

  constructor(options: EngineOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options must be an object');
    const want = options.backend ?? 'auto';
    if (want !== 'auto' && want !== 'native' && want !== 'copy') {
      throw new InvalidArgumentError(`backend must be 'auto', 'native' or 'copy', not ${String(want)}`);
    }
    const maxInstances = count(options.maxInstances, 'maxInstances', 1000, 1);
    const maxIdle = count(options.maxIdle, 'maxIdle', 64, 0);
    const imageSizeLimit = count(options.imageSizeLimit, 'imageSizeLimit', GiB, 0);
    const memoryReuseLimit = count(options.memoryReuseLimit, 'memoryReuseLimit', 64, 1);
    const keepResident = count(options.keepResident, 'keepResident', 128 * 1024, 0);
    const background = options.backgroundReset ?? true;
    if (typeof background !== 'boolean') {
      throw new InvalidArgumentError(`backgroundReset must be a boolean, not ${String(background)}`);
    }
    const spareMemories = options.spareMemories ?? true;
    if (typeof spareMemories !== 'boolean') {
      throw new InvalidArgumentError(`spareMemories must be a boolean, not ${String(spareMemories)}`);
    }
    const nativeWhenFaster = options.nativeWhenFaster ?? true;
    if (typeof nativeWhenFaster !== 'boolean') {
      throw new InvalidArgumentError(`nativeWhenFaster must be a boolean, not ${String(nativeWhenFaster)}`);
    }

    const load = want === 'copy' ? null : loadBinding();
    let backend;
    if (load && load.binding) {
      backend = new NativeBackend(load.binding, keepResident, background);
      this.nativeUnavailableReason = null;
    } else {
      const reason = load ? load.error : "backend 'copy' was asked for";
      if (want === 'native') throw new BackendUnavailableError(reason);
      backend = new CopyBackend();
      this.nativeUnavailableReason = reason;
    }
    this.backend = backend.kind;
    this.#core = new EngineCore(backend, {
      maxInstances,
      maxIdle,
      imageSizeLimit,
      memoryReuseLimit,
      nativeWhenFaster,
      spareMemories,
    });
  }

  static {
    prepareCompiled = (engine, bytes, original) => {
      engine.#core.checkOpen('prepare()');
      return new PreparedModule(engine.#core, bytes, { original });
    };
  }

  /**
   * Analyses, rewrites and compiles a module (synchronously). Images are
   * built at first instantiation. Throws WebAssembly.CompileError (or
   * WasmFormatError, a subclass) for an invalid module.
   */
  prepare(bytes: BufferSource, options: PrepareOptions = {}): PreparedModule {
    this.#core.checkOpen('prepare()');
    if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('prepare options must be an object');
    const { snapshots = false, reuse = false } = options;
    if (typeof snapshots !== 'boolean') throw new InvalidArgumentError(`snapshots must be a boolean, not ${String(snapshots)}`);
    if (typeof reuse !== 'boolean') throw new InvalidArgumentError(`reuse must be a boolean, not ${String(reuse)}`);
    return new PreparedModule(this.#core, toBytes(bytes), { snapshots, reuse });
  }

  /** A snapshot of the engine's counters. */
  stats(): EngineStats {
    return this.#core.stats();
  }

  /**
   * Retires the idle memories and closes every image. Live leases keep
   * working until released; their memories are then dropped, not pooled.
   */
  close(): void {
    this.#core.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function count(value: unknown, name: string, dflt: number, min: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || Number.isNaN(value) || value < min || (!Number.isInteger(value) && value !== Infinity)) {
    throw new InvalidArgumentError(`${name} must be an integer >= ${min} (or Infinity), not ${String(value)}`);
  }
  return value;
}
