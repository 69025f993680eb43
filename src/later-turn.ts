/**
 * A later turn of the event loop, for the drop-in (src/dropin.ts) and the
 * register hook (src/register/hook.ts): Node's own setImmediate, taken when
 * this module loads. A program's fake timers (jest, @sinonjs/fake-timers)
 * replace the global and run an immediate only when the test advances its
 * clock, where V8's asynchronous compile settles whatever the program did
 * to its timers. Imports nothing of the library (the hook's bundle loads it).
 */
import { setImmediate as nodeSetImmediate } from 'node:timers';

export const laterTurn = nodeSetImmediate;

/** Resolves on a later turn of the event loop, as a promise of V8's asynchronous compile does. */
export const afterCompile = (): Promise<void> => new Promise((resolve) => laterTurn(resolve));
