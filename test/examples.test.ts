/**
 * The runnable examples in examples/ run and print what they promise
 * (they import 'wasm-cow' itself, i.e. the built dist/).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const examples = fileURLToPath(new URL('../../examples/', import.meta.url));
const run = (name: string) => spawnSync(process.execPath, [`${examples}${name}`], { encoding: 'utf8', cwd: examples });

const expectations: Record<string, RegExp> = {
  'plain.mjs': /wasm-cow: [\d.]+ us per instance; native: \d+ us/,
  'sqljs.mjs': /request 4: \[\["a",4\],\["b",40\]\]/,
  'quickjs.mjs': /\[1, 2, 3\]\.map\(\(x\) => x \* x\)\.join\(\) => "1,4,9"/,
  'wasi.mjs': /(wasm-cow WASI fixture: before [0-9a-f]{8} after [0-9a-f]{8} first 11 last 44\n){100}/,
};

for (const [name, pattern] of Object.entries(expectations)) {
  test(`examples/${name} runs`, () => {
    const r = run(name);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, pattern);
  });
}
