/**
 * wasm-cow/register: routes a program's own WebAssembly instantiation
 * through wasm-cow, with no change to its code.
 *
 *   node --import wasm-cow/register app.js
 *
 * or `import 'wasm-cow/register'` before anything compiles WebAssembly.
 * Each thread that loads it patches its own `WebAssembly` globals (with
 * `--import`, every worker thread does). WASM_COW_REGISTER=0 switches it
 * off; WASM_COW_REGISTER=eager prepares every module at its first
 * instantiation (see hook.ts for the policies).
 *
 * Loading it is cheap: it loads a few small modules of its own (this one,
 * install, cache, hook), reads the switch (off: no addon, nothing patched),
 * then checks that the addon was built (it loads with the library) and
 * replaces the globals by thin proxies. The hook
 * is made at the first call of a patched global; the library and its
 * Engine load only when the hook first
 * prepares a module (under the lazy policy, in the background, after a
 * content's native instantiations have taken as long as its compile), or
 * at getEngine(): a program's first instantiations never wait for them.
 */
import type { Engine } from '../engine.js';
import { bindingUnavailable, loadBinding } from '../native/binding.js';
import { ContentCache } from './cache.js';
import { type Library, type PreparePolicy, RegisterHook, type RegisterStats } from './hook.js';
import { cannotInstall, installProxies, nativesOf, type Natives } from './install.js';

export { ContentCache, type ContentEntry, type ContentCacheOptions } from './cache.js';
export type { PreparePolicy, RegisterStats } from './hook.js';
export { Fallback } from './fallback.js';

type Load = typeof import('./load.js');

/** This thread's registration (also under Symbol.for('wasm-cow.register'), whichever copy of wasm-cow made it). */
class Registration {
  readonly cache = new ContentCache();
  readonly policy: PreparePolicy | null;
  readonly disabledReason: string | null;
  readonly #natives: Natives | null;
  #engine: Engine | null = null;
  #library: Library | null = null;
  #hook: RegisterHook | null = null;
  #loading = false;

  constructor(policy: PreparePolicy | null, disabledReason: string | null, natives: Natives | null) {
    this.policy = policy;
    this.disabledReason = disabledReason;
    this.#natives = natives;
  }

  #require<T>(file: string): T {
    // node:module is taken when first needed (about 0.3 ms to load cold,
    // with the ESM loader's modules it brings): with the library, which
    // require() can load (an ES module) from Node 20.19, after 20.16's
    // process.getBuiltinModule.
    const nodeModule = (process.getBuiltinModule as typeof process.getBuiltinModule | undefined)?.('node:module');
    if (nodeModule === undefined) {
      throw new Error(`wasm-cow/register: loading the library needs Node 20.19 or later (this is ${process.version}); use wasm-cow's own API instead`);
    }
    return nodeModule.createRequire(import.meta.url)(file) as T;
  }

  /** The library and its Engine, loaded on first use. */
  #loadLibrary(): Library {
    if (this.#library === null) {
      const { engine, library } = this.#require<Load>('./load.js').loadLibrary();
      this.#engine = engine;
      this.#library = library;
      this.#hook?.flushFallbacks();
    }
    return this.#library;
  }

  /**
   * The library, for the hook to prepare with: only over the native
   * backend. The addon was found at start but loads only now; should it
   * fail to (a build for another Node, say), nothing is prepared: every
   * content's preparation fails, counted as 'register-engine-error', and
   * its instantiations stay V8's.
   */
  #nativeLibrary(): Library {
    const library = this.#loadLibrary();
    if (this.#engine!.backend !== 'native') throw new Error(`wasm-cow/register: the native backend did not load (${loadBinding().error})`);
    return library;
  }

  /** The Engine, loading the library on first use. */
  get engine(): Engine {
    this.#loadLibrary();
    return this.#engine!;
  }

  /** The hook, made on first use (null when off, or while it is being made: V8 then). */
  get hook(): RegisterHook | null {
    if (this.#hook !== null || this.policy === null || this.#natives === null || this.#loading) return this.#hook;
    this.#loading = true;
    try {
      this.#hook = new RegisterHook({ peek: () => this.#library, load: () => this.#nativeLibrary() }, this.cache, this.policy, this.#natives);
    } finally {
      this.#loading = false;
    }
    return this.#hook;
  }

  /** Whether the library and its Engine are loaded (by a preparation, or getEngine()). */
  get libraryLoaded(): boolean {
    return this.#library !== null;
  }

  /** The hook if it was made already (without making it). */
  get madeHook(): RegisterHook | null {
    return this.#hook;
  }
}

const KEY = Symbol.for('wasm-cow.register');

function register(): Registration {
  const g = globalThis as typeof globalThis & { [KEY]?: Registration };
  const existing = g[KEY];
  if (existing) return existing;
  const setting = (process.env.WASM_COW_REGISTER ?? '').trim().toLowerCase();
  let policy: PreparePolicy | null = 'lazy';
  if (['0', 'off', 'false', 'no'].includes(setting)) policy = null;
  else if (setting === 'eager') policy = 'eager';
  else if (!['', '1', 'on', 'true', 'yes', 'lazy'].includes(setting)) {
    process.emitWarning(`WASM_COW_REGISTER=${setting} is not one of 0, 1, lazy, eager; using lazy`, { code: 'WASM_COW_REGISTER' });
  }
  let registration: Registration;
  if (policy === null) registration = new Registration(null, `WASM_COW_REGISTER=${setting}`, null);
  else if (!Object.isExtensible(g)) {
    // Object.freeze(globalThis): the registration cannot be kept where a
    // second load finds it (defining it threw, after the proxies were installed).
    registration = new Registration(null, 'the global object is not extensible (frozen?)', null);
  } else if (typeof WebAssembly !== 'object' || WebAssembly === null) {
    // node --jitless (or --no-expose-wasm): no WebAssembly global to hook; a
    // program that loads the hook must still start.
    registration = new Registration(null, 'WebAssembly is not available (--jitless or --no-expose-wasm?)', null);
  } else {
    // The engine's 'auto' backend is native exactly when the addon loads.
    // It is loaded with the library (Registration.#loadLibrary): a program
    // whose instantiations stay V8's never pays for it (0.4-0.6 ms).
    const unavailable = bindingUnavailable();
    if (unavailable !== null) registration = new Registration(null, `the native backend is not available (${unavailable})`, null);
    else {
      const natives = nativesOf(WebAssembly);
      const blocked = cannotInstall(WebAssembly, natives);
      if (blocked !== null) registration = new Registration(null, `the WebAssembly globals cannot be replaced (${blocked}: frozen?)`, null);
      else {
        registration = new Registration(policy, null, natives);
        const r = registration;
        installProxies(WebAssembly, natives, () => r.hook?.router ?? null);
      }
    }
  }
  if (Object.isExtensible(g)) Object.defineProperty(g, KEY, { value: registration, enumerable: false, configurable: false, writable: false });
  return registration;
}

const registration = register();

/**
 * The engine the hook instantiates through (the one `instantiate()` of
 * 'wasm-cow' uses). Read `getEngine().stats()`. The first call loads the
 * library and makes the engine, if the program has not used WebAssembly yet.
 */
export function getEngine(): Engine {
  return registration.engine;
}

/** This thread's cache of module contents (bytes -> original module and prepared form). */
export const contentCache: ContentCache = registration.cache;

/** Whether the hook is on in this thread. */
export const enabled: boolean = registration.policy !== null;

/** Why the hook is off (WASM_COW_REGISTER=0, no native backend, no WebAssembly global (--jitless), or frozen WebAssembly globals), or null when it is on. */
export const disabledReason: string | null = registration.disabledReason;

/** 'lazy' or 'eager', or null when the hook is off. */
export const policy: PreparePolicy | null = registration.policy;

/** What the hook did in this thread (all zero until the program first uses WebAssembly). */
export function stats(): RegisterStats {
  return (
    registration.madeHook?.stats() ?? {
      modules: registration.cache.size,
      preparations: 0,
      pending: 0,
      preparedInstantiations: 0,
      nativeInstantiations: 0,
      heldModules: 0,
      cachedCompiles: 0,
      deferredCopies: 0,
      deferredDropped: 0,
    }
  );
}

/** Resolves once no module is being prepared in the background (for tests and benchmarks). */
export function settled(): Promise<void> {
  return registration.madeHook?.settled() ?? Promise.resolve();
}
