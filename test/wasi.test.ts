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
import { WASI } from 'node:wasi';
import { Engine } from '../src/index.js';
import { BACKENDS } from './helpers/env.js';

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
    // Misses: a new memory per 64 tenants, the second one background resets may alternate with, one of margin.
    assert.ok(s.fastPathHits >= RUNS - Math.ceil(RUNS / 64) - 3, `fast path: ${s.fastPathHits}`);
    engine.close();
  });
}

test.after(() => rmSync(dir, { recursive: true, force: true }));
