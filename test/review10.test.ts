/**
 * Review 10 (the many-segment planner, b89179b..2e05d33): findings as
 * failing tests.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const index = new URL('../src/index.js', import.meta.url).href;

/**
 * readData() sizes its DataTable from the section (min(count, bytes / 2)
 * rows of 34 bytes each) before reading an entry: a malformed module whose
 * data section claims 0xFFFFFFFF segments makes parseModule allocate 17
 * times the section's size in typed arrays (a 150 MiB section: 2.5 GiB;
 * 2.1 GiB: 39 GiB) before it finds the first entry malformed. Where address
 * space is limited (ulimit -v, as here; strict overcommit) the allocation
 * fails and prepare() throws a RangeError ("Array buffer allocation
 * failed"), not the WasmFormatError (a CompileError) it threw before
 * (349c7da) and that docs/api.md promises for malformed input.
 */
test('review10: a data section claiming 0xFFFFFFFF segments is rejected as malformed, not by an allocation 17x its size', () => {
  const child = `
    const { Engine, WasmFormatError } = await import(${JSON.stringify(index)});
    const secLen = 150 * 1024 * 1024;
    const uleb = (v) => { const o = []; do { const b = v % 128; v = Math.floor(v / 128); o.push(v ? b | 0x80 : b); } while (v); return o; };
    const head = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1, 11, ...uleb(secLen)];
    const bytes = new Uint8Array(head.length + secLen);
    bytes.set([...head, 0xff, 0xff, 0xff, 0xff, 0x0f]); // count 0xFFFFFFFF, then zeros: entry 0's offset is opcode 0x00
    const engine = new Engine({ backend: 'copy' });
    try { engine.prepare(bytes); console.log('accepted'); }
    catch (e) { console.log(e instanceof WasmFormatError ? 'WasmFormatError' : e.constructor.name + ': ' + e.message); }
  `;
  // 3 GB of address space: Node and a 150 MiB input fit (the old reader passes), 2.5 GiB more of columns do not.
  const r = spawnSync('sh', ['-c', `ulimit -v 3000000; exec "${process.execPath}" --input-type=module -e "$CHILD"`], {
    env: { ...process.env, CHILD: child },
    encoding: 'utf8',
    cwd: fileURLToPath(new URL('.', import.meta.url)),
  });
  assert.equal(r.stdout.trim(), 'WasmFormatError', `stdout: ${r.stdout} stderr: ${r.stderr.slice(0, 500)}`);
});
