/**
 * WASI: leases work with node:wasi. A WASI program with 8 MiB of
 * initialised static data (test/fixtures/wasi/, built from its C source)
 * runs identically natively and through the engine, many times in one
 * process, each run in a fresh instance on a pooled memory.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { WASI } from 'node:wasi';
import { Engine } from '../src/index.js';
import { BACKENDS } from './helpers/env.js';

// Node 20's node:wasi fast API calls can let a GC run inside a call
// (nodejs/node#46777, #53087) and crash the process, natively too, once
// programs run on several memories: every run here gets a new one.
setFlagsFromString('--no-turbo-fast-api-calls');

const wasm = new Uint8Array(readFileSync(fileURLToPath(new URL('../../test/fixtures/wasi/static-data.wasm', import.meta.url))));
const RUNS = Number(process.env['WASM_COW_WASI_RUNS'] ?? 50);
const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-wasi-'));

/** Runs the program on `instantiate`'s instance; returns exit code and stdout. */
function run(instantiate: (imports: WebAssembly.Imports) => WebAssembly.Instance, n: number): string {
  const file = join(dir, `out-${n}`);
  const fd = openSync(file, 'w');
  const wasi = new WASI({ version: 'preview1', args: ['static-data'], stdout: fd, returnOnExit: true });
  const code = wasi.start(instantiate(wasi.getImportObject() as WebAssembly.Imports));
  closeSync(fd);
  return `exit ${code}: ${readFileSync(file, 'utf8')}`;
}

const nativeModule = new WebAssembly.Module(wasm);
const expected = run((imports) => new WebAssembly.Instance(nativeModule, imports), 0);

test('the fixture runs natively', () => {
  assert.match(expected, /^exit 0: wasm-cow WASI fixture: before [0-9a-f]{8} after [0-9a-f]{8} first 11 last 44\n$/);
});

for (const backend of BACKENDS) {
  test(`WASI: ${RUNS} runs through the engine print what native prints (${backend})`, () => {
    const engine = new Engine({ backend });
    const prepared = engine.prepare(wasm);
    assert.equal(prepared.memories[0]!.excluded, null);
    for (let i = 0; i < RUNS; i++) {
      let lease: ReturnType<typeof prepared.instantiate> | undefined;
      const out = run((imports) => (lease = prepared.instantiate(imports)).instance, i + 1);
      assert.equal(out, expected, `run ${i}`);
      lease!.release();
    }
    const s = engine.stats();
    assert.equal(s.instantiations, RUNS);
    // node:wasi holds the instance and its memory object: each memory is
    // retired at release (a new one, the image mapped, per run), never reused;
    // on the copy backend a new memory cannot beat V8, so once one was
    // retired the policy runs the rest as V8 would.
    assert.equal(s.retiredExposed + s.nativeInstantiations['small-data'], RUNS);
    if (backend === 'native') assert.equal(s.retiredExposed, RUNS);
    assert.equal(s.pooledReuses, 0);
    engine.close();
  });
}

test.after(() => rmSync(dir, { recursive: true, force: true }));
