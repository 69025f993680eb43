/**
 * The heavy half of the register hook, loaded (synchronously, with
 * require()) when the hook first prepares a module, or by getEngine(): the
 * library, the default Engine, and what the hook prepares modules with.
 */
import { coreOf, type Engine } from '../engine.js';
import { getDefaultEngine } from '../index.js';
import { newMemoryWins, PreparedModule, planModule } from '../prepared.js';
import type { Library } from './hook.js';

export function loadLibrary(): { engine: Engine; library: Library } {
  const engine = getDefaultEngine();
  return { engine, library: { core: coreOf(engine), planModule, newMemoryWins, PreparedModule } };
}
