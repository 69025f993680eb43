/**
 * Instance reuse, seeded fuzzing: mutants of the reuse test module (bit
 * flips and byte changes anywhere: code, constants, segment offsets, table
 * and global types, the start function's index). For every mutant V8
 * accepts: prepare with reuse never throws anything but V8's own errors;
 * every tenant, the second one on a reused instance where the module is
 * eligible, equals a fresh native instance: instantiation outcome, state
 * (memory, globals, tables) and the result of every export called.
 *
 * WASM_COW_REUSE_FUZZ_INPUTS (default 1,500) and WASM_COW_SEED set the run.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/index.js';
import { unexposedInstance } from '../src/lease.js';
import { parseModule } from '../src/binary/reader.js';
import { readModuleInfo } from '../src/reuse/module-info.js';
import { referenceModule, reuseModule, stateOf } from './helpers/reuse-module.js';
import { rng } from './helpers/wasm.js';

const INPUTS = Number(process.env['WASM_COW_REUSE_FUZZ_INPUTS'] ?? 1500);
const SEED = Number(process.env['WASM_COW_SEED'] ?? 424242);

type Fn = (...args: unknown[]) => unknown;
const importsFor = (t: number) => ({ env: { f: (x: number) => (x * 31 + t) | 0, k: 1234 } });

const result = (f: () => unknown): string => {
  try {
    const v = f();
    return `ok ${typeof v === 'bigint' ? `${v}n` : typeof v === 'function' ? 'function' : String(v)}`;
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
};

/** Calls every exported function with fixed arguments; the results in order. */
const SAFE = new Set(['store', 'setg32', 'setgf', 'tset', 'setfr', 'tfill', 'minit', 'one', 'load', 'callf']);

function exercise(exports: WebAssembly.Exports, args: readonly unknown[][], safeOnly: boolean): string[] {
  const out: string[] = [];
  let k = 0;
  for (const name of Object.keys(exports).sort()) {
    // Reading a memory, table or global export from lease.exports would hand it out: the instance would not be reused.
    if (name.startsWith('\u0000') || (safeOnly && !SAFE.has(name)) || name === 'mem' || name === 'tab' || name === 'g6') continue;
    const f = exports[name];
    if (typeof f !== 'function') continue;
    const a = args[k++ % args.length]!;
    out.push(`${name}: ${result(() => (f as Fn)(...a))}`);
  }
  return out;
}

function mutate(bytes: Uint8Array, r: () => number): Uint8Array<ArrayBuffer> {
  const out = bytes.slice();
  const n = 1 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const at = 8 + Math.floor(r() * (out.length - 8));
    if (r() < 0.5) out[at] = out[at]! ^ (1 << Math.floor(r() * 8));
    else out[at] = Math.floor(r() * 256);
  }
  return out;
}

test(`reuse fuzz: ${INPUTS} mutants, reused tenants equal native (seed ${SEED})`, () => {
  const r = rng(SEED);
  const engine = new Engine({ backend: 'native', maxInstances: 100_000 });
  let valid = 0;
  let eligible = 0;
  let reusedBefore = 0;
  let declined = {};
  try {
    for (let i = 0; i < INPUTS; i++) {
      const bytes = mutate(reuseModule(1 + (i % 5)), r);
      if (!WebAssembly.validate(bytes)) {
        assert.throws(() => engine.prepare(bytes, { reuse: true }), WebAssembly.CompileError);
        continue;
      }
      valid++;
      const p = engine.prepare(bytes, { reuse: true });
      let info = null;
      try {
        info = readModuleInfo(bytes, parseModule(bytes));
      } catch {
        info = null;
      }
      if (p.reuse.enabled) eligible++;
      // A native reference with the private exports, when the module can be read; the original otherwise.
      const reference = info !== null ? referenceModule(bytes) : new WebAssembly.Module(bytes);
      const args: unknown[][] = [[7, 3], [1], [0, 2], [65535, 9], [2, 1]];
      for (let t = 0; t < 3; t++) {
        let native: WebAssembly.Instance | null = null;
        const nativeOutcome = result(() => void (native = new WebAssembly.Instance(reference, importsFor(t))));
        let lease: ReturnType<typeof p.instantiate> | null = null;
        const ours = result(() => void (lease = p.instantiate(importsFor(t))));
        assert.equal(ours, nativeOutcome, `input ${i} tenant ${t}: instantiation`);
        if (lease === null || native === null) continue;
        const l = lease as ReturnType<typeof p.instantiate>;
        const n = native as WebAssembly.Instance;
        if (info !== null && (n.exports['mem'] instanceof WebAssembly.Memory)) {
          assert.deepEqual(stateOf(unexposedInstance(l)), stateOf(n), `input ${i} tenant ${t}: state`);
        }
        // Scalar arguments only; functions that take i64 get a number and throw the same TypeError on both.
        const a = t === 0 ? [[1, 1]] : args;
        assert.deepEqual(exercise(l.exports, a, t === 0), exercise(n.exports, a, t === 0), `input ${i} tenant ${t}: calls`);
        l.release();
      }
    }
    reusedBefore = engine.stats().instancesReused;
    declined = engine.stats().reuseDeclined;
  } finally {
    engine.close();
  }
  console.log(`inputs ${INPUTS}, valid ${valid}, eligible ${eligible}, instances reused ${reusedBefore}, dropped ${JSON.stringify(declined)}`);
  assert.ok(valid > INPUTS / 20, `${valid} valid`);
  assert.ok(reusedBefore > 0);
});
