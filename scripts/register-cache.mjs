#!/usr/bin/env node
// Makes the V8 code cache of the register hook's bundle,
// dist/register/bundle.cjs.v8cache and its check file
// dist/register/bundle.cjs.v8cache.check, with this machine's Node: after each
// bundling (scripts/bundle-register.mjs, at build, prepare and pretest) and
// at `npm install` (scripts/build-native.mjs, for an installed package, whose
// dist/ came built). A cache is V8's alone: another Node version, or other V8
// flags, and V8 rejects it, which only costs the compile it would have saved.
//
// It runs the bundle in a throwaway process, through the entry's own loader
// (dist/register/index.cjs, which hands its vm.Script over when
// Symbol.for('wasm-cow.register.makeCodeCache') is set), sends a small module
// through the hook's paths (new WebAssembly.Module and Instance,
// instantiate(bytes), compile, instantiate(module)), so that the functions a
// program's first instantiation runs are compiled, then asks V8 for the cache
// (script.createCachedData(), which includes every function compiled so far).
// The file starts with a header line pairing it with the exact source (see
// scripts/register-loader.mjs): the loader uses it only for that source.
// Then the source, then V8's data in base64 (format 'wasm-cow-code-cache/3');
// the check file holds the same base64 again, and nothing else: the loader
// uses the data only when both copies are equal, so that a cache corrupted on
// disk is never handed to V8. Two files rather than one holding both copies:
// a file read as a string over 128 KiB (V8's limit for its regular heap)
// costs a hooked start about 0.2 ms more. Each file is written to a
// temporary name and renamed; a reader that comes between the two renames
// finds copies that differ ('mismatch'), never a cache it would use wrongly.
//
// Never fails: without a bundle (an install without devDependencies keeps
// dist/register unbundled) there is nothing to cache, and a failure leaves
// neither file, which the loader treats as a missing cache.
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// node scripts/register-cache.mjs [dist/register directory]
const child = process.argv[2] === '--child';
const dir = resolve((child ? process.argv[3] : process.argv[2]) ?? fileURLToPath(new URL('../dist/register', import.meta.url)));
const bundle = join(dir, 'bundle.cjs');
const cacheFile = `${bundle}.v8cache`;
const checkFile = `${cacheFile}.check`;

if (child) {
  const make = {};
  globalThis[Symbol.for('wasm-cow.register.makeCodeCache')] = make;
  const r = createRequire(join(dir, 'index.cjs'))('./index.cjs');
  if (make.script === undefined) throw new Error(`${join(dir, 'index.cjs')} did not load ${bundle} through its loader`);
  // (module (memory (export "mem") 1) (data (i32.const 0) "\2a"))
  const bytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 5, 3, 1, 0, 1, 7, 7, 1, 3, 109, 101, 109, 2, 0, 11, 7, 1, 0, 65, 0, 11, 1, 42]);
  const mod = new WebAssembly.Module(bytes);
  new WebAssembly.Instance(mod, {});
  await WebAssembly.instantiate(bytes, {});
  const compiled = await WebAssembly.compile(bytes);
  await WebAssembly.instantiate(compiled, {});
  await WebAssembly.instantiate(bytes.slice(), {});
  r.stats();
  await r.settled();
  // The loader compares the cache's copy of the source as text, read back from UTF-8 (lone surrogates would not come back).
  if (Buffer.from(make.source, 'utf8').toString('utf8') !== make.source) throw new Error(`${bundle} does not survive UTF-8`);
  const data = make.script.createCachedData();
  const header = `${JSON.stringify({ ...make.header, data: data.length })}\n`;
  // V8's data twice, once in each file: the loader uses it only when the two
  // copies are equal (V8 release builds do not checksum a code cache; a byte
  // changed on disk is caught by the comparison, without a hash at load).
  const b64 = data.toString('base64');
  const main = header + make.source + b64;
  // Not an error, a cost: said at build (stdout; this process's stderr is shown only on failure).
  if (main.length > 128 * 1024 - 64) console.log(`wasm-cow: ${cacheFile} is ${main.length} characters, over V8's 128 KiB limit for a string in its regular heap: a hooked start reads it about 0.2 ms slower`);
  for (const [file, text] of [[checkFile, b64], [cacheFile, main]]) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
  process.exit(0);
}

rmSync(cacheFile, { force: true });
rmSync(checkFile, { force: true });
if (existsSync(bundle) && existsSync(join(dir, 'index.cjs'))) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', dir], {
    stdio: ['ignore', 'inherit', 'pipe'],
    encoding: 'utf8',
    env: { ...process.env, WASM_COW_REGISTER: 'lazy', NODE_OPTIONS: '' },
    cwd: dirname(dir),
  });
  if (r.status !== 0) {
    // Neither file, nor a temporary one the child left (it failed between its writes, or during one).
    for (const file of [cacheFile, checkFile]) for (const f of [file, `${file}.${r.pid}.tmp`]) rmSync(f, { force: true });
    console.warn(`wasm-cow: no code cache for the register hook (${r.error?.message ?? (r.stderr.trim().split('\n').pop() || `exit ${r.status}`)}); it loads without one, a millisecond or two slower`);
  }
}
