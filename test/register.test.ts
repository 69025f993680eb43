/**
 * wasm-cow/register: what a program observes under the hook is what it
 * observes natively. Each case runs a child process (test/register-child.ts)
 * natively and under `node --import wasm-cow/register` (the package's own
 * export, resolved from dist/), with the lazy and the eager policy, and
 * compares everything it saw: modules from every API (imports, exports,
 * custom sections, instanceof, constructor), errors (class and message),
 * instances (exports, memory contents, calls, grow), subclasses, data for an
 * imported memory, and a module posted to a worker thread (which runs the
 * hook too: `--import` applies to workers).
 *
 * The same checks run with the hook loaded by `node --require
 * wasm-cow/register` (the CommonJS entry, dist/register/index.cjs), which
 * reaches workers the same way (execArgv).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContentCache, fingerprint } from '../src/register/cache.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
// What these tests check is the hook's mechanism: every module that can get
// an image gets one (the default engine with nativeWhenFaster: false; the
// spec's small modules would otherwise run as V8: 'register-small-data').
// Inherited by every child process; a test of the default policy removes it.
process.env['WASM_COW_NATIVE_WHEN_FASTER'] = '0';
const child = fileURLToPath(new URL('./register-child.js', import.meta.url));
const linux = process.platform === 'linux';

type Stats = { instantiations: number; fallbacks: Record<string, number> };
type RegisterStats = { preparedInstantiations: number; nativeInstantiations: number; preparations: number; pending: number };
type Observed = {
  obs: Record<string, unknown> & { worker: { hook: unknown } & Record<string, unknown> };
  hook: { enabled: boolean; register: RegisterStats; engine: Stats; reentrant: number } | null;
};

/** How the hook is loaded: `--import wasm-cow/register` (the ESM entry) or `--require wasm-cow/register` (the CommonJS one). */
type Via = 'import' | 'require';
const VIAS: readonly Via[] = ['import', 'require'];

function run(mode: 'native' | 'lazy' | 'eager' | 'off', args: string[], extraEnv: Record<string, string> = {}, via: Via = 'import'): string {
  const pre = mode === 'native' ? [] : [`--${via}`, 'wasm-cow/register'];
  return execFileSync(process.execPath, [...pre, child, ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, WASM_COW_REGISTER: mode === 'off' ? '0' : mode, ...extraEnv },
  });
}

/** Node's arguments to run `script` (no top-level await) under the hook: an ES module with --import, CommonJS with --require. */
const hookArgs = (via: Via, script: string): string[] =>
  via === 'import' ? ['--import', 'wasm-cow/register', '--input-type=module', '-e', script] : ['--require', 'wasm-cow/register', '-e', script];

const observed = new Map<string, Observed>();
const observe = (mode: 'native' | 'lazy' | 'eager', via: Via = 'import'): Observed => {
  const key = mode === 'native' ? mode : `${mode} ${via}`;
  let o = observed.get(key);
  if (!o) observed.set(key, (o = JSON.parse(run(mode, ['observe'], {}, via)) as Observed));
  return o;
};
/** The observations without the hook's own counters. */
const program = (o: Observed): unknown => ({ ...o.obs, worker: { ...o.obs.worker, hook: null } });

/** Runs an ES module script under `--import wasm-cow/register` with the lazy policy; its stdout parsed as JSON. */
function runLazy(script: string): unknown {
  return JSON.parse(
    execFileSync(process.execPath, ['--import', 'wasm-cow/register', '--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, WASM_COW_REGISTER: 'lazy' },
    }),
  );
}

test('wasm-cow/register resolves to the built hook through the package exports, for import and for require', () => {
  const resolved = import.meta.resolve('wasm-cow/register');
  assert.equal(fileURLToPath(resolved), `${root}dist/register/index.js`);
  assert.equal(createRequire(`${root}package.json`).resolve('wasm-cow/register'), `${root}dist/register/index.cjs`);
});

for (const [mode, via] of VIAS.flatMap((v) => (['lazy', 'eager'] as const).map((m) => [m, v] as const))) {
  test(`under the hook (${mode}, --${via}), the program observes exactly what it does natively`, { skip: !linux && 'native backend only' }, () => {
    const native = observe('native');
    const hooked = observe(mode, via);
    assert.equal(native.hook, null);
    assert.deepEqual(program(hooked), program(native));
    // ... and the hook did route instantiations through the engine.
    const h = hooked.hook!;
    assert.equal(h.enabled, true);
    assert.equal(h.register.pending, 0);
    assert.ok(h.register.preparedInstantiations > 0, `prepared instantiations: ${h.register.preparedInstantiations}`);
    assert.equal(h.engine.instantiations, h.register.preparedInstantiations);
    if (mode === 'eager') {
      assert.equal(h.register.nativeInstantiations, 0, 'eager: every instantiation went through a prepared module');
      assert.equal(h.reentrant, 2, 'an instantiation from inside a start function goes through the engine too');
    }
    else assert.ok(h.register.nativeInstantiations > 0, 'lazy: the first instantiations of a content were native');
    // Besides the used Response, only modules left to V8 whole: with nothing
    // to map, or (eager) an imported memory whose data is too small to beat
    // V8's copy ('register-no-image'), or one the program wrote into first
    // ('non-zero').
    assert.equal(h.engine.fallbacks['register-stream-unread'], 1);
    const allowed = new Set(['register-stream-unread', 'register-no-image', 'non-zero']);
    for (const reason of Object.keys(h.engine.fallbacks)) assert.ok(allowed.has(reason), `unexpected fallback ${reason}`);
  });
}

for (const via of VIAS) {
  test(`a worker thread runs the hook too (--${via}); a module posted to it is instantiated natively, counted as a fallback`, { skip: !linux && 'native backend only' }, () => {
    const w = observe('eager', via).obs.worker.hook as { register: RegisterStats; engine: Stats };
    assert.ok(w, `the worker has the hook (--${via} applies to workers)`);
    assert.equal(w.register.preparedInstantiations, 3, 'the worker’s own module went through its engine');
    assert.deepEqual(w.engine.fallbacks, { 'register-unknown-module': 1 }, 'the posted module: V8, counted');
  });
}

for (const via of VIAS) test(`WASM_COW_REGISTER=0 leaves every WebAssembly global untouched (--${via})`, () => {
  // With --require, the program is CommonJS and require()s the hook's exports.
  const out = execFileSync(
    process.execPath,
    [
      `--${via}`,
      'wasm-cow/register',
      ...(via === 'import' ? ['--input-type=module'] : []),
      '-e',
      `const r = ${via === 'import' ? "await import('wasm-cow/register')" : "require('wasm-cow/register')"};
       const src = [WebAssembly.Module, WebAssembly.Instance, WebAssembly.instantiate, WebAssembly.compile].map((f) => Function.prototype.toString.call(f));
       const m = new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
       new WebAssembly.Instance(m);
       console.log(JSON.stringify({ enabled: r.enabled, reason: r.disabledReason, policy: r.policy, src, stats: r.getEngine().stats().instantiations, hook: r.stats() }));`,
    ],
    { cwd: root, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: '0' } },
  );
  const r = JSON.parse(out) as { enabled: boolean; reason: string; policy: null; src: string[]; stats: number; hook: RegisterStats };
  assert.equal(r.enabled, false);
  assert.equal(r.reason, 'WASM_COW_REGISTER=0');
  assert.equal(r.policy, null);
  // Proxies print as "function () { [native code] }": the originals carry their names.
  assert.deepEqual(r.src, ['Module', 'Instance', 'instantiate', 'compile'].map((n) => `function ${n}() { [native code] }`));
  assert.equal(r.stats, 0);
  assert.equal(r.hook.nativeInstantiations, 0);
});

test('a module compiled before the hook was loaded is left to V8, counted; later ones go through the engine', { skip: !linux && 'native backend only' }, () => {
  const r = JSON.parse(run('native', ['late-hook'], { WASM_COW_REGISTER: 'eager' })) as {
    enabled: boolean;
    instance: unknown;
    after: unknown;
    fallbacks: Record<string, number>;
    register: RegisterStats;
  };
  assert.equal(r.enabled, true);
  assert.deepEqual(r.fallbacks, { 'register-unknown-module': 1 });
  assert.equal(r.register.preparedInstantiations, 1);
  assert.deepEqual(r.after, r.instance, 'both instances show the same');
});

test('ContentCache: exact lookups, fingerprint collisions told apart, bounded by entries and bytes', () => {
  const module = new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
  const cache = new ContentCache({ maxEntries: 3, maxBytes: 10_000 });
  const a = new Uint8Array(4096).fill(1);
  // Same length, same sampled bytes (2,048 samples of 4,096: every other byte
  // but the tail), different content: the fingerprint collides, bytes decide.
  const b = a.slice();
  b[1] = 2;
  assert.equal(fingerprint(a), fingerprint(b));
  const ea = cache.add(a, module);
  assert.equal(cache.get(b), null, 'a colliding fingerprint with other bytes is not a hit');
  const eb = cache.add(b, module);
  assert.notEqual(ea, eb);
  assert.equal(cache.get(a.slice()), ea);
  assert.equal(cache.get(new Uint8Array(b)), eb);
  assert.equal(cache.add(a.slice(), module), ea, 'adding known bytes returns their entry');
  assert.equal(cache.size, 2);
  assert.equal(cache.bytes, 8192);
  // Over maxBytes: the least recently used (a was used last, so b) goes.
  cache.get(a);
  const c = new Uint8Array(3000).fill(3);
  cache.add(c, module);
  assert.equal(cache.get(b), null);
  assert.equal(cache.get(a), ea);
  assert.equal(cache.size, 2);
  // Over maxEntries.
  for (let i = 0; i < 4; i++) cache.add(new Uint8Array(10).fill(10 + i), module);
  assert.equal(cache.size, 3);
  assert.equal(cache.get(a), null);
  cache.clear();
  assert.equal(cache.size, 0);
  assert.equal(cache.bytes, 0);
});

for (const via of VIAS) test(`the 20 spec scripts under the hook (eager: every module through the engine; --${via}) have native outcomes`, { skip: !linux && 'native backend only' }, async () => {
  const { runScript } = await import('./spec/runner.js');
  const dir = fileURLToPath(new URL('../../test/fixtures/spec/json/', import.meta.url));
  const spec = fileURLToPath(new URL('./register-spec-child.js', import.meta.url));
  const out = execFileSync(process.execPath, [`--${via}`, 'wasm-cow/register', spec], {
    cwd: root,
    encoding: 'utf8',
    timeout: 300_000,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, WASM_COW_REGISTER: 'eager' },
  });
  const hooked = JSON.parse(out) as {
    results: Record<string, { line: number; outcome: string; verdict: string }[]>;
    hook: { register: RegisterStats; engine: Stats };
  };
  const scripts = Object.keys(hooked.results);
  assert.equal(scripts.length, 20);
  let commands = 0;
  for (const script of scripts) {
    const native = runScript(dir, script, 'native').results;
    const got = hooked.results[script]!;
    assert.equal(got.length, native.length, script);
    got.forEach((c, i) => {
      assert.equal(c.outcome, native[i]!.outcome, `${script}.json line ${c.line}: under the hook ${c.outcome}, natively ${native[i]!.outcome}`);
      assert.equal(c.verdict, native[i]!.verdict);
    });
    commands += got.length;
  }
  assert.ok(commands > 6000, `compared ${commands} commands`);
  const { register, engine } = hooked.hook;
  console.log(`spec under the hook (--${via}): ${commands} commands; ${JSON.stringify(register)}; fallbacks ${JSON.stringify(engine.fallbacks)}`);
  // Every instantiation went through a prepared module, or was left to V8
  // because the module defines no memory (nothing to map). Some of the
  // prepared ones import spectest's memory and found it holding data or too
  // small for their segments: V8 then wrote those, as natively.
  assert.ok(register.preparedInstantiations > 100, `prepared instantiations: ${register.preparedInstantiations}`);
  assert.equal(register.nativeInstantiations, 0);
  assert.ok((engine.fallbacks['register-no-image'] ?? 0) > 0);
  // 'new-base': position-independent data at a base not seen before is written by V8.
  const allowed = new Set(['register-no-image', 'non-zero', 'out-of-bounds', 'new-base']);
  for (const reason of Object.keys(engine.fallbacks)) assert.ok(allowed.has(reason), `unexpected fallback ${reason}`);
});

for (const via of VIAS) test(`lazy: a content's first native instantiations load no library; fallbacks counted meanwhile reach engine.stats() (--${via})`, { skip: !linux && 'native backend only' }, () => {
  // A module with a defined memory and data (one the hook could prepare),
  // instantiated a few times within one turn (no background preparation can
  // start); then a module compiled by another copy of V8's API (unknown to
  // the hook: a fallback counted while the library is not loaded).
  const script = `const reg = globalThis[Symbol.for('wasm-cow.register')];
    const natives = globalThis[Symbol.for('wasm-cow.natives')];
    const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 11,7,1,0,65,0,11,1,42]);
    const m = new WebAssembly.Module(bytes);
    for (let i = 0; i < 3; i++) new WebAssembly.Instance(m);
    const after3 = reg.libraryLoaded;
    new WebAssembly.Instance(new natives.Module(bytes));
    const afterUnknown = reg.libraryLoaded;
    const fallbacks = reg.engine.stats().fallbacks;
    console.log(JSON.stringify({ after3, afterUnknown, loaded: reg.libraryLoaded, fallbacks, hook: reg.madeHook.stats() }));`;
  const out = JSON.parse(
    execFileSync(process.execPath, hookArgs(via, script), {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, WASM_COW_REGISTER: 'lazy' },
    }),
  ) as { after3: boolean; afterUnknown: boolean; loaded: boolean; fallbacks: Record<string, number>; hook: RegisterStats };
  assert.equal(out.after3, false, 'three native instantiations did not load the library');
  assert.equal(out.afterUnknown, false, 'nor did counting a fallback');
  assert.equal(out.loaded, true, 'getEngine() did');
  assert.deepEqual(out.fallbacks, { 'register-unknown-module': 1 }, 'the fallback counted before reached the engine');
  assert.equal(out.hook.nativeInstantiations, 3);
});

test('lazy: bytes seen once through instantiate(bytes) are not kept; from their second sight on they are', { skip: !linux && 'native backend only' }, () => {
  const script = `const reg = globalThis[Symbol.for('wasm-cow.register')];
    const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
    const first = await WebAssembly.instantiate(bytes);
    const afterFirst = reg.cache.size;
    const again = new WebAssembly.Instance(first.module);
    const second = await WebAssembly.instantiate(bytes);
    await reg.madeHook.settled(); // mostly data: copied after the call returned
    const afterSecond = reg.cache.size;
    const third = await WebAssembly.instantiate(bytes);
    const read = [first, { instance: again }, second, third].map((r) => new Uint8Array(r.instance.exports.mem.buffer)[0]);
    console.log(JSON.stringify({ afterFirst, afterSecond, read, hook: reg.madeHook.stats(), fallbacks: reg.engine.stats().fallbacks }));`;
  const out = runLazy(script) as { afterFirst: number; afterSecond: number; read: number[]; hook: RegisterStats & { modules: number }; fallbacks: Record<string, number> };
  assert.equal(out.afterFirst, 0, 'first sight: nothing kept');
  assert.equal(out.afterSecond, 1, 'second sight: the bytes are kept');
  assert.deepEqual(out.read, [42, 42, 42, 42]);
  assert.equal(out.hook.nativeInstantiations, 4, 'all four by V8 (the policy)');
  assert.deepEqual(out.fallbacks, {}, 'the first-sight module is not counted as unknown');
});

/**
 * A module of mostly code (a function of 400 nops) with an exported memory
 * holding 42 at address 0, and one of mostly data (the same memory and
 * data, no code), as a script's source: CODE() and DATA() make fresh bytes.
 */
const SIGHT_MODULES = `
  const CODE = () => new Uint8Array([0,97,115,109,1,0,0,0, 1,4,1,0x60,0,0, 3,2,1,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0,
    10,0x95,3,1,0x92,3,0, ...new Array(400).fill(1), 0x0b, 11,7,1,0,65,0,11,1,42]);
  const DATA = () => new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
  const reg = globalThis[Symbol.for('wasm-cow.register')];
  const stats = () => reg.madeHook.stats();
  const read = (instance) => new Uint8Array(instance.exports.mem.buffer)[0];
`;

test('lazy, first and second sights of compile(bytes) and instantiate(bytes) as the drop-in: nothing copied at the first; held module, cached compile or deferred copy at the second', { skip: !linux && 'native backend only' }, () => {
  const script = `${SIGHT_MODULES}
    const out = {};
    // instantiate(bytes), mostly code: the first sight holds V8's module, the
    // second compiles from V8's cache and copies at the call (the program
    // changing its bytes right after changes nothing kept).
    let code = CODE();
    const c1 = await WebAssembly.instantiate(code);
    out.code1 = { kept: reg.cache.size, held: stats().heldModules, read: read(c1.instance) };
    const pending = WebAssembly.instantiate(code);
    code[code.length - 1] = 43; // after V8 took the bytes
    const c2 = await pending;
    out.code2 = { kept: reg.cache.size, held: stats().heldModules, cached: stats().cachedCompiles, read: read(c2.instance),
      original: reg.cache.get(CODE()) !== null, changed: reg.cache.get(code) !== null };
    const c3 = await WebAssembly.instantiate(CODE());
    out.code3 = { kept: reg.cache.size, read: read(c3.instance), same: c3.module !== c2.module, cached: stats().cachedCompiles };
    reg.cache.clear();
    // instantiate(bytes), mostly data: nothing held; the second sight is
    // V8's and copied after it returned, unless the program changed its
    // bytes by then.
    let data = DATA();
    await WebAssembly.instantiate(data);
    out.data1 = { kept: reg.cache.size, held: stats().heldModules };
    const d2 = await WebAssembly.instantiate(data);
    data[data.length - 1] = 43; // before the deferred copy
    await reg.madeHook.settled();
    out.data2 = { kept: reg.cache.size, deferred: stats().deferredCopies, dropped: stats().deferredDropped, read: read(d2.instance) };
    data = DATA();
    await WebAssembly.instantiate(data); // a third sight (the second was forgotten): deferred again, copied this time
    await reg.madeHook.settled();
    out.data3 = { kept: reg.cache.size, deferred: stats().deferredCopies, dropped: stats().deferredDropped, original: reg.cache.get(DATA()) !== null };
    reg.cache.clear();
    // compile(bytes), mostly code: as instantiate(bytes).
    const before = stats().cachedCompiles;
    const m1 = await WebAssembly.compile(CODE());
    out.compile1 = { kept: reg.cache.size, held: stats().heldModules };
    const m2 = await WebAssembly.compile(CODE());
    out.compile2 = { kept: reg.cache.size, held: stats().heldModules, cached: stats().cachedCompiles - before,
      reads: [read(new WebAssembly.Instance(m1)), read(new WebAssembly.Instance(m2)), read((await WebAssembly.instantiate(m2)))] };
    const m3 = await WebAssembly.compile(CODE());
    out.compile3 = { kept: reg.cache.size, cached: stats().cachedCompiles - before, read: read(new WebAssembly.Instance(m3)), fresh: m3 !== m2 };
    // V8's own errors, at either sight.
    const bad = new Uint8Array([0,97,115,109,1,0,0,0, 10,9,9]);
    out.errors = [];
    for (let i = 0; i < 2; i++) for (const f of [() => WebAssembly.compile(bad), () => WebAssembly.instantiate(bad)]) {
      try { await f(); out.errors.push('resolved'); } catch (e) { out.errors.push(e.constructor.name + ': ' + e.message); }
    }
    out.fallbacks = reg.engine.stats().fallbacks;
    console.log(JSON.stringify(out));`;
  const out = runLazy(script) as Record<string, Record<string, unknown>> & { errors: string[]; fallbacks: Record<string, number> };
  assert.deepEqual(out.code1, { kept: 0, held: 1, read: 42 }, 'first sight, mostly code: nothing kept, the module held');
  assert.deepEqual(
    out.code2,
    { kept: 1, held: 0, cached: 1, read: 42, original: true, changed: false },
    'second sight: compiled from the cache, the bytes V8 compiled kept (not the ones changed after the call)',
  );
  assert.deepEqual(out.code3, { kept: 1, read: 42, same: true, cached: 2 }, 'third sight: the kept content, a new Module as natively, from the cache');
  assert.deepEqual(out.data1, { kept: 0, held: 0 }, 'first sight, mostly data: nothing kept or held');
  assert.deepEqual(out.data2, { kept: 0, deferred: 1, dropped: 1, read: 42 }, 'bytes changed before the deferred copy: dropped, counted');
  assert.deepEqual(out.data3, { kept: 1, deferred: 2, dropped: 1, original: true }, 'unchanged: copied after the call');
  assert.deepEqual(out.compile1, { kept: 0, held: 1 }, 'compile, first sight: nothing kept');
  assert.deepEqual(out.compile2, { kept: 1, held: 0, cached: 1, reads: [42, 42, 42] }, 'compile, second sight: compiled from the cache and kept');
  assert.deepEqual(out.compile3, { kept: 1, cached: 2, read: 42, fresh: true }, 'compile, known bytes: a new Module from the cache');
  assert.deepEqual(out.fallbacks, {}, 'no module counted as unknown');
  // The errors are V8's: the same as natively (the script without the hook).
  const native = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', `const bad = new Uint8Array([0,97,115,109,1,0,0,0, 10,9,9]); const errors = [];
      for (let i = 0; i < 2; i++) for (const f of [() => WebAssembly.compile(bad), () => WebAssembly.instantiate(bad)]) {
        try { await f(); errors.push('resolved'); } catch (e) { errors.push(e.constructor.name + ': ' + e.message); }
      }
      console.log(JSON.stringify(errors));`],
    { encoding: 'utf8' },
  );
  assert.deepEqual(out.errors, JSON.parse(native) as string[]);
  assert.equal(out.errors.length, 4);
});

test('lazy: new WebAssembly.Module(bytes) keeps nothing at the first sight of the bytes (holds V8 module of code), keeps them within the call from the second; eager keeps at once', { skip: !linux && 'native backend only' }, () => {
  const script = `${SIGHT_MODULES}
    const out = {};
    // Mostly code: the first sight holds V8's module, copies nothing.
    let code = CODE();
    const m1 = new WebAssembly.Module(code);
    out.code1 = { kept: reg.cache.size, held: stats().heldModules, read: read(new WebAssembly.Instance(m1)) };
    const m2 = new WebAssembly.Module(code);
    code[code.length - 1] = 43; // right after the call: the kept bytes are the ones V8 compiled
    out.code2 = { kept: reg.cache.size, held: stats().heldModules, original: reg.cache.get(CODE()) !== null, changed: reg.cache.get(code) !== null,
      reads: [read(new WebAssembly.Instance(m1)), read(new WebAssembly.Instance(m2)), read(new WebAssembly.Instance(new WebAssembly.Module(code)))] };
    reg.cache.clear();
    // Mostly data: nothing held at the first sight either (the changed
    // code's first sight above holds its module).
    const h0 = stats().heldModules;
    const d1 = new WebAssembly.Module(DATA());
    out.data1 = { kept: reg.cache.size, held: stats().heldModules - h0 };
    const d2 = new WebAssembly.Module(DATA());
    out.data2 = { kept: reg.cache.size, reads: [read(new WebAssembly.Instance(d1)), read(new WebAssembly.Instance(d2))] };
    // V8's own errors, at either sight.
    const bad = new Uint8Array([0,97,115,109,1,0,0,0, 10,9,9]);
    out.errors = [];
    for (let i = 0; i < 2; i++) { try { new WebAssembly.Module(bad); out.errors.push('made'); } catch (e) { out.errors.push(e.constructor.name + ': ' + e.message); } }
    out.kept = reg.cache.size;
    out.native = stats().nativeInstantiations;
    out.fallbacks = reg.engine.stats().fallbacks;
    console.log(JSON.stringify(out));`;
  const out = runLazy(script) as Record<string, unknown> & { errors: string[] };
  assert.deepEqual(out.code1, { kept: 0, held: 1, read: 42 }, 'first sight, mostly code: nothing kept, the module held');
  assert.deepEqual(out.code2, { kept: 1, held: 0, original: true, changed: false, reads: [42, 42, 43] }, 'second sight: kept within the call');
  assert.deepEqual(out.data1, { kept: 0, held: 0 }, 'first sight, mostly data: nothing kept or held');
  assert.deepEqual(out.data2, { kept: 1, reads: [42, 42] }, 'second sight, mostly data: kept');
  assert.equal(out.errors.length, 2);
  assert.equal(out.errors[0], out.errors[1]);
  assert.match(out.errors[0]!, /^CompileError: WebAssembly.Module\(\)/);
  assert.equal(out.kept, 1, 'bytes V8 rejects are never kept');
  assert.equal(out.native, 6, 'every instantiation here was V8 (the lazy policy had not prepared anything)');
  assert.deepEqual(out.fallbacks, {}, 'modules of a first sight are not counted as unknown');
  // Eager: the first sight keeps the bytes (the program asked to prepare everything).
  const eager = JSON.parse(
    execFileSync(process.execPath, ['--import', 'wasm-cow/register', '--input-type=module', '-e', `${SIGHT_MODULES}
      const m = new WebAssembly.Module(CODE()); const kept = reg.cache.size;
      console.log(JSON.stringify({ kept, read: read(new WebAssembly.Instance(m)), prepared: stats().preparedInstantiations }));`], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, WASM_COW_REGISTER: 'eager' },
    }),
  ) as unknown;
  assert.deepEqual(eager, { kept: 1, read: 42, prepared: 1 });
});

test('new WebAssembly.Module with a new.target whose prototype getter changes the bytes before V8 reads them: the hook keeps what V8 compiled, under its own fingerprint, and never throws where V8 does not', { skip: !linux && 'native backend only' }, () => {
  const script = `${SIGHT_MODULES}
    const out = {};
    const A = CODE();
    const B = CODE(); B[B.length - 1] = 43; // same length, another fingerprint
    let change = null;
    // V8 reads new.target.prototype before the bytes: a Proxy's trap runs there.
    const NT = new Proxy(function () {}, { get(t, p, r) { if (p === 'prototype' && change) { change(); change = null; } return Reflect.get(t, p, r); } });
    NT.prototype = WebAssembly.Module.prototype;
    const bytes = A.slice();
    new WebAssembly.Module(bytes); // first sight of A
    change = () => bytes.set(B);
    const m = Reflect.construct(WebAssembly.Module, [bytes], NT); // second sight of A's fingerprint; V8 compiles B
    out.changed = { read: read(new WebAssembly.Instance(m)), kept: reg.cache.size, B: reg.cache.get(B) !== null, A: reg.cache.get(A) !== null };
    new WebAssembly.Module(B.slice());
    out.again = reg.cache.size; // B found: not kept twice
    // A resizable buffer shrunk under a length-tracking view: V8 compiles
    // the shorter bytes.
    reg.cache.clear();
    const D = DATA();
    new WebAssembly.Module(A.slice()); // first sight of A again
    const rab = new ArrayBuffer(A.length, { maxByteLength: A.length });
    const tracking = new Uint8Array(rab);
    tracking.set(A);
    change = () => { rab.resize(D.length); tracking.set(D); };
    try {
      const m2 = Reflect.construct(WebAssembly.Module, [tracking], NT);
      out.shrunk = { read: read(new WebAssembly.Instance(m2)), D: reg.cache.get(D) !== null };
    } catch (e) {
      out.shrunk = String(e);
    }
    console.log(JSON.stringify(out));`;
  const out = runLazy(script) as Record<string, unknown>;
  assert.deepEqual(out.changed, { read: 43, kept: 1, B: true, A: false }, "the kept bytes are B's, found by B's fingerprint");
  assert.equal(out.again, 1);
  assert.deepEqual(out.shrunk, { read: 42, D: true }, 'V8 compiled the shrunk bytes; the hook kept them, and threw nothing');
});

test('lazy: a Response is left to V8 at the first sight of its URL (not read twice), read beside V8 and kept from the second', { skip: !linux && 'native backend only' }, () => {
  const script = `${SIGHT_MODULES}
    const { createServer } = await import('node:http');
    const served = [];
    const server = createServer((req, res) => {
      served.push(req.url);
      res.writeHead(200, { 'content-type': 'application/wasm' });
      res.end(req.url === '/data.wasm' ? DATA() : CODE());
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const base = 'http://127.0.0.1:' + server.address().port;
    const out = {};
    const m1 = await WebAssembly.compileStreaming(fetch(base + '/code.wasm'));
    out.compile1 = { kept: reg.cache.size, read: read(new WebAssembly.Instance(m1)) };
    const m2 = await WebAssembly.compileStreaming(fetch(base + '/code.wasm'));
    out.compile2 = { kept: reg.cache.size, read: read(new WebAssembly.Instance(m2)) };
    const r1 = await WebAssembly.instantiateStreaming(fetch(base + '/data.wasm'));
    out.instantiate1 = { kept: reg.cache.size, read: read(r1.instance) };
    const r2 = await WebAssembly.instantiateStreaming(fetch(base + '/data.wasm'));
    out.instantiate2 = { kept: reg.cache.size, read: read(r2.instance) };
    // A Response without a URL: read beside V8 at once, as before.
    const seven = DATA();
    seven[seven.length - 1] = 7;
    const r3 = await WebAssembly.instantiateStreaming(new Response(seven, { headers: { 'content-type': 'application/wasm' } }));
    out.noUrl = { kept: reg.cache.size, read: read(r3.instance) };
    out.served = served;
    out.fallbacks = reg.engine.stats().fallbacks;
    server.close();
    console.log(JSON.stringify(out));`;
  const out = runLazy(script) as Record<string, unknown>;
  assert.deepEqual(out.compile1, { kept: 0, read: 42 }, 'first sight of the URL: nothing read beside V8, nothing kept');
  assert.deepEqual(out.compile2, { kept: 1, read: 42 }, 'second sight: kept');
  assert.deepEqual(out.instantiate1, { kept: 1, read: 42 });
  assert.deepEqual(out.instantiate2, { kept: 2, read: 42 });
  assert.deepEqual(out.noUrl, { kept: 3, read: 7 }, 'a Response with no URL is read at its first sight');
  assert.deepEqual(out.served, ['/code.wasm', '/code.wasm', '/data.wasm', '/data.wasm']);
  assert.deepEqual(out.fallbacks, {}, 'first-sight modules are not counted as unknown');
});

for (const via of VIAS) test(`loading the hook loads no engine until the program first uses WebAssembly; switched off, it patches and keeps nothing (--${via})`, { skip: !linux && 'native backend only' }, () => {
  const script = `const reg = globalThis[Symbol.for('wasm-cow.register')];
    const before = reg.madeHook !== null;
    const stashed = globalThis[Symbol.for('wasm-cow.natives')] !== undefined;
    new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
    console.log(JSON.stringify({ before, stashed, after: reg.madeHook !== null }));`;
  const go = (mode: string) =>
    JSON.parse(
      execFileSync(process.execPath, hookArgs(via, script), {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, WASM_COW_REGISTER: mode },
      }),
    ) as { before: boolean; stashed: boolean; after: boolean };
  assert.deepEqual(go('lazy'), { before: false, stashed: true, after: true });
  assert.deepEqual(go('0'), { before: false, stashed: false, after: false });
});

test('--require and --import of wasm-cow/register together install the hook once: one registration, one set of proxies', { skip: !linux && 'native backend only' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-register-'));
  try {
    // Preloads run in order: --require ones, then --import ones. After.cjs
    // notes the globals the CommonJS entry installed.
    const after = join(dir, 'after.cjs');
    const { writeFileSync } = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
    writeFileSync(after, `globalThis.afterRequire = { Module: WebAssembly.Module, instantiate: WebAssembly.instantiate, reg: globalThis[Symbol.for('wasm-cow.register')] };`);
    const script = `const { createRequire } = await import('node:module');
      const cjs = createRequire(process.cwd() + '/package.json')('wasm-cow/register');
      const esm = await import('wasm-cow/register');
      const a = globalThis.afterRequire;
      const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
      const i = new WebAssembly.Instance(new WebAssembly.Module(bytes));
      console.log(JSON.stringify({
        sameModule: WebAssembly.Module === a.Module, sameInstantiate: WebAssembly.instantiate === a.instantiate,
        sameRegistration: globalThis[Symbol.for('wasm-cow.register')] === a.reg, sameCache: cjs.contentCache === esm.contentCache,
        enabled: [cjs.enabled, esm.enabled], read: new Uint8Array(i.exports.mem.buffer)[0],
        stats: [cjs.stats(), esm.stats()], engines: cjs.getEngine() === esm.getEngine(), instantiations: esm.getEngine().stats().instantiations,
      }));`;
    const out = JSON.parse(
      execFileSync(process.execPath, ['--require', 'wasm-cow/register', '--require', after, '--import', 'wasm-cow/register', '--input-type=module', '-e', script], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, WASM_COW_REGISTER: 'eager' },
      }),
    ) as Record<string, unknown> & { stats: RegisterStats[] };
    assert.equal(out.sameModule, true, 'the ESM entry replaced no global the CommonJS one installed');
    assert.equal(out.sameInstantiate, true);
    assert.equal(out.sameRegistration, true);
    assert.equal(out.sameCache, true, 'both entries export the one registration');
    assert.deepEqual(out.enabled, [true, true]);
    assert.equal(out.read, 42);
    assert.deepEqual(out.stats[0], out.stats[1]);
    assert.equal(out.stats[0]!.preparedInstantiations, 1, 'one instantiation, through one hook');
    assert.equal(out.engines, true);
    assert.equal(out.instantiations, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the hook loads the addon only when it first prepares a module; an addon that is there but fails to load then leaves every instantiation to V8, counted', { skip: !linux && 'native backend only' }, () => {
  const script = `const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
    const r = globalThis[Symbol.for('wasm-cow.register')];
    const loaded = () => globalThis[Symbol.for('wasm-cow.binding')] !== undefined;
    const atStart = loaded();
    const reads = [];
    for (let i = 0; i < 3; i++) reads.push(new Uint8Array(new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.mem.buffer)[0]);
    const afterInstances = loaded();
    const engine = r.engine;
    console.log(JSON.stringify({ enabled: r.policy !== null, atStart, afterInstances, atEngine: loaded(), backend: engine.backend, reads,
      prepared: r.madeHook.stats().preparedInstantiations, fallbacks: engine.stats().fallbacks }));`;
  const run = (cwd: string, mode: string) =>
    JSON.parse(execFileSync(process.execPath, ['--require', 'wasm-cow/register', '-e', script], { cwd, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: mode } })) as Record<string, unknown>;
  // Lazy: three instantiations of bytes seen three times stay V8's, and load nothing.
  assert.deepEqual(run(root, 'lazy'), { enabled: true, atStart: false, afterInstances: false, atEngine: true, backend: 'native', reads: [42, 42, 42], prepared: 0, fallbacks: {} });
  // Eager: the first instantiation prepares, which loads the addon.
  assert.deepEqual(run(root, 'eager'), { enabled: true, atStart: false, afterInstances: true, atEngine: true, backend: 'native', reads: [42, 42, 42], prepared: 3, fallbacks: {} });
  // A file where the addon should be that does not load: V8 does everything, the reason is counted.
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-badaddon-'));
  try {
    cpSync(`${root}package.json`, join(dir, 'package.json'));
    cpSync(`${root}dist`, join(dir, 'dist'), { recursive: true });
    mkdirSync(join(dir, 'build/Release'), { recursive: true });
    writeFileSync(join(dir, 'build/Release/wasm_cow.node'), 'not an ELF file\n');
    const bad = run(dir, 'eager');
    // (A load that failed is not shared between copies of the loader: no global then.)
    assert.deepEqual(bad, { enabled: true, atStart: false, afterInstances: false, atEngine: false, backend: 'copy', reads: [42, 42, 42], prepared: 0, fallbacks: { 'register-engine-error': 3 } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('under --no-addons, or the permission model without --allow-addons, the hook is off with the reason at start (Node refuses the addon), as before the addon loaded with the library', { skip: !linux && 'native backend only' }, () => {
  // The addon's file is there, so the hook said it was on, then counted every instantiation as register-engine-error.
  const script = `const r = require('wasm-cow/register'); const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
    const read = new Uint8Array(new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.mem.buffer)[0];
    console.log(JSON.stringify({ enabled: r.enabled, reason: r.disabledReason, read, module: Function.prototype.toString.call(WebAssembly.Module) }));`;
  const go = (flags: string[], env: Record<string, string> = {}) =>
    JSON.parse(execFileSync(process.execPath, [...flags, '-e', script], { cwd: root, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: 'eager', ...env } })) as Record<string, unknown>;
  const off = (reason: string) => ({ enabled: false, reason: `the native backend is not available (${reason})`, read: 42, module: 'function Module() { [native code] }' });
  assert.deepEqual(go(['--no-addons']), off('Node runs with --no-addons'));
  assert.deepEqual(go([], { NODE_OPTIONS: '--no-addons' }), off('Node runs with --no-addons'));
  const permission = ['--experimental-permission', '--allow-fs-read=*', '--no-warnings'];
  assert.deepEqual(go(permission), off('the permission model forbids addons (no --allow-addons)'));
  const allowed = go([...permission, '--allow-addons']);
  assert.equal(allowed.enabled, true);
  assert.equal(allowed.reason, null);
});

test('without esbuild-wasm (no devDependencies), the build still gives a CommonJS entry, which loads the ES module one', { skip: !linux && 'native backend only' }, () => {
  // A copy of the package without node_modules: scripts/bundle-register.mjs
  // finds no esbuild-wasm there and writes the one-line index.cjs.
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-nodev-'));
  try {
    cpSync(`${root}package.json`, join(dir, 'package.json'));
    cpSync(`${root}scripts`, join(dir, 'scripts'), { recursive: true });
    cpSync(`${root}dist`, join(dir, 'dist'), { recursive: true });
    symlinkSync(`${root}build`, join(dir, 'build'));
    rmSync(join(dir, 'dist/register/index.cjs'));
    // The entry as tsc builds it (an install without devDependencies never bundles it): the test build's twin.
    cpSync(`${root}out/src/register/index.js`, join(dir, 'dist/register/index.js'));
    const built = execFileSync(process.execPath, [join(dir, 'scripts/bundle-register.mjs')], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(built, '');
    const { readFileSync } = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
    const cjs = readFileSync(join(dir, 'dist/register/index.cjs'), 'utf8');
    assert.match(cjs, /^module\.exports = require\('\.\/index\.js'\);$/m);
    const go = (mode: string) =>
      JSON.parse(
        execFileSync(
          process.execPath,
          ['--require', 'wasm-cow/register', '-e', `const r = require('wasm-cow/register');
            const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
            const i = new WebAssembly.Instance(new WebAssembly.Module(bytes));
            console.log(JSON.stringify({ file: require.resolve('wasm-cow/register'), enabled: r.enabled, read: new Uint8Array(i.exports.mem.buffer)[0], prepared: r.stats().preparedInstantiations }));`],
          { cwd: dir, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: mode } },
        ),
      ) as { file: string; enabled: boolean; read: number; prepared: number };
    assert.deepEqual(go('eager'), { file: join(dir, 'dist/register/index.cjs'), enabled: true, read: 42, prepared: 1 });
    assert.deepEqual(go('0'), { file: join(dir, 'dist/register/index.cjs'), enabled: false, read: 42, prepared: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const how of ['freeze', 'frozen-intrinsics'] as const) {
  test(`a WebAssembly whose globals cannot be replaced (${how}) switches the hook off, with the reason, instead of throwing at load (require after startup, and --import)`, { skip: !linux && 'native backend only' }, () => {
    // Object.freeze(WebAssembly.Instance.prototype) (as a lockdown does) made
    // the load throw after WebAssembly.Module had been replaced: half a hook.
    const pre = how === 'freeze' ? 'Object.freeze(WebAssembly.Instance.prototype);' : '';
    const flags = how === 'freeze' ? [] : ['--frozen-intrinsics', '--no-warnings'];
    const tail = `const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
      const i = new WebAssembly.Instance(new WebAssembly.Module(bytes));
      console.log(JSON.stringify({ enabled: r.enabled, reason: r.disabledReason, read: new Uint8Array(i.exports.mem.buffer)[0],
        module: Function.prototype.toString.call(WebAssembly.Module), prepared: r.stats().preparedInstantiations }));`;
    const runs: string[][] = [
      [...flags, '-e', `${pre} const r = require('wasm-cow/register'); ${tail}`],
      ...(how === 'frozen-intrinsics' ? [[...flags, '--import', 'wasm-cow/register', '--input-type=module', '-e', `const r = await import('wasm-cow/register'); ${tail}`]] : []),
    ];
    for (const args of runs) {
      const out = JSON.parse(execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: 'eager' } })) as Record<string, unknown>;
      assert.equal(out.enabled, false, args.join(' '));
      assert.match(String(out.reason), /cannot be replaced/);
      assert.equal(out.read, 42);
      assert.equal(out.module, 'function Module() { [native code] }', 'no global was replaced');
      assert.equal(out.prepared, 0);
    }
  });
}

for (const flag of ['--jitless', '--no-expose-wasm']) {
  test(`under ${flag} (no WebAssembly global) the hook switches off with the reason instead of throwing at the program's start (--require and --import)`, () => {
    // It read WebAssembly unguarded: ReferenceError: WebAssembly is not defined, and the program never started.
    for (const via of [['--require', 'wasm-cow/register', '-e'], ['--import', 'wasm-cow/register', '--input-type=module', '-e']]) {
      const out = JSON.parse(
        execFileSync(process.execPath, [flag, '--no-warnings', ...via, `const r = globalThis[Symbol.for('wasm-cow.register')];
          console.log(JSON.stringify({ wasm: typeof WebAssembly, on: r.policy !== null, reason: r.disabledReason }));`], {
          cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, WASM_COW_REGISTER: 'eager' },
        }),
      ) as Record<string, unknown>;
      assert.deepEqual(out, { wasm: 'undefined', on: false, reason: 'WebAssembly is not available (--jitless or --no-expose-wasm?)' }, via.join(' '));
    }
  });
}

test('a frozen global object switches the hook off with the reason; loading it throws nothing and replaces no global (both entries)', { skip: !linux && 'native backend only' }, () => {
  // Registering on the frozen global threw after the proxies were installed: the program got an exception and a hook.
  const tail = `const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 5,3,1,0,1, 7,7,1,3,109,101,109,2,0, 11,7,1,0,65,0,11,1,42]);
    const read = new Uint8Array(new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.mem.buffer)[0];
    console.log(JSON.stringify({ enabled: r.enabled, reason: r.disabledReason, read, module: Function.prototype.toString.call(WebAssembly.Module) }));`;
  // A file for require() (node -e itself assigns globalThis.module, which a frozen global refuses).
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-frozen-global-'));
  try {
    const cjs = join(dir, 'frozen.cjs');
    writeFileSync(cjs, `Object.freeze(globalThis); const r = require(${JSON.stringify(`${root}dist/register/index.cjs`)}); ${tail}`);
    for (const args of [[cjs], ['--input-type=module', '-e', `Object.freeze(globalThis); const r = await import('wasm-cow/register'); ${tail}`]]) {
      const out = JSON.parse(execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: 'eager' } })) as Record<string, unknown>;
      assert.deepEqual(out, { enabled: false, reason: 'the global object is not extensible (frozen?)', read: 42, module: 'function Module() { [native code] }' }, args.join(' '));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the CommonJS entry runs in strict mode, as the ES module entry does (its "use strict" comes first)', () => {
  // The banner (a comment and a const) used to come before esbuild's "use
  // strict", which then was no directive: index.cjs ran in sloppy mode.
  const cjs = `${root}dist/register/index.cjs`;
  const probe = `const { readFileSync } = require('node:fs'); const Module = require('node:module');
    const m = new Module(${JSON.stringify(cjs)}); m.filename = ${JSON.stringify(cjs)}; m.paths = Module._nodeModulePaths(${JSON.stringify(`${root}dist/register`)});
    m._compile(readFileSync(${JSON.stringify(cjs)}, 'utf8') + '\\nmodule.exports.__strict = (function () { return this === undefined; })();', ${JSON.stringify(cjs)});
    console.log(JSON.stringify({ strict: m.exports.__strict, enabled: m.exports.enabled }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', probe], { cwd: root, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: '0' } })) as { strict: boolean; enabled: boolean };
  assert.deepEqual(out, { strict: true, enabled: false });
});

test('without process.getBuiltinModule (Node before 20.16) the library cannot load from the hook: getEngine() says which Node it needs', { skip: !linux && 'native backend only' }, () => {
  const out = execFileSync(
    process.execPath,
    ['-e', `delete process.getBuiltinModule; const r = require('wasm-cow/register');
      try { r.getEngine(); console.log('loaded'); } catch (e) { console.log(e.message); }`],
    { cwd: root, encoding: 'utf8', env: { ...process.env, WASM_COW_REGISTER: 'lazy' } },
  );
  assert.match(out, /^wasm-cow\/register: loading the library needs Node 20\.19 or later \(this is v\d+/);
});

/**
 * Script source: `reg` (the hook's registration), `mod`, a module importing
 * its memory ("m" "mem", 64 pages) with N = 2 MiB of 7s at offset 0 (its
 * bytes compiled twice: the lazy policy keeps bytes from their second
 * sight), `read(mem)` (its first and last data byte and the one after) and
 * an empty `reads`.
 */
const IMPORTED_MEMORY_MODULE = `const reg = globalThis[Symbol.for('wasm-cow.register')];
  const leb = (n) => { const out = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; out.push(b); } while (n); return out; };
  const N = 2 * 1024 * 1024;
  const head = [0,97,115,109,1,0,0,0, 2,10,1, 1,109, 3,109,101,109, 2,0,64];
  const seg = [1, 0, 65,0,11, ...leb(N)];
  const bytes = new Uint8Array(head.length + 1 + leb(seg.length + N).length + seg.length + N);
  bytes.set([...head, 11, ...leb(seg.length + N), ...seg]);
  bytes.fill(7, bytes.length - N);
  new WebAssembly.Module(bytes);
  const mod = new WebAssembly.Module(bytes);
  const read = (mem) => { const b = new Uint8Array(mem.buffer); return [b[0], b[N - 1], b[N]]; };
  const reads = [];`;

/**
 * A module that imports its memory and has 2 MiB of data at offset 0: its
 * only image is for the imported memory, which only a synchronous
 * instantiation can take. Instantiated asynchronously (as pglite is), the
 * hook never compiles its rewrite, under either policy; the first
 * synchronous instantiation has it compiled (eager: within that call; lazy:
 * in the background, from it), and the next one maps the image.
 */
for (const mode of ['eager', 'lazy'] as const) {
  test(`${mode}: a module whose only image is for an imported memory is not compiled again while it is only instantiated asynchronously; the first synchronous instantiation has it compiled`, { skip: !linux && 'native backend only' }, () => {
    const script = `${IMPORTED_MEMORY_MODULE}
      for (let i = 0; i < 4; i++) {
        const mem = new WebAssembly.Memory({ initial: 64 });
        await WebAssembly.instantiate(mod, { m: { mem } });
        reads.push(read(mem));
        await new Promise((r) => setTimeout(r, 1));
      }
      await reg.madeHook.settled();
      const afterAsync = reg.madeHook.stats();
      const addonAfterAsync = globalThis[Symbol.for('wasm-cow.binding')] !== undefined;
      for (let i = 0; i < 3; i++) {
        const mem = new WebAssembly.Memory({ initial: 64 });
        new WebAssembly.Instance(mod, { m: { mem } });
        reads.push(read(mem));
        await reg.madeHook.settled();
      }
      console.log(JSON.stringify({ reads, afterAsync, addonAfterAsync, after: reg.madeHook.stats(), engine: reg.engine.stats() }));`;
    const out = JSON.parse(
      execFileSync(process.execPath, ['--import', 'wasm-cow/register', '--input-type=module', '-e', script], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, WASM_COW_REGISTER: mode },
      }),
    ) as { reads: number[][]; afterAsync: RegisterStats; addonAfterAsync: boolean; after: RegisterStats; engine: Stats & { bytesMapped: number } };
    assert.deepEqual(out.reads, new Array(7).fill([7, 7, 0]), 'every instance holds the data, as natively');
    assert.equal(out.afterAsync.preparations, 0, 'no rewrite compiled while only asynchronous instantiations came');
    assert.equal(out.afterAsync.preparedInstantiations, 0);
    assert.equal(out.addonAfterAsync, false, 'not even planned: the module defines no memory (the library and its addon not loaded)');
    assert.ok((out.engine.fallbacks['register-imported-memory-async'] ?? 0) >= (mode === 'eager' ? 4 : 1), JSON.stringify(out.engine.fallbacks));
    assert.equal(out.after.preparations, 1, 'compiled once a synchronous instantiation came');
    // eager: all three synchronous ones through the rewrite; lazy: the first by V8, the others through it.
    assert.equal(out.after.preparedInstantiations, mode === 'eager' ? 3 : 2);
    assert.ok(out.engine.bytesMapped >= N_MAPPED, `image mapped (${out.engine.bytesMapped} bytes)`);
  });
}
const N_MAPPED = 2 * 1024 * 1024;

/**
 * Lazy: the background preparation of an imported-memory-only module is
 * scheduled by an asynchronous instantiation, and a synchronous one comes
 * before it runs (while the content is 'preparing'). That synchronous
 * instantiation asked for the images: the preparation must compile the
 * rewrite, not stop at the plan ('imported'), so that the next synchronous
 * instantiation maps the image (as it did before the 'imported' stop).
 */
test('lazy: a synchronous instantiation that comes while the background preparation of an imported-memory module is pending has the rewrite compiled', { skip: !linux && 'native backend only' }, () => {
  const script = `${IMPORTED_MEMORY_MODULE}
    let asked = false;
    for (let i = 0; i < 500 && !asked; i++) {
      const mem = new WebAssembly.Memory({ initial: 64 });
      const p = WebAssembly.instantiate(mod, { m: { mem } });
      if (reg.madeHook.stats().pending > 0) {
        // This asynchronous instantiation has just scheduled the preparation: a synchronous one comes before it runs.
        const mem2 = new WebAssembly.Memory({ initial: 64 });
        new WebAssembly.Instance(mod, { m: { mem: mem2 } });
        reads.push(read(mem2));
        asked = true;
      }
      await p;
      reads.push(read(mem));
      await new Promise((r) => setTimeout(r, 1));
    }
    await reg.madeHook.settled();
    const before = reg.madeHook.stats();
    const mem = new WebAssembly.Memory({ initial: 64 });
    new WebAssembly.Instance(mod, { m: { mem } });
    reads.push(read(mem));
    console.log(JSON.stringify({ asked, reads, before, after: reg.madeHook.stats() }));`;
  const out = JSON.parse(
    execFileSync(process.execPath, ['--import', 'wasm-cow/register', '--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, WASM_COW_REGISTER: 'lazy' },
    }),
  ) as { asked: boolean; reads: number[][]; before: RegisterStats; after: RegisterStats };
  assert.ok(out.asked, 'the lazy policy scheduled a preparation from an asynchronous instantiation');
  assert.deepEqual(out.reads, new Array(out.reads.length).fill([7, 7, 0]), 'every instance holds the data, as natively');
  assert.equal(out.before.preparations, 1, 'the synchronous instantiation made while it was pending had the rewrite compiled');
  assert.equal(out.after.preparedInstantiations, out.before.preparedInstantiations + 1, 'the next synchronous instantiation maps the image');
});

/**
 * A module with too little data for an image in a new memory to beat V8's
 * copy (two bytes in a 2-page memory), at a constant offset or at an
 * imported global's value (a conditional image, checked at each
 * instantiation, in the memory the module defines): under the default
 * policy the hook's one-shot instantiations would each run as V8 does (the
 * second was imaged, about twice native's time per instantiation: see
 * notes/s8-rev16), so it compiles no rewrite and leaves them to V8
 * ('register-small-data'), with native results.
 */
const SMALL_DATA = [
  {
    where: 'at a constant offset',
    // (memory (export "mem") 2) (data (i32.const 8) "\2a\2b")
    bytes: '[0,97,115,109,1,0,0,0, 5,3,1,0,2, 7,7,1,3,109,101,109,2,0, 11,8,1,0,65,8,11,2,42,43]',
    imports: '{}',
  },
  {
    where: "at a global's offset",
    // (import "env" "g" (global i32)) (memory (export "mem") 2) (data (global.get 0) "\2a\2b")
    bytes: '[0,97,115,109,1,0,0,0, 2,10,1,3,101,110,118,1,103,3,127,0, 5,3,1,0,2, 7,7,1,3,109,101,109,2,0, 11,8,1,0,35,0,11,2,42,43]',
    imports: "{ env: { g: new WebAssembly.Global({ value: 'i32' }, 8) } }",
  },
];
for (const { where, bytes, imports } of SMALL_DATA) {
  for (const mode of ['eager', 'lazy'] as const) {
    test(`${mode}: a module with too little data ${where} is left to V8 ('register-small-data'), no rewrite compiled`, { skip: !linux && 'native backend only' }, () => {
      const script = `const reg = globalThis[Symbol.for('wasm-cow.register')];
        const bytes = new Uint8Array(${bytes});
        const imports = ${imports};
        const reads = [];
        for (let i = 0; i < 40; i++) {
          const b = new Uint8Array(new WebAssembly.Instance(new WebAssembly.Module(bytes), imports).exports.mem.buffer);
          reads.push(b[8] * 256 + b[9]);
          await new Promise((r) => setTimeout(r, 1));
        }
        await reg.madeHook.settled();
        const b = new Uint8Array(new WebAssembly.Instance(new WebAssembly.Module(bytes), imports).exports.mem.buffer);
        reads.push(b[8] * 256 + b[9]);
        console.log(JSON.stringify({ reads, hook: reg.madeHook.stats(), engine: reg.engine.stats() }));`;
      const env: NodeJS.ProcessEnv = { ...process.env, WASM_COW_REGISTER: mode };
      delete env['WASM_COW_NATIVE_WHEN_FASTER'];
      const out = JSON.parse(execFileSync(process.execPath, ['--import', 'wasm-cow/register', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env })) as {
        reads: number[];
        hook: RegisterStats;
        engine: Stats;
      };
      assert.deepEqual(out.reads, new Array(41).fill(42 * 256 + 43));
      assert.equal(out.hook.preparations, 0, 'no rewrite compiled');
      assert.equal(out.hook.preparedInstantiations, 0);
      // Eager decides at the first instantiation; lazy once its native ones have cost what a compile does.
      const small = out.engine.fallbacks['register-small-data'] ?? 0;
      assert.ok(mode === 'eager' ? small === 41 : small >= 1, JSON.stringify(out.engine.fallbacks));
      assert.deepEqual(Object.keys(out.engine.fallbacks), ['register-small-data']);
    });
  }
}

/**
 * A module with no memory at all (it neither defines nor imports one):
 * nothing to map whatever the API, so every instantiation, asynchronous or
 * synchronous, falls back as 'register-no-image' (as before the
 * imported-memory stop), never as 'register-imported-memory-async', which
 * says the module's memories are imported. And the library is still not
 * loaded by its asynchronous instantiations.
 */
for (const mode of ['eager', 'lazy'] as const) {
  test(`${mode}: a module with no memory at all falls back as 'register-no-image', asynchronously too`, { skip: !linux && 'native backend only' }, () => {
    const script = `const reg = globalThis[Symbol.for('wasm-cow.register')];
      // (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
      const bytes = new Uint8Array([0,97,115,109,1,0,0,0, 1,7,1,96,2,127,127,1,127, 3,2,1,0, 7,7,1,3,97,100,100,0,0, 10,9,1,7,0,32,0,32,1,106,11]);
      new WebAssembly.Module(bytes); // a first sight (the lazy policy keeps the bytes from the second)
      const mod = new WebAssembly.Module(bytes);
      const sums = [];
      // Lazy: until the hook decided (its native instantiations, counted in its stats, have cost a compile),
      // then 5 more, which fall back (at most 3000).
      let after = 0;
      for (let i = 0; i < 3000 && after < 5; i++) {
        const native = reg.madeHook.stats().nativeInstantiations;
        sums.push((await WebAssembly.instantiate(mod)).exports.add(i, 1) - i);
        if (reg.madeHook.stats().nativeInstantiations === native) after++;
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1));
      }
      await reg.madeHook.settled();
      const addonAfterAsync = globalThis[Symbol.for('wasm-cow.binding')] !== undefined;
      for (let i = 0; i < 3; i++) {
        sums.push(new WebAssembly.Instance(mod).exports.add(i, 2));
        await reg.madeHook.settled();
      }
      console.log(JSON.stringify({ sums, addonAfterAsync, hook: reg.madeHook.stats(), engine: reg.engine.stats() }));`;
    const out = JSON.parse(
      execFileSync(process.execPath, ['--import', 'wasm-cow/register', '--input-type=module', '-e', script], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, WASM_COW_REGISTER: mode },
      }),
    ) as { sums: number[]; addonAfterAsync: boolean; hook: RegisterStats; engine: Stats };
    assert.deepEqual(out.sums, [...new Array(out.sums.length - 3).fill(1), 2, 3, 4]);
    assert.equal(out.addonAfterAsync, false, 'not planned: the library and its addon not loaded');
    assert.equal(out.hook.preparations, 0);
    assert.deepEqual(Object.keys(out.engine.fallbacks), ['register-no-image'], JSON.stringify(out.engine.fallbacks));
    // eager: every instantiation; lazy: those after its native ones cost what a compile does (5 asynchronous, then 3).
    const counted = out.engine.fallbacks['register-no-image']!;
    assert.ok(mode === 'eager' ? counted === out.sums.length && counted === 8 : counted === 8, JSON.stringify(out.engine.fallbacks));
  });
}

