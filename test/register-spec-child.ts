/**
 * Child of register.test.ts: the 20 spec scripts in the runner's 'native'
 * mode (plain new WebAssembly.Module / Instance), in a process started with
 * `--import wasm-cow/register`. Prints every command's outcome and what the
 * hook did, as JSON.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runScript } from './spec/runner.js';

const dir = fileURLToPath(new URL('../../test/fixtures/spec/json/', import.meta.url));
const scripts = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -5))
  .sort();
const results = Object.fromEntries(scripts.map((s) => [s, runScript(dir, s, 'native').results]));
const reg = (globalThis as unknown as Record<symbol, { hook: { stats(): unknown } | null; engine: { stats(): unknown } } | undefined>)[
  Symbol.for('wasm-cow.register')
];
process.stdout.write(JSON.stringify({ results, hook: reg ? { register: reg.hook?.stats() ?? null, engine: reg.engine.stats() } : null }));
