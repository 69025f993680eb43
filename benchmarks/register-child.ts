/**
 * Child of benchmarks/register.ts: one fresh process, one module. Times the
 * program's first instantiation (the bytes it read, through the API named),
 * then, after two more instantiations and letting the hook finish preparing
 * in the background, the median of 20 `new WebAssembly.Instance(module)`.
 * Run natively or under `--import wasm-cow/register`; prints JSON.
 *
 *   node [--import wasm-cow/register] out/benchmarks/register-child.js FILE async|sync
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseModule } from '../src/binary/reader.js';

const [file, api] = process.argv.slice(2) as [string, 'async' | 'sync'];
const bytes = readFileSync(file);
// Stub imports from the binary (compiling it here would warm V8's cache).
const imports: Record<string, Record<string, () => number>> = {};
for (const i of parseModule(bytes).imports) {
  if (i.kind !== 'function') throw new Error(`only function imports are stubbed (${i.kind})`);
  (imports[i.module] ??= {})[i.name] = () => 0;
}

const t0 = performance.now();
let module: WebAssembly.Module;
if (api === 'async') {
  module = (await WebAssembly.instantiate(bytes, imports)).module;
} else {
  module = new WebAssembly.Module(bytes);
  new WebAssembly.Instance(module, imports);
}
const first = performance.now() - t0;

type Registration = { hook: { settled(): Promise<void>; stats(): unknown } | null } | undefined;
const reg = (globalThis as unknown as Record<symbol, Registration>)[Symbol.for('wasm-cow.register')];
for (let k = 0; k < 2; k++) {
  new WebAssembly.Instance(module, imports);
  await new Promise((r) => setTimeout(r, 1));
}
const s0 = performance.now();
await reg?.hook?.settled();
const settle = performance.now() - s0;
const later: number[] = [];
for (let k = 0; k < 20; k++) {
  const a = performance.now();
  new WebAssembly.Instance(module, imports);
  later.push(performance.now() - a);
}
later.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({ first, settle, later: later[10], hook: reg?.hook?.stats() ?? null }));
