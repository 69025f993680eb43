/**
 * The heavy half of the register hook, loaded (synchronously, with
 * require()) at the first call of a patched WebAssembly global, or by
 * getEngine(): the library, the default Engine and the RegisterHook.
 */
import { coreOf, type Engine } from '../engine.js';
import { getDefaultEngine } from '../index.js';
import type { ContentCache } from './cache.js';
import { type PreparePolicy, RegisterHook } from './hook.js';
import type { Natives } from './install.js';

export function loadEngine(): Engine {
  return getDefaultEngine();
}

export function createHook(engine: Engine, cache: ContentCache, policy: PreparePolicy, natives: Natives): RegisterHook {
  return new RegisterHook(coreOf(engine), cache, policy, natives);
}
