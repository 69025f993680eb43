/**
 * wasm-cow/register compiles its bundle (dist/register/bundle.cjs) through a
 * V8 code cache made at build and install time
 * (dist/register/bundle.cjs.v8cache, scripts/register-cache.mjs). The cache
 * is used only for the exact source it was made from: V8's own check
 * compares the source's length (and V8's version and flags), so a stale
 * cache of a bundle of the same length would run the old bytecode. Missing,
 * mismatched or rejected, it is not used, and the hook works as without it.
 * V8's data is there twice, once in the cache file and again as the whole of
 * its check file (bundle.cjs.v8cache.check): V8 release builds do not
 * checksum a code cache, so a byte changed on disk would be run; the loader
 * uses the data only when the two copies are equal.
 *
 * How the load went is a diagnostic, Symbol.for('wasm-cow.register.codeCache')
 * on globalThis: { state: 'used' | 'rejected' | 'flags' | 'missing' | 'mismatch', file }.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
// The hook's mechanism on a small module (it would otherwise be left to V8,
// 'register-small-data'): inherited by every child process.
process.env['WASM_COW_NATIVE_WHEN_FASTER'] = '0';
const linux = process.platform === 'linux';
const EXPORTS = ['ContentCache', 'Fallback', 'contentCache', 'disabledReason', 'enabled', 'getEngine', 'policy', 'settled', 'stats'];

type Via = 'import' | 'require';
type Seen = { cache: { state: string; file: string } | undefined; keys: string[]; enabled: boolean; reason: string | null; read: number; prepared: number };

/** Runs a program under `--<via> wasm-cow/register` in `cwd` (a package root), with WASM_COW_REGISTER=`mode`; what it saw. */
function seen(cwd: string, via: Via, mode: string, flags: string[] = []): Seen {
  const body = `const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
    const i = new WebAssembly.Instance(new WebAssembly.Module(bytes));
    console.log(JSON.stringify({ cache: globalThis[Symbol.for('wasm-cow.register.codeCache')], keys: Object.keys(r).sort(), enabled: r.enabled,
      reason: r.disabledReason, read: new Uint8Array(i.exports.mem.buffer)[0], prepared: r.stats().preparedInstantiations }));`;
  const args =
    via === 'import'
      ? [...flags, '--import', 'wasm-cow/register', '--input-type=module', '-e', `import * as r from 'wasm-cow/register'; ${body}`]
      : [...flags, '--require', 'wasm-cow/register', '-e', `const r = require('wasm-cow/register'); ${body}`];
  return JSON.parse(execFileSync(process.execPath, args, { cwd, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: mode } })) as Seen;
}

/** A copy of the built package (package.json, dist, the addon's build/) to change; removed after `f`. */
function withCopy(f: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-codecache-'));
  try {
    cpSync(`${root}package.json`, join(dir, 'package.json'));
    cpSync(`${root}dist`, join(dir, 'dist'), { recursive: true });
    symlinkSync(`${root}build`, join(dir, 'build'));
    f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The parts of a cache file: its header, its copy of the source, V8's data
 * (decoded from its base64), where that base64 starts in the file's text
 * (`at`, `b64` characters), and the check file's text (null when absent).
 */
function parts(file: string): { header: Record<string, unknown>; source: string; data: Buffer; at: number; b64: number; check: string | null } {
  const text = readFileSync(file, 'utf8');
  const nl = text.indexOf('\n');
  const header = JSON.parse(text.slice(0, nl)) as Record<string, unknown> & { source: number; data: number };
  const at = nl + 1 + header.source;
  const b64 = 4 * Math.ceil(header.data / 3);
  assert.equal(text.length, at + b64, `${file}: V8's data once, in base64`);
  const check = existsSync(`${file}.check`) ? readFileSync(`${file}.check`, 'utf8') : null;
  return { header, source: text.slice(nl + 1, at), data: Buffer.from(text.slice(at), 'base64'), at, b64, check };
}

test('the build makes a code cache paired with the bundle, and both entries compile the bundle with it (V8 accepts it)', { skip: !linux && 'native backend only' }, () => {
  const bundle = `${root}dist/register/bundle.cjs`;
  const cache = parts(`${bundle}.v8cache`);
  assert.equal(cache.header.format, 'wasm-cow-code-cache/3');
  assert.equal(cache.header.v8, process.versions.v8);
  assert.equal(cache.source, readFileSync(bundle, 'utf8'), 'the cache holds the exact source it was made from');
  assert.equal(cache.data.length, cache.header.data);
  const text = readFileSync(`${bundle}.v8cache`, 'utf8');
  assert.equal(cache.check, text.slice(cache.at), 'the check file is the cache file\'s base64 of V8\'s data, and nothing else');
  for (const via of ['import', 'require'] as const) {
    const s = seen(root, via, 'eager');
    assert.deepEqual(s.cache, { state: 'used', file: bundle }, via);
    assert.deepEqual(s.keys, EXPORTS, `the ${via} entry's exports`);
    assert.equal(s.enabled, true);
    assert.equal(s.read, 42);
    assert.equal(s.prepared, 1, 'the hook prepared the module and instantiated it through the engine');
  }
  // A program that loads both entries still gets one registration.
  const both = execFileSync(
    process.execPath,
    ['--require', 'wasm-cow/register', '--import', 'wasm-cow/register', '--input-type=module', '-e',
      `import * as esm from 'wasm-cow/register'; import { createRequire } from 'node:module';
       const cjs = createRequire(process.cwd() + '/')('wasm-cow/register');
       console.log(JSON.stringify([cjs.contentCache === esm.contentCache, cjs.getEngine() === esm.getEngine(), globalThis[Symbol.for('wasm-cow.register')].cache === esm.contentCache]));`],
    { cwd: root, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: 'lazy' } },
  );
  assert.deepEqual(JSON.parse(both), [true, true, true]);
});

test('a cache made from another source of the same length is not used (V8 alone would accept it and run the old bytecode)', { skip: !linux && 'native backend only' }, () => {
  withCopy((dir) => {
    const bundle = join(dir, 'dist/register/bundle.cjs');
    const old = readFileSync(bundle, 'utf8');
    const from = 'Registration(null, `WASM_COW_REGISTER=${setting}`';
    assert.ok(old.includes(from));
    const edited = old.replace(from, 'Registration(null, `WASM_COW_REGISTER:${setting}`');
    assert.equal(edited.length, old.length);
    writeFileSync(bundle, edited);
    // The danger: V8 takes the stale cache for the edited source and runs the old code.
    const { header, data } = parts(`${bundle}.v8cache`);
    writeFileSync(join(dir, 'stale.bin'), data);
    const probe = `const vm = require('node:vm'); const fs = require('node:fs'); const file = ${JSON.stringify(bundle)};
      const script = new vm.Script(${JSON.stringify(header.prefix)} + fs.readFileSync(file, 'utf8') + ${JSON.stringify(header.suffix)}, { filename: file, cachedData: fs.readFileSync('stale.bin') });
      const module = { exports: {} }; script.runInThisContext().call(module.exports, module.exports, require, module, file, ${JSON.stringify(join(dir, 'dist/register'))});
      console.log(JSON.stringify({ rejected: script.cachedDataRejected, reason: module.exports.disabledReason }));`;
    const raw = JSON.parse(execFileSync(process.execPath, ['-e', probe], { cwd: dir, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: '0' } })) as unknown;
    assert.deepEqual(raw, { rejected: false, reason: 'WASM_COW_REGISTER=0' }, 'V8 accepted the stale cache and ran the old source');
    // The entries see the mismatch and compile the source they have.
    for (const via of ['import', 'require'] as const) {
      const off = seen(dir, via, '0');
      assert.deepEqual(off.cache, { state: 'mismatch', file: bundle }, via);
      assert.equal(off.reason, 'WASM_COW_REGISTER:0', 'the edited source ran');
      const on = seen(dir, via, 'eager');
      assert.deepEqual([on.cache?.state, on.enabled, on.read, on.prepared], ['mismatch', true, 42, 1], via);
    }
  });
});

test('a missing, truncated or foreign cache is not used, and the hook works; nothing is written at run time', { skip: !linux && 'native backend only' }, () => {
  withCopy((dir) => {
    const bundle = join(dir, 'dist/register/bundle.cjs');
    const cacheFile = `${bundle}.v8cache`;
    const good = readFileSync(cacheFile, 'utf8');
    const nl = good.indexOf('\n');
    const header = JSON.parse(good.slice(0, nl)) as Record<string, unknown>;
    const cases: [string, string | null][] = [
      ['missing', null],
      ['missing', null], // and the check file missing too (removed below)
      ['mismatch', good.slice(0, -8)], // truncated
      ['mismatch', `${JSON.stringify({ ...header, v8: '0.0.0' })}${good.slice(nl)}`], // another V8's
      ['mismatch', `${JSON.stringify({ ...header, prefix: '(function (exports, require, module, __filename, __dirname) {' })}${good.slice(nl)}`], // another wrapper
      ['mismatch', 'not a cache\n'],
      ['mismatch', ''],
    ];
    const check = readFileSync(`${cacheFile}.check`, 'utf8');
    for (const [i, [state, content]] of cases.entries()) {
      if (content === null) rmSync(cacheFile, { force: true });
      else writeFileSync(cacheFile, content);
      if (i === 1) rmSync(`${cacheFile}.check`);
      if (i === 2) writeFileSync(`${cacheFile}.check`, check);
      const before = readdirSync(join(dir, 'dist/register')).sort();
      for (const via of ['import', 'require'] as const) {
        const s = seen(dir, via, 'eager');
        assert.deepEqual([s.cache?.state, s.keys, s.enabled, s.read, s.prepared], [state, EXPORTS, true, 42, 1], `${via}, ${String(content).slice(0, 20)}`);
      }
      assert.deepEqual(readdirSync(join(dir, 'dist/register')).sort(), before, 'the entries wrote nothing');
      assert.equal(existsSync(cacheFile), content !== null);
    }
    // The good cache back: used again.
    writeFileSync(cacheFile, good);
    assert.equal(seen(dir, 'require', 'eager').cache?.state, 'used');
  });
});

test('a cache whose V8 data is corrupted on disk (one byte, in either copy, length unchanged), whose check file is missing or another build\'s, or of an older format, is not used, and the hook works', { skip: !linux && 'native backend only' }, () => {
  withCopy((dir) => {
    const register = join(dir, 'dist/register');
    const bundle = join(register, 'bundle.cjs');
    const cacheFile = `${bundle}.v8cache`;
    const checkFile = `${cacheFile}.check`;
    const good = readFileSync(cacheFile, 'utf8');
    const { header, source, at, b64, check } = parts(cacheFile);
    assert.ok(check !== null);
    assert.equal(check, good.slice(at));
    // A character in the middle of a copy: V8's payload, past its own header
    // (magic number, version, source and flag hashes, lengths), which V8 checks.
    const flip = (text: string, i: number): string => {
      const c = text[i]!;
      assert.match(c, /[A-Za-z0-9+/]/);
      const other = c === 'A' ? 'B' : 'A';
      return text.slice(0, i) + other + text.slice(i + 1);
    };
    const mid = 4 * Math.floor(b64 / 8) + 1;
    const cacheFlipped = flip(good, at + mid);
    const checkFlipped = flip(check, mid);
    // The danger: V8 alone takes the corrupted data (no checksum in release builds), or crashes on it.
    const corrupted = Buffer.from(cacheFlipped.slice(at), 'base64');
    assert.equal(corrupted.length, header.data);
    writeFileSync(join(dir, 'corrupted.bin'), corrupted);
    const probe = `const vm = require('node:vm'); const fs = require('node:fs'); const file = ${JSON.stringify(bundle)};
      const script = new vm.Script(${JSON.stringify(header.prefix)} + fs.readFileSync(file, 'utf8') + ${JSON.stringify(header.suffix)}, { filename: file, cachedData: fs.readFileSync('corrupted.bin') });
      console.log(JSON.stringify({ rejected: script.cachedDataRejected }));`;
    const raw = spawnSync(process.execPath, ['-e', probe], { cwd: dir, encoding: 'utf8' });
    assert.ok(raw.status !== 0 || JSON.parse(raw.stdout).rejected === false, `V8 rejected the corrupted data itself: ${raw.stdout}`);
    // Another build's files: the cache script run on a bundle edited at the
    // same length. V8's data is not the same from one build to the next
    // (even of one source its length varies), so the other check file is
    // cut, or completed with this one's start, to this one's length.
    const script = `${root}scripts/register-cache.mjs`;
    const from = 'Registration(null, `WASM_COW_REGISTER=${setting}`';
    assert.ok(source.includes(from));
    writeFileSync(bundle, source.replace(from, 'Registration(null, `WASM_COW_REGISTER:${setting}`'));
    execFileSync(process.execPath, [script, register], { cwd: dir, encoding: 'utf8' });
    const otherCache = readFileSync(cacheFile, 'utf8');
    const otherCheck = (readFileSync(checkFile, 'utf8') + check).slice(0, check.length);
    assert.equal(otherCheck.length, check.length, 'another build\'s check file, of the same length');
    assert.notEqual(otherCheck, check);
    assert.notEqual(otherCache, good);
    writeFileSync(bundle, source);
    const cases: [string, string, string | null][] = [
      ['a byte flipped in the cache file\'s copy', cacheFlipped, check],
      ['a byte flipped in the check file', good, checkFlipped],
      ['a byte flipped in both copies, at different places', cacheFlipped, flip(check, mid + 4)],
      ['the check file missing', good, null],
      ['the check file truncated', good, check.slice(0, -4)],
      ['the check file empty', good, ''],
      ['the check file of another build (same length)', good, otherCheck],
      ['the cache file of another build (of another source of the same length)', otherCache, check],
      ['the previous format (/2): both copies in the cache file', `${JSON.stringify({ ...header, format: 'wasm-cow-code-cache/2' })}\n${source}${check}${check}`, check],
      ['the previous layout (both copies in the cache file) under the new format', good + check, check],
      ['the old format (/1): one copy', `${JSON.stringify({ ...header, format: 'wasm-cow-code-cache/1' })}\n${source}${check}`, check],
    ];
    for (const [what, content, checkContent] of cases) {
      writeFileSync(cacheFile, content);
      if (checkContent === null) rmSync(checkFile, { force: true });
      else writeFileSync(checkFile, checkContent);
      const before = readdirSync(register).sort();
      for (const via of ['import', 'require'] as const) {
        const s = seen(dir, via, 'eager');
        assert.deepEqual([s.cache?.state, s.keys, s.enabled, s.read, s.prepared], ['mismatch', EXPORTS, true, 42, 1], `${via}, ${what}`);
      }
      assert.deepEqual(readdirSync(register).sort(), before, `${what}: the entries wrote nothing`);
      assert.equal(readFileSync(cacheFile, 'utf8'), content, `${what}: the cache file is left as it was`);
      assert.equal(existsSync(checkFile) ? readFileSync(checkFile, 'utf8') : null, checkContent, `${what}: the check file is left as it was`);
    }
    // The good files back: used again.
    writeFileSync(cacheFile, good);
    writeFileSync(checkFile, check);
    for (const via of ['import', 'require'] as const) assert.equal(seen(dir, via, 'eager').cache?.state, 'used', via);
  });
});

test('a cache V8 rejects (V8 flags changed at run time) is not used, and the hook works', { skip: !linux && 'native backend only' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-flags-'));
  try {
    const setFlags = join(dir, 'set-flags.cjs');
    writeFileSync(setFlags, "require('v8').setFlagsFromString('--no-lazy-feedback-allocation');\n");
    for (const via of ['import', 'require'] as const) {
      const s = seen(root, via, 'eager', ['--require', setFlags]);
      assert.deepEqual([s.cache?.state, s.keys, s.enabled, s.read, s.prepared], ['rejected', EXPORTS, true, 42, 1], via);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('options that may be V8 flags (command line or NODE_OPTIONS) skip the cache without reading it; Node\'s own options do not', { skip: !linux && 'native backend only' }, () => {
  for (const via of ['import', 'require'] as const) {
    for (const flag of ['--max-old-space-size=1234', '--expose-gc', '--stack-size=900', '--experimental-wasm-gc']) {
      const s = seen(root, via, 'eager', [flag]);
      assert.deepEqual([s.cache?.state, s.keys, s.enabled, s.read, s.prepared], ['flags', EXPORTS, true, 42, 1], `${via} ${flag}`);
    }
    for (const flag of ['--enable-source-maps', '--no-warnings', '--conditions=x', '--experimental-vm-modules']) {
      assert.equal(seen(root, via, 'eager', [flag]).cache?.state, 'used', `${via} ${flag}`);
    }
  }
  const viaEnv = JSON.parse(
    execFileSync(process.execPath, ['--require', 'wasm-cow/register', '-e', `console.log(JSON.stringify(globalThis[Symbol.for('wasm-cow.register.codeCache')]))`], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '--max-old-space-size=2048' },
    }),
  ) as { state: string };
  assert.equal(viaEnv.state, 'flags', 'NODE_OPTIONS');
});

test('a program that replaced process.execArgv (not an array of strings) before requiring the hook still loads it (without the cache)', { skip: !linux && 'native backend only' }, () => {
  // The option scan threw at load: TypeError: process.execArgv is not iterable, or o.startsWith is not a function.
  for (const change of ['process.execArgv = undefined;', 'process.execArgv.push(1);', "process.execArgv = ['--no-warnings'];"]) {
    const out = JSON.parse(
      execFileSync(process.execPath, ['-e', `${change} const r = require('wasm-cow/register');
        const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
        const read = new Uint8Array(new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.mem.buffer)[0];
        console.log(JSON.stringify({ state: globalThis[Symbol.for('wasm-cow.register.codeCache')].state, enabled: r.enabled, read, prepared: r.stats().preparedInstantiations }));`], {
        cwd: root, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: 'eager' },
      }),
    ) as Record<string, unknown>;
    assert.deepEqual(out, { state: change.includes("'--no-warnings'") ? 'used' : 'flags', enabled: true, read: 42, prepared: 1 }, change);
  }
});

test('under a policy manifest (--experimental-policy) both entries load the bundle through Node, which checks its integrity', { skip: !linux && 'native backend only' }, () => {
  // Read with node:fs and compiled with node:vm, the bundle (and its cache) escaped the manifest's integrity check.
  const { createHash } = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  const bundle = `${root}dist/register/bundle.cjs`;
  const good = `sha384-${createHash('sha384').update(readFileSync(bundle)).digest('base64')}`;
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-policy-'));
  try {
    for (const [integrity, ok] of [[good, true], [`sha384-${'A'.repeat(64)}`, false]] as const) {
      const policy = join(dir, 'policy.json');
      writeFileSync(policy, JSON.stringify({ onerror: 'throw', scopes: { 'file:': { integrity: true, dependencies: true } }, resources: { [pathToFileURL(bundle).href]: { integrity, dependencies: true } } }));
      for (const via of [['--require', 'wasm-cow/register', '-e'], ['--import', 'wasm-cow/register', '--input-type=module', '-e']]) {
        const r = spawnSync(process.execPath, ['--no-warnings', `--experimental-policy=${policy}`, ...via, `console.log(globalThis[Symbol.for('wasm-cow.register.codeCache')].state)`], { cwd: root, encoding: 'utf8' });
        if (ok) assert.deepEqual([r.status, r.stdout.trim()], [0, 'flags'], via.join(' '));
        else {
          assert.notEqual(r.status, 0, `${via.join(' ')}: loaded a bundle the manifest rejects`);
          assert.match(r.stderr, /ERR_MANIFEST_ASSERT_INTEGRITY/);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('scripts/register-cache.mjs remakes the cache of the bundle beside it (both files), and removes stale ones it cannot remake', { skip: !linux && 'native backend only' }, () => {
  withCopy((dir) => {
    const script = `${root}scripts/register-cache.mjs`;
    const register = join(dir, 'dist/register');
    const cacheFile = join(register, 'bundle.cjs.v8cache');
    const checkFile = `${cacheFile}.check`;
    const files = readdirSync(register).sort();
    assert.ok(files.includes('bundle.cjs.v8cache') && files.includes('bundle.cjs.v8cache.check'));
    writeFileSync(cacheFile, 'stale\n');
    writeFileSync(checkFile, 'stale');
    execFileSync(process.execPath, [script, register], { cwd: dir, encoding: 'utf8' });
    const made = parts(cacheFile);
    assert.equal(made.source, readFileSync(join(dir, 'dist/register/bundle.cjs'), 'utf8'));
    assert.equal(made.check, readFileSync(cacheFile, 'utf8').slice(made.at), 'the check file remade with the cache');
    assert.deepEqual(readdirSync(register).sort(), files, 'no temporary file left');
    assert.equal(seen(dir, 'import', 'lazy').cache?.state, 'used');
    // An entry that does not load the bundle through its loader: no cache, a warning, no failure.
    writeFileSync(join(dir, 'dist/register/index.cjs'), "module.exports = require('./bundle.cjs');\n");
    const out = execFileSync(process.execPath, [script, join(dir, 'dist/register')], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(out, '');
    assert.equal(existsSync(cacheFile), false);
    assert.equal(existsSync(checkFile), false);
  });
});
