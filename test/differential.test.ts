/**
 * Differential: for hand-built modules, an instance made by the engine and a
 * native instance of the original hold identical memory and return
 * identical results, over several tenants of the same pooled memory.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/index.js';
import { BACKENDS, digest, fns, leaseDigest, memoryOf } from './helpers/env.js';
import { buildModule, dropFunc, I32, initFunc, pseudoRandomBytes, stdFuncs, type ModuleSpec } from './helpers/wasm.js';

const KiB = 1024;
const cases: Record<string, ModuleSpec> = {
  'no data': { memories: [{ min: 1, export: 'mem' }], funcs: stdFuncs },
  'one small segment': { memories: [{ min: 1, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 3, bytes: [1, 2, 3] }] },
  'many overlapping segments': {
    memories: [{ min: 3, max: 10, export: 'mem' }],
    funcs: stdFuncs,
    data: Array.from({ length: 200 }, (_, i) => ({ offset: (i * 977) % 150000, bytes: pseudoRandomBytes(1 + (i % 50) * 40, i + 1) })),
  },
  'sparse data, zero pages between': {
    memories: [{ min: 64, export: 'mem' }],
    funcs: stdFuncs,
    data: [
      { offset: 1, bytes: [1] },
      { offset: 64 * 65536 - 1, bytes: [2] },
      { offset: 20 * 65536, bytes: new Uint8Array(3 * 65536) },
    ],
  },
  'zero-filled segments only': { memories: [{ min: 2, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 100, bytes: new Uint8Array(9000) }] },
  'segment ending exactly at the initial size': {
    memories: [{ min: 1, max: 1, export: 'mem' }],
    funcs: stdFuncs,
    data: [{ offset: 65536 - 300, bytes: pseudoRandomBytes(300, 3) }],
  },
  'passive and active with memory.init': {
    memories: [{ min: 1, export: 'mem' }],
    dataCount: true,
    funcs: [...stdFuncs, initFunc(0), initFunc(1), dropFunc(1)],
    data: [
      { offset: 64, bytes: pseudoRandomBytes(256, 4) },
      { passive: true, bytes: pseudoRandomBytes(100, 5) },
    ],
  },
  'dynamic offset (excluded)': {
    importGlobals: [{ module: 'env', name: 'base' }],
    memories: [{ min: 1, export: 'mem' }],
    funcs: stdFuncs,
    data: [{ offset: { global: 0 }, bytes: [5, 6, 7] }],
  },
  'start function writes memory': {
    memories: [{ min: 1, export: 'mem' }],
    funcs: [{ body: [0x41, 8, 0x41, 8, 0x2d, 0, 0, 0x41, 1, 0x6a, 0x3a, 0, 0] }, ...stdFuncs],
    start: 0,
    data: [{ offset: 8, bytes: [41] }],
  },
  'large: 1 MiB of data': {
    memories: [{ min: 20, export: 'mem' }],
    funcs: stdFuncs,
    data: [{ offset: 65536 * 3 + 5, bytes: pseudoRandomBytes(1024 * KiB, 9) }],
  },
};

const imports = { env: { base: 1000 } };

/** A tenant's work: reads, writes in and out of the image, growth. */
function workload(exports: WebAssembly.Exports, seed: number): unknown[] {
  const f = fns(exports);
  const out: unknown[] = [];
  const size = f.size!() * 65536;
  for (let i = 0; i < 20; i++) {
    const addr = (i * 7919 * (seed + 1)) % size;
    out.push(f.load8!(addr));
    f.store8!(addr, (i + seed) & 0xff);
    out.push(f.load8!(addr));
  }
  if (seed % 2 === 1) out.push(f.grow!(1), f.size!());
  if (f.init0) {
    try {
      f.init0(0, 0, 0);
      out.push('init0 ok');
    } catch (e) {
      out.push(String(e));
    }
    f.init1!(300, 10, 50);
    out.push(f.load8!(310));
  }
  return out;
}

for (const backend of BACKENDS) {
  for (const [name, spec] of Object.entries(cases)) {
    for (const backgroundReset of [false, true]) {
      test(`engine equals native: ${name} (${backend}${backgroundReset ? ', background resets' : ''})`, () => {
        const bytes = buildModule(spec);
        const nativeModule = new WebAssembly.Module(bytes);
        const engine = new Engine({ backend, backgroundReset });
        const prepared = engine.prepare(bytes);
        for (let tenant = 0; tenant < 4; tenant++) {
          const native = new WebAssembly.Instance(nativeModule, imports);
          const lease = prepared.instantiate(imports);
          assert.equal(leaseDigest(lease), digest(memoryOf(native)), `fresh memory, tenant ${tenant}`);
          assert.deepEqual(workload(lease.exports, tenant), workload(native.exports, tenant));
          assert.equal(leaseDigest(lease), digest(memoryOf(native)), `after work, tenant ${tenant}`);
          lease.release();
        }
        const s = engine.stats();
        assert.equal(s.instantiations, 4);
        // With background resets, tenant 1 may find tenant 0's memory still
        // resetting, and the odd tenants grow theirs (retired).
        if (!backgroundReset) assert.ok(s.pooledReuses >= 1, 'memories were reused');
        engine.close();
      });
    }
  }
}
