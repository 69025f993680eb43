/**
 * A real package whose memory grows on every run: esbuild-wasm through
 * Go's own glue (wasm_exec.js), pooled. esbuild grows its memory each run
 * and the glue reads `exports.mem`, so no memory is reused as is; spares
 * made in idle time (while the previous run works) serve the later runs. Every run must print
 * what native prints, and start on a memory of the declared initial size.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/index.js';
import { parseModule } from '../src/binary/reader.js';
import { leaseMemory } from './helpers/env.js';
import { loadGoGlue } from '../src/bench/go-glue.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(`${root}package.json`);

const glue = loadGoGlue(require);
const bytes = readFileSync(require.resolve('esbuild-wasm/esbuild.wasm'));
const input = `${root}test/fixtures/register/input.ts`;
const newGo = () => glue.esbuild(input, (code) => assert.equal(code, 0));

test('esbuild-wasm (Go glue) minifies in a pooled loop: spares serve the runs, output equals native', async () => {
  const initialPages = parseModule(bytes).memories[0]!.min;
  glue.takeOutput();
  const go = newGo();
  const native = new WebAssembly.Instance(new WebAssembly.Module(bytes), go.importObject);
  assert.equal((native.exports['mem'] as WebAssembly.Memory).buffer.byteLength, initialPages * 65536);
  await go.run(native);
  const expected = glue.takeOutput();
  assert.match(expected, /class \w+/, 'native printed the minified output');
  assert.ok((native.exports['mem'] as WebAssembly.Memory).buffer.byteLength > initialPages * 65536, 'esbuild grew its memory');

  const engine = new Engine();
  const prepared = engine.prepare(bytes);
  const runs = 5;
  for (let i = 0; i < runs; i++) {
    glue.takeOutput();
    const go = newGo();
    const lease = prepared.instantiate(go.importObject);
    assert.equal(leaseMemory(lease).buffer.byteLength, initialPages * 65536, `run ${i}: memory.size at start is the declared initial size`);
    // The glue checks `instanceof WebAssembly.Instance`; it gets the lease's exports.
    await go.run(Object.create(WebAssembly.Instance.prototype, { exports: { value: lease.exports } }) as WebAssembly.Instance);
    lease.release();
    assert.equal(glue.takeOutput(), expected, `run ${i} prints what native prints`);
  }
  const s = engine.stats();
  // Run 1 starts in the same turn as run 0 ends (no idle turn between them): it makes its memory too.
  // From run 2 on, each takes the spare made while the run before it worked.
  assert.equal(s.memoriesCreated - s.sparesMade, 2, JSON.stringify(s));
  assert.equal(s.sparesUsed, runs - 2, JSON.stringify(s));
  assert.equal(s.pooledReuses, runs - 2);
  assert.equal(s.retiredMemories, runs, 'every run retired its memory (grown, handed to the glue)');
  engine.close();
});
