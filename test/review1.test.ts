/**
 * Findings of adversarial review 1 (review/README.md there):
 *  - placements into one imported memory are bounded in mappings (VMAs);
 *  - position-independent data at a base never seen before gets no image
 *    (V8 writes it: no memfd per instantiation);
 *  - the imports are read once, in V8's order, and V8 reads exactly what
 *    the engine read (getters and Proxy traps answering differently).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Engine } from '../src/index.js';
import type { Backend } from '../src/backend/backend.js';
import { MAPPINGS_PER_MEMORY, reserveProcessMappings, resetProcessMappings } from '../src/mappings.js';
import { binding, digest, fns } from './helpers/env.js';
import { buildModule, stdFuncs } from './helpers/wasm.js';

const PAGE = 4096;
const WASM_PAGE = 65536;
const memfdVmas = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('memfd:')).length;

/** (import "env" "memory" (memory 1)) (import "env" "__memory_base" (global i32)) data at the base. */
const picImported = (bytes: Uint8Array, globals = 1) =>
  buildModule({
    importMemory: { module: 'env', name: 'memory', min: 1 },
    importGlobals: Array.from({ length: globals }, () => ({ module: 'env', name: '__memory_base' })),
    funcs: stdFuncs,
    data: Array.from({ length: globals }, (_, g) => ({ offset: { global: g }, bytes })),
  });

test('placements into one imported memory: its mappings stay bounded, the bytes equal native', () => {
  const bytes = picImported(new Uint8Array(PAGE).fill(0xab));
  const native = new WebAssembly.Module(bytes);
  // nativeWhenFaster off: every base gets an image and is mapped, as long as the memory's bound allows.
  const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
  const p = engine.prepare(bytes);
  const count = 1500;
  const pages = Math.ceil((count * 2 * PAGE) / WASM_PAGE) + 1;
  const ours = new WebAssembly.Memory({ initial: pages });
  const theirs = new WebAssembly.Memory({ initial: pages });
  const before = memfdVmas();
  for (let i = 0; i < count; i++) {
    const base = i * 2 * PAGE + (i % 3 === 0 ? 100 : 0); // some bases not page-aligned: edge pages written
    new WebAssembly.Instance(native, { env: { memory: theirs, __memory_base: base } });
    p.instantiate({ env: { memory: ours, __memory_base: base } }).release();
  }
  const added = memfdVmas() - before;
  // Each image mapped into the memory is one memfd mapping; the engine also keeps a view of each
  // image it caches (at most 16 per plan).
  assert.ok(added > 0 && added <= MAPPINGS_PER_MEMORY + 16, `image mappings are bounded: ${added} added`);
  const inMemory = binding().mappingCount(ours, 100000);
  assert.ok(inMemory <= MAPPINGS_PER_MEMORY, `the memory's mappings (VMAs) are bounded: ${inMemory}`);
  assert.equal(digest(ours), digest(theirs));
  const stats = engine.stats();
  assert.ok(stats.bytesMapped > 0, 'placements were mapped while the bound allowed');
  assert.ok((stats.fallbacks.mappings ?? 0) >= count - MAPPINGS_PER_MEMORY, `counted: ${JSON.stringify(stats.fallbacks)}`);
  engine.close();
});

test('the process-wide bound: placements never take the process past half of vm.max_map_count', () => {
  const max = Number.parseInt(readFileSync('/proc/sys/vm/max_map_count', 'utf8'), 10);
  const ceiling = Math.floor(max / 2);
  const at = (total: number) => ({ processMappings: (limit: number) => Math.min(total, limit) }) as unknown as Backend;
  resetProcessMappings();
  assert.equal(reserveProcessMappings(at(ceiling - 4), 2), false, 'near the ceiling: refused');
  assert.equal(reserveProcessMappings(at(0), 2), false, 'refusals are not counted again at once');
  resetProcessMappings();
  assert.equal(reserveProcessMappings(at(1000), 2), true);
  // The allowance is an eighth of the headroom: spent, the process is counted again.
  let granted = 1;
  while (reserveProcessMappings(at(ceiling), 2)) granted++;
  assert.equal(granted, Math.floor(Math.floor((ceiling - 1000) / 8) / 2));
  assert.equal(reserveProcessMappings({ processMappings: () => null } as unknown as Backend, 2), false, 'unknown: refused');
  resetProcessMappings();
});

test('position-independent data into an imported memory: a new base gets no image, a base seen before does', () => {
  // Enough data for the small-data gate to let it through (src/policy.ts: about 4 MiB for an imported memory).
  const DATA_PAGES = 1100;
  const BASES = 12;
  const data = new Uint8Array(DATA_PAGES * PAGE).fill(0xcd);
  const bytes = picImported(data);
  const native = new WebAssembly.Module(bytes);
  const engine = new Engine({ backend: 'native' });
  const p = engine.prepare(bytes);
  const span = (DATA_PAGES + 1) * PAGE;
  const ours = new WebAssembly.Memory({ initial: Math.ceil((BASES * span) / WASM_PAGE) + 1 });
  const theirs = new WebAssembly.Memory({ initial: Math.ceil((BASES * span) / WASM_PAGE) + 1 });
  for (let i = 0; i < BASES; i++) {
    new WebAssembly.Instance(native, { env: { memory: theirs, __memory_base: i * span } });
    p.instantiate({ env: { memory: ours, __memory_base: i * span } }).release();
  }
  assert.equal(digest(ours), digest(theirs));
  assert.equal(engine.stats().imagesBuilt, 0, 'no image for bases seen once');
  assert.ok((engine.stats().fallbacks['new-base'] ?? 0) >= 4);
  assert.ok(engine.stats().nativeInstantiations['unusable-image'] > 0, 'failing checks are then skipped');
  engine.close();

  // The same base into fresh memories: the first time V8 writes it, then it is imaged.
  const e2 = new Engine({ backend: 'native' });
  const p2 = e2.prepare(bytes);
  for (let i = 0; i < 3; i++) {
    const pages = Math.ceil((4096 + DATA_PAGES * PAGE) / WASM_PAGE);
    const a = new WebAssembly.Memory({ initial: pages });
    const b = new WebAssembly.Memory({ initial: pages });
    new WebAssembly.Instance(native, { env: { memory: b, __memory_base: 4096 } });
    p2.instantiate({ env: { memory: a, __memory_base: 4096 } }).release();
    assert.equal(digest(a), digest(b));
  }
  assert.equal(e2.stats().imagesBuilt, 1);
  assert.equal(e2.stats().fallbacks['new-base'], 1);
  assert.ok(e2.stats().bytesMapped >= 2 * DATA_PAGES * PAGE);
  e2.close();
});

/** Runs `instantiate` on imports built by `make`, logging every Get the caller's objects see. */
function observe(
  make: (log: string[]) => WebAssembly.Imports,
  instantiate: (imports: WebAssembly.Imports) => WebAssembly.Instance,
): { log: string[]; outcome: string; instance: WebAssembly.Instance | null } {
  const log: string[] = [];
  const imports = make(log);
  try {
    return { log, outcome: 'ok', instance: instantiate(imports) };
  } catch (e) {
    return { log, outcome: `${(e as Error).constructor.name}: ${(e as Error).message}`, instance: null };
  }
}

const DATA = new Uint8Array(16 * PAGE).map((_, i) => (i * 7 + 1) & 255);

for (const nativeWhenFaster of [true, false]) {
  test(`imports read once, in V8's order; V8 gets what was read (nativeWhenFaster: ${nativeWhenFaster})`, () => {
    const engine = new Engine({ backend: 'native', nativeWhenFaster });
    const mk = (globals: number) => {
      const bytes = picImported(DATA, globals);
      return { p: engine.prepare(bytes), m: new WebAssembly.Module(bytes) };
    };
    const one = mk(1);
    const two = mk(2); // (env, __memory_base) imported twice
    // Each variant: memories A and B, imports whose reads answer differently each time.
    type Variant = (A: WebAssembly.Memory, B: WebAssembly.Memory, log: string[]) => WebAssembly.Imports;
    const variants: Record<string, [Variant, typeof one]> = {
      'memory getter': [(A, B, log) => {
        let n = 0;
        return { env: { get memory() { log.push('memory'); return n++ === 0 ? A : B; }, __memory_base: 64 } };
      }, one],
      'base getter': [(A, _B, log) => {
        let n = 0;
        return { env: { memory: A, get __memory_base() { log.push('base'); return n++ === 0 ? 64 : 70000; } } };
      }, one],
      'env getter': [(A, B, log) => {
        let n = 0;
        return { get env() { log.push('env'); return { memory: n++ === 0 ? A : B, __memory_base: 8192 }; } } as WebAssembly.Imports;
      }, one],
      'Proxy imports and namespace': [(A, B, log) => {
        let n = 0;
        const env = new Proxy({}, {
          get: (_t, k) => { log.push(`env.${String(k)}`); return k === 'memory' ? (n++ === 0 ? A : B) : 128; },
          getOwnPropertyDescriptor: (_t, k) => { log.push(`gopd ${String(k)}`); return undefined; },
          has: (_t, k) => { log.push(`has ${String(k)}`); return false; },
          getPrototypeOf: () => { log.push('getPrototypeOf'); return null; },
        });
        return new Proxy({}, { get: (_t, k) => { log.push(`imports.${String(k)}`); return env; } }) as WebAssembly.Imports;
      }, one],
      'the same import twice, answering differently': [(A, _B, log) => {
        let n = 0;
        return { env: { memory: A, get __memory_base() { log.push('base'); return [64, 70000][n++] ?? 0; } } };
      }, two],
      'a Global subclass with its own value getter': [(A, _B, log) => {
        class G extends WebAssembly.Global {
          override get value(): number { log.push('G.value'); return 4096 * 5; }
        }
        return { env: { memory: A, __memory_base: new G({ value: 'i32', mutable: false }, 256) } };
      }, one],
    };
    for (const [name, [variant, mod]] of Object.entries(variants)) {
      const run = (instantiate: (imports: WebAssembly.Imports) => WebAssembly.Instance) => {
        const A = new WebAssembly.Memory({ initial: 3 });
        const B = new WebAssembly.Memory({ initial: 3 });
        const r = observe((log) => variant(A, B, log), instantiate);
        const f = r.instance ? fns(r.instance.exports) : null;
        return { log: r.log.join(','), outcome: r.outcome, A: digest(A), B: digest(B), at: f ? [f.load8!(64), f.load8!(256), f.load8!(70000)] : null };
      };
      const nat = run((imports) => new WebAssembly.Instance(mod.m, imports));
      const cow = run((imports) => mod.p.instantiate(imports).instance);
      assert.deepEqual(cow, nat, name);
    }
    engine.close();
  });
}

test('imports read once: failures are V8\'s own, at the same read', () => {
  const bytes = picImported(DATA);
  const m = new WebAssembly.Module(bytes);
  const engine = new Engine({ backend: 'native' });
  const p = engine.prepare(bytes);
  const thrown = new RangeError('from a getter');
  const cases: Record<string, (log: string[]) => WebAssembly.Imports> = {
    'env getter throws': (log) => ({ get env(): never { log.push('env'); throw thrown; } }) as WebAssembly.Imports,
    'memory getter throws': (log) => ({ env: { get memory(): never { log.push('memory'); throw thrown; }, get __memory_base() { log.push('base'); return 0; } } }),
    'env getter throws on its second read': (log) => {
      let n = 0;
      const env = { memory: new WebAssembly.Memory({ initial: 1 }), __memory_base: 0 };
      return { get env() { log.push('env'); if (n++ > 0) throw thrown; return env; } } as WebAssembly.Imports;
    },
    'env is a number, read by a getter': (log) => ({ get env() { log.push('env'); return 5; } }) as unknown as WebAssembly.Imports,
    'the base is missing': (log) => ({ get env() { log.push('env'); return { memory: new WebAssembly.Memory({ initial: 1 }) }; } }) as WebAssembly.Imports,
  };
  for (const [name, make] of Object.entries(cases)) {
    const errorOf = (f: () => unknown) => {
      try {
        f();
        return null;
      } catch (e) {
        return e;
      }
    };
    const nl: string[] = [];
    const ne = errorOf(() => new WebAssembly.Instance(m, make(nl)));
    const cl: string[] = [];
    const ce = errorOf(() => p.instantiate(make(cl)));
    assert.deepEqual(cl, nl, `${name}: the same reads`);
    if (ne === thrown) assert.equal(ce, thrown, `${name}: the same exception object`);
    else assert.deepEqual([(ce as Error).constructor, (ce as Error).message], [(ne as Error).constructor, (ne as Error).message], name);
  }
  assert.equal(engine.stats().liveLeases, 0);
  engine.close();
});
