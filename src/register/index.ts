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
 */
import { coreOf, type Engine } from '../engine.js';
import { getDefaultEngine } from '../index.js';
import { ContentCache } from './cache.js';
import { type PreparePolicy, RegisterHook, type RegisterStats } from './hook.js';

export { ContentCache, type ContentEntry, type ContentCacheOptions } from './cache.js';
export type { PreparePolicy, RegisterStats } from './hook.js';
export { Fallback } from './hook.js';

interface Registration {
  readonly engine: Engine;
  readonly cache: ContentCache;
  readonly hook: RegisterHook | null;
  readonly disabledReason: string | null;
}

/** One registration per thread, whichever copy of wasm-cow made it. */
const KEY = Symbol.for('wasm-cow.register');

function register(): Registration {
  const g = globalThis as typeof globalThis & { [KEY]?: Registration };
  const existing = g[KEY];
  if (existing) return existing;
  const engine = getDefaultEngine();
  const cache = new ContentCache();
  const setting = (process.env.WASM_COW_REGISTER ?? '').trim().toLowerCase();
  let policy: PreparePolicy | null = 'lazy';
  if (['0', 'off', 'false', 'no'].includes(setting)) policy = null;
  else if (setting === 'eager') policy = 'eager';
  else if (!['', '1', 'on', 'true', 'yes', 'lazy'].includes(setting)) {
    process.emitWarning(`WASM_COW_REGISTER=${setting} is not one of 0, 1, lazy, eager; using lazy`, { code: 'WASM_COW_REGISTER' });
  }
  let hook: RegisterHook | null = null;
  let disabledReason: string | null = null;
  if (policy === null) disabledReason = `WASM_COW_REGISTER=${setting}`;
  else if (engine.backend !== 'native') disabledReason = `the native backend is not available (${engine.nativeUnavailableReason})`;
  else {
    hook = new RegisterHook(coreOf(engine), cache, policy);
    hook.install(WebAssembly);
  }
  const registration = { engine, cache, hook, disabledReason };
  Object.defineProperty(g, KEY, { value: registration, enumerable: false, configurable: false, writable: false });
  return registration;
}

const registration = register();

/** The engine the hook instantiates through (the one `instantiate()` of 'wasm-cow' uses). Read `engine.stats()`. */
export const engine: Engine = registration.engine;

/** This thread's cache of module contents (bytes -> original module and prepared form). */
export const contentCache: ContentCache = registration.cache;

/** Whether the hook is on in this thread. */
export const enabled: boolean = registration.hook !== null;

/** Why the hook is off (WASM_COW_REGISTER=0, or no native backend), or null when it is on. */
export const disabledReason: string | null = registration.disabledReason;

/** 'lazy' or 'eager', or null when the hook is off. */
export const policy: PreparePolicy | null = registration.hook?.policy ?? null;

/** What the hook did in this thread. */
export function stats(): RegisterStats {
  return (
    registration.hook?.stats() ?? { modules: 0, preparations: 0, pending: 0, preparedInstantiations: 0, nativeInstantiations: 0 }
  );
}

/** Resolves once no module is being prepared in the background (for tests and benchmarks). */
export function settled(): Promise<void> {
  return registration.hook?.settled() ?? Promise.resolve();
}
