/**
 * Real packages from npm, unmodified, under `node --import wasm-cow/register`:
 * each app in test/fixtures/register/ runs natively, under the hook's
 * default (lazy) policy and under the eager one, and must print exactly the
 * same. A second `--import` (report.mjs) writes what the hook did, so that
 * the test also checks the packages' modules went through the engine.
 *
 *  - @swc/wasm: wasm-bindgen's nodejs target compiles and instantiates at
 *    require time (new WebAssembly.Module / Instance); transforms TypeScript.
 *  - esbuild-wasm: Go's wasm_exec.js glue, WebAssembly.instantiate(bytes);
 *    minifies TypeScript. (Its own Node API runs the module in a worker
 *    started with execArgv: [] or in a child process: --import reaches
 *    neither; NODE_OPTIONS reaches the child process.)
 *  - web-tree-sitter + tree-sitter-javascript: an Emscripten main module and
 *    a dynamically linked grammar, both on an imported memory, instantiated
 *    asynchronously (left to V8, counted: see register-imported-memory-async);
 *    parses JavaScript.
 *  - @ffmpeg/core: Emscripten, WebAssembly.instantiate(bytes), three runs;
 *    encodes a lavfi sine to WAV.
 *  - sql.js: Emscripten, WebAssembly.instantiate(bytes), three runs; too
 *    little data for an image in a new memory to beat V8's copy, so left to
 *    V8 ('register-small-data') under the default policy.
 *
 * The CommonJS apps (swc, esbuild's Go glue, ffmpeg) run under `node
 * --require wasm-cow/register` as well (the CommonJS entry, with
 * report.cjs), and must print the same again.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const apps = `${root}test/fixtures/register/`;
const linux = process.platform === 'linux';

interface Report {
  enabled: boolean;
  register: { preparedInstantiations: number; nativeInstantiations: number; preparations: number };
  engine: { instantiations: number; bytesMapped: number; fallbacks: Record<string, number> };
}

type Via = 'import' | 'require';

function run(mode: 'native' | 'lazy' | 'eager', app: string, args: string[], via: Via = 'import'): { out: string; report: Report | null } {
  const dir = mkdtempSync(join(tmpdir(), 'wasm-cow-register-'));
  const file = join(dir, 'report.json');
  try {
    const reporter = via === 'import' ? `${apps}report.mjs` : `${apps}report.cjs`;
    const pre = mode === 'native' ? [] : [`--${via}`, 'wasm-cow/register', `--${via}`, reporter];
    const out = execFileSync(process.execPath, [...pre, `${apps}${app}`, ...args], {
      cwd: root, // where wasm-cow/register resolves (the package's own export)
      encoding: 'utf8',
      timeout: 180_000,
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, WASM_COW_REGISTER: mode, WASM_COW_REPORT: file },
    });
    const report = mode === 'native' ? null : (JSON.parse(readFileSync(file, 'utf8')) as Report);
    return { out, report };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function same(app: string, args: string[], check: (eager: Report, lazy: Report | null) => void, expect?: RegExp, lazyToo = true, vias: readonly Via[] = ['import']): void {
  const native = run('native', app, args);
  if (expect) assert.match(native.out, expect);
  assert.ok(native.out.length > 0, 'the app printed something');
  for (const via of vias) {
    const lazy = lazyToo ? run('lazy', app, args, via) : { out: native.out, report: null };
    const eager = run('eager', app, args, via);
    assert.equal(lazy.out, native.out, `lazy (--${via}): output equals native`);
    assert.equal(eager.out, native.out, `eager (--${via}): output equals native`);
    console.log(`${app} --${via}: lazy ${JSON.stringify(lazy.report)}\n${app} --${via}: eager ${JSON.stringify(eager.report)}`);
    if (lazyToo) assert.equal(lazy.report!.enabled, true);
    assert.equal(eager.report!.enabled, true);
    check(eager.report!, lazy.report!);
  }
}

/** The CommonJS apps run under both entries of the hook. */
const BOTH: readonly Via[] = ['import', 'require'];

test('@swc/wasm transforms TypeScript under the hook (--import and --require) exactly as natively', { skip: !linux && 'native backend only' }, () => {
  same('swc.cjs', [], (eager, lazy) => {
    assert.equal(eager.register.preparedInstantiations, 1, 'eager: the module was instantiated through the engine');
    assert.ok(eager.engine.bytesMapped > 0, 'with its data mapped');
    assert.equal(lazy!.register.nativeInstantiations, 1, 'lazy: one instantiation, native');
    assert.equal(lazy!.register.preparations, 0, 'lazy: a module instantiated once is never prepared');
  }, /class Shape/, true, BOTH);
});

test('esbuild-wasm (Go glue) minifies TypeScript under the hook (--import and --require) exactly as natively', { skip: !linux && 'native backend only' }, () => {
  same('esbuild-go.cjs', ['1'], (eager) => {
    assert.equal(eager.register.preparedInstantiations, 1);
    assert.deepEqual(eager.engine.fallbacks, {});
    // One instantiation: under the lazy policy that is V8's alone (as swc shows); the Go
    // runtime's start-up makes each run seconds long, so it runs natively and eagerly only.
  }, /class Shape/, false, BOTH);
});

test('web-tree-sitter parses JavaScript with the npm grammar under the hook exactly as natively', { skip: !linux && 'native backend only' }, () => {
  same('tree-sitter.mjs', [], (eager) => {
    // Both modules import their memory and are instantiated asynchronously
    // (or, the main module, have too little data to beat V8's copy): V8
    // applies their data, as natively, and the hook says why, once each.
    const f = eager.engine.fallbacks;
    for (const reason of Object.keys(f)) assert.ok(['register-imported-memory-async', 'register-no-image'].includes(reason), reason);
    assert.equal(Object.values(f).reduce((a, b) => a + b, 0), 2);
  }, /^\(program .*\n\d+ nodes, error: false\n$/);
});

test('@ffmpeg/core encodes a sine to WAV under the hook (--import and --require) exactly as natively', { skip: !linux && 'native backend only' }, () => {
  same('ffmpeg.cjs', ['3'], (eager, lazy) => {
    assert.equal(eager.register.preparedInstantiations, 3);
    assert.deepEqual(eager.engine.fallbacks, {});
    assert.equal(lazy!.register.preparedInstantiations + lazy!.register.nativeInstantiations, 3);
  }, /run 2: ret 0, 88278 bytes/, true, BOTH);
});

test('sql.js (too little data for an image in a new memory to win) queries under the hook exactly as natively, left to V8 without a compile (--import and --require)', { skip: !linux && 'native backend only' }, () => {
  same('sqljs.cjs', ['3'], (eager, lazy) => {
    // The default policy: each of the hook's one-shot instantiations would run as V8 does ('adaptive').
    assert.equal(eager.register.preparations, 0, 'eager: no rewrite compiled');
    assert.equal(eager.register.preparedInstantiations, 0);
    assert.deepEqual(eager.engine.fallbacks, { 'register-small-data': 3 });
    assert.equal(lazy!.register.preparations, 0, 'lazy: none either');
  }, /run 2: \[\[7,168,"value 9,value 30/, true, BOTH);
});
