/**
 * The command line (out/src/cli.js, as built for the tests): bench's stub
 * imports follow the module's import types, and inspect's text output says
 * what becomes of imported memories.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stubImports } from '../src/bench/compare.js';
import { buildModule, I32, I64, stdFuncs } from './helpers/wasm.js';

const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-cli-'));
let files = 0;
function file(bytes: Uint8Array): string {
  const path = join(dir, `m${files++}.wasm`);
  writeFileSync(path, bytes);
  return path;
}
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

const F64 = 0x7c;
/** Imports a mutable i32, an immutable i64, a mutable f64, an externref table and a memory; reads them in its start function. */
const GLOBALS_MODULE = buildModule({
  importMemory: { module: 'env', name: 'memory', min: 1, max: 4 },
  importGlobals: [
    { module: 'env', name: 'sp', type: I32, mutable: true },
    { module: 'env', name: 'big', type: I64 },
    { module: 'env', name: 'f', type: F64, mutable: true },
  ],
  importTables: [{ module: 'env', name: 'refs', element: 0x6f, min: 2, max: 8 }],
  funcs: [
    ...stdFuncs,
    // start: sp = sp + 16 (global.get 0, i32.const 16, i32.add, global.set 0)
    { body: [0x23, 0, 0x41, 16, 0x6a, 0x24, 0] },
  ],
  start: stdFuncs.length,
  data: [{ offset: 64, bytes: [1, 2, 3] }],
});

test('stubImports: globals, tables and memories of the declared types', () => {
  const imports = stubImports(GLOBALS_MODULE);
  const env = imports['env']!;
  assert.ok(env['sp'] instanceof WebAssembly.Global);
  assert.equal((env['sp'] as WebAssembly.Global).value, 0);
  assert.ok(env['big'] instanceof WebAssembly.Global);
  assert.equal((env['big'] as WebAssembly.Global).value, 0n);
  assert.ok(env['refs'] instanceof WebAssembly.Table);
  assert.equal((env['refs'] as WebAssembly.Table).length, 2);
  assert.ok(env['memory'] instanceof WebAssembly.Memory);
  // And V8 links them (a bare 0 for either global would be a LinkError).
  new WebAssembly.Instance(new WebAssembly.Module(GLOBALS_MODULE), imports);
  assert.equal((env['sp'] as WebAssembly.Global).value, 16, 'the start function ran on the stub global');
});

/**
 * Imports a tag of type (i32, i64) (as Emscripten's C++ exceptions, `env.__cpp_exception`, and
 * `env.__c_longjmp` in @duckdb/duckdb-wasm's duckdb-eh.wasm) and defines a memory with data.
 * Hand-assembled: the test helpers' builder has no tag imports.
 */
const TAG_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x06, 0x01, 0x60, 0x02, 0x7f, 0x7e, 0x00, // type 0: (func (param i32 i64))
  0x02, 0x0c, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x03, 0x74, 0x61, 0x67, 0x04, 0x00, 0x00, // import env.tag: tag of type 0
  0x05, 0x03, 0x01, 0x00, 0x01, // memory 0: 1 page
  0x0b, 0x09, 0x01, 0x00, 0x41, 0x10, 0x0b, 0x03, 0x01, 0x02, 0x03, // data at 16: 1 2 3
]);

test('stubImports: an imported tag gets a WebAssembly.Tag of its parameters, and bench runs on it', () => {
  const imports = stubImports(TAG_MODULE);
  const tag = imports['env']!['tag'];
  const Tag = (WebAssembly as unknown as { Tag: abstract new (...args: never[]) => object }).Tag;
  assert.ok(tag instanceof Tag, 'a WebAssembly.Tag');
  new WebAssembly.Instance(new WebAssembly.Module(TAG_MODULE), imports); // V8 links it: the parameters match
  const r = run('bench', file(TAG_MODULE), '--json', '--n', '5');
  assert.equal(r.status, 0, r.stderr);
});

test('bench: a module importing a tag JavaScript cannot make (a v128 parameter) exits 3, not 1', () => {
  const bytes = new Uint8Array(TAG_MODULE);
  bytes.set([0x01, 0x05, 0x01, 0x60, 0x01, 0x7b, 0x00], 8); // type 0: (func (param v128))
  const module = new Uint8Array([...bytes.subarray(0, 15), ...bytes.subarray(16)]); // the type section is one byte shorter
  assert.ok(WebAssembly.validate(module));
  assert.equal(stubImports(module)['env']!['tag'], undefined, 'left absent');
  const r = run('bench', file(module), '--n', '5');
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, /cannot be instantiated with stub imports/);
});

test('bench: a module importing mutable and i64 globals benches with exit 0', () => {
  const r = run('bench', file(GLOBALS_MODULE), '--json', '--n', '5');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { timings: Record<string, { n: number; median: number }> };
  for (const v of ['native', 'fresh', 'pooled', 'floor']) {
    assert.ok(out.timings[v] && out.timings[v]!.n >= 5 && out.timings[v]!.median > 0, `${v} measured`);
  }
});

test('bench: a module that needs real imports exits 3 and names public APIs only', () => {
  // The start function traps: no stub can make it instantiate.
  const bytes = buildModule({ funcs: [{ body: [0x00] }], start: 0 });
  const r = run('bench', file(bytes));
  assert.equal(r.status, 3);
  assert.match(r.stderr, /cannot be instantiated with stub imports/);
  assert.match(r.stderr, /PreparedModule\.instantiate/);
  assert.doesNotMatch(r.stderr, /compareInstantiation/);
});

test('inspect: the text output says how an imported memory is imaged', () => {
  const bytes = buildModule({
    importMemory: { module: 'env', name: 'memory', min: 80 },
    funcs: stdFuncs,
    data: [{ offset: 70000, bytes: new Uint8Array(4400 * 1024).fill(3) }], // enough data for the cost model (about 4 MiB)
  });
  const r = run('inspect', file(bytes));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /memory 0 \(imported\)/);
  assert.match(r.stdout, /image: conditional \(imported-untouched\).*bytes 69632 to 4579328/);
  // With too little data, the cost model leaves it to V8, and says why.
  const small = buildModule({ importMemory: { module: 'env', name: 'memory', min: 2 }, data: [{ offset: 70000, bytes: [9] }] });
  const s = run('inspect', file(small));
  assert.match(s.stdout, /no image: imported: the memory is imported and its data \(1 page\) is too small for mapping it to beat V8's copy/);
});

test('inspect: an imported shared memory says it is shared (not "shared or memory64")', () => {
  const bytes = buildModule({
    importMemory: { module: 'env', name: 'memory', min: 1, max: 1, shared: true },
    funcs: stdFuncs,
    data: [{ offset: 0, bytes: [1] }],
  });
  const r = run('inspect', file(bytes));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /no image: imported: the memory is imported and shared;/);
  assert.doesNotMatch(r.stdout, /shared or memory64/);
});

test('inspect: says what a module does when it needs a new memory', () => {
  const small = buildModule({ memories: [{ min: 2, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 100, bytes: [7, 8, 9] }] });
  const large = buildModule({ memories: [{ min: 4, export: 'mem' }], data: [{ offset: 0, bytes: new Uint8Array(65536).fill(1) }] });
  const a = run('inspect', file(small));
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stdout, /new memories: runs as V8 would when no idle memory can be reused .*too little data for the memory's size: V8's copy of 1 page in 1 segment: .* added by making 2 pages of memory.*V8's own plus the lease.*slightly slower, never faster/);
  const b = run('inspect', file(large), '--json');
  assert.equal(b.status, 0, b.stderr);
  assert.equal((JSON.parse(b.stdout) as { newMemory: { mode: string; dataPages: number } }).newMemory.mode, 'image');
});

test('inspect: a module wasm-cow can gain nothing on is reported, with the reason and what to use instead', () => {
  // An imported memory with too little data for an image: nothing pooled, nothing mapped.
  const imported = buildModule({ importMemory: { module: 'env', name: 'memory', min: 2 }, funcs: stdFuncs, data: [{ offset: 70000, bytes: [9] }] });
  const a = run('inspect', file(imported));
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stdout, /nothing to gain: its memories are imported and none gets an image.*slower than native: instantiate it with `new WebAssembly.Instance` directly/);
  assert.match(a.stdout, /instance reuse: not eligible, imported-memory-data/);
  // No memory at all: reuse is the way to gain, and it is eligible.
  const none = buildModule({ funcs: [{ export: 'f', results: [I32], body: [0x41, 1] }] });
  const b = run('inspect', file(none), '--json');
  assert.equal(b.status, 0, b.stderr);
  const gain = (JSON.parse(b.stdout) as { gain: { none: boolean; why: string; reuse: { enabled: boolean } } }).gain;
  assert.equal(gain.none, true);
  assert.match(gain.why, /no memory/);
  assert.equal(gain.reuse.enabled, true);
  assert.match(run('inspect', file(none)).stdout, /or prepare it with \{ reuse: true \}/);
  // A memory of its own is pooled: something to gain, nothing said.
  const own = buildModule({ memories: [{ min: 2, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 100, bytes: [7] }] });
  const c = run('inspect', file(own));
  assert.doesNotMatch(c.stdout, /nothing to gain/);
  assert.equal((JSON.parse(run('inspect', file(own), '--json').stdout) as { gain: { none: boolean } }).gain.none, false);
});

test('bench: for a module nothing of which is imaged, it says so and gives native against floor (the same work) as the noise', () => {
  // An imported memory with 3 bytes of data: left to V8 (src/policy.ts), nothing rewritten.
  const json = JSON.parse(run('bench', file(GLOBALS_MODULE), '--json', '--n', '20').stdout) as { rewritten: boolean };
  assert.equal(json.rewritten, false);
  const text = run('bench', file(GLOBALS_MODULE), '--n', '20');
  assert.equal(text.status, 0);
  assert.match(text.stdout, /nothing of this module is imaged: wasm-cow runs it as V8 would/);
  assert.match(text.stdout, /"native" and "floor" are the same work, measured \S+ \S+ and \S+ \S+ here: a difference of about \d+% between identical work/);
  assert.match(text.stdout, /\| \d+\.\d+x (faster|slower) \|/, 'a ratio below 1 is said as "slower"');
  // A module with an image: no such line.
  const imaged = buildModule({ memories: [{ min: 2, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 64, bytes: new Uint8Array(9000).fill(7) }] });
  const r = run('bench', file(imaged), '--json', '--n', '20');
  assert.equal((JSON.parse(r.stdout) as { rewritten: boolean }).rewritten, true);
  assert.doesNotMatch(run('bench', file(imaged), '--n', '20').stdout, /nothing of this module is imaged/);
});
