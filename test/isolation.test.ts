/**
 * Tenant isolation, randomised and seeded: many tenants over a handful of
 * images in one engine. Each tenant writes random bytes to random pages
 * (inside and outside the image), sometimes grows its memory, sometimes
 * traps mid-way, and is released. Every new tenant's memory must equal a
 * fresh native instance's, byte for byte (SHA-256 of the whole memory).
 *
 * WASM_COW_ISOLATION_CYCLES (default 10,000 per backend) and
 * WASM_COW_SEED set the run; `npm run soak` runs a long one.
 */
import test from 'node:test';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { Engine, type BackendKind, type PreparedModule } from '../src/index.js';
import { bufferOf } from '../src/memory.js';
import { BACKENDS, digest, fns, leaseMemory, memoryOf } from './helpers/env.js';
import { buildModule, I32, pseudoRandomBytes, rng, stdFuncs, type ModuleSpec } from './helpers/wasm.js';

const CYCLES = Number(process.env['WASM_COW_ISOLATION_CYCLES'] ?? 10_000);
const SEED = Number(process.env['WASM_COW_SEED'] ?? 20261127);

// store8(addr, value) then unreachable: a tenant that traps mid-way.
const writeThenTrap = { export: 'trap', params: [I32, I32], body: [0x20, 0, 0x20, 1, 0x3a, 0, 0, 0x00] };
const funcs = [...stdFuncs, writeThenTrap];
const specs: ModuleSpec[] = [
  // Three images of one size class: transitions between them in one slot.
  { memories: [{ min: 2, max: 4, export: 'mem' }], funcs, data: [{ offset: 4096 + 17, bytes: pseudoRandomBytes(9000, 1) }] },
  { memories: [{ min: 2, max: 4, export: 'mem' }], funcs, data: [{ offset: 65536 + 5, bytes: pseudoRandomBytes(300, 2) }, { offset: 3, bytes: [1, 2, 3] }] },
  { memories: [{ min: 2, max: 4, export: 'mem' }], funcs },
  // Excluded (dynamic offset): V8 copies its data into a pooled zero memory.
  {
    importGlobals: [{ module: 'env', name: 'base' }],
    memories: [{ min: 3, export: 'mem' }],
    funcs,
    data: [{ offset: { global: 0 }, bytes: pseudoRandomBytes(5000, 3) }],
  },
  // Cannot grow; image fills the whole memory.
  { memories: [{ min: 1, max: 1, export: 'mem' }], funcs, data: [{ offset: 0, bytes: pseudoRandomBytes(65536, 4) }] },
];
const imports = { env: { base: 7777 } };

// The native backend three times: rewriting dirty pages in place (default)
// or always discarding them (keepResident 0), on the background reset
// thread (default) or inside release().
type Config = { backend: BackendKind; keepResident: number; backgroundReset: boolean };
const configs = BACKENDS.flatMap((backend): Config[] =>
  backend === 'native'
    ? [
        { backend, keepResident: 128 * 1024, backgroundReset: true },
        { backend, keepResident: 0, backgroundReset: true },
        { backend, keepResident: 128 * 1024, backgroundReset: false },
      ]
    : [{ backend, keepResident: 0, backgroundReset: false }],
);

for (const { backend, keepResident, backgroundReset } of configs) {
  const name = `${backend}, keepResident ${keepResident}, background reset ${backgroundReset}`;
  test(`isolation: ${CYCLES} seeded tenants, every fresh memory equals native (${name}, seed ${SEED})`, () => {
    const random = rng(SEED);
    const int = (n: number) => Math.floor(random() * n);
    const engine = new Engine({ backend, maxIdle: 4, memoryReuseLimit: 50, keepResident, backgroundReset });
    const modules = specs.map((spec) => {
      const bytes = buildModule(spec);
      const native = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
      return { prepared: engine.prepare(bytes) as PreparedModule, fresh: digest(memoryOf(native)) };
    });
    let grew = 0;
    let trapped = 0;
    let handedOut = 0;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const m = modules[int(modules.length)]!;
      const lease = m.prepared.instantiate(imports);
      const mem = leaseMemory(lease);
      // Most tenants are lent no buffer (the checks here read the memory
      // unseen); one in five takes lease.memoryBuffer(), and its memory is
      // then retired at release (native code may still hold its address).
      const lent = random() < 0.2;
      if (lent) handedOut++;
      const buffer = () => (lent ? lease.memoryBuffer() : bufferOf(mem));
      const d = createHash('sha256').update(new Uint8Array(buffer())).digest('hex');
      if (d !== m.fresh) assert.fail(`cycle ${cycle}: tenant saw another tenant's memory (seed ${SEED})`);
      const f = fns(lease.exports);
      const writes = int(20);
      for (let w = 0; w < writes; w++) {
        const size = buffer().byteLength;
        const page = int(size / 4096);
        f.store8!(page * 4096 + int(4096), 1 + int(255));
      }
      if (random() < 0.15) {
        if (f.grow!(1) !== -1) {
          grew++;
          f.store8!(buffer().byteLength - 1 - int(65536), 0xab);
        }
      }
      if (random() < 0.1) {
        assert.throws(() => f.trap!(int(buffer().byteLength), 0xcd), WebAssembly.RuntimeError);
        trapped++;
        if (!lent) handedOut++; // the trap's error holds the instance: retired too
      }
      lease.release();
    }
    const s = engine.stats();
    assert.equal(s.liveLeases, 0);
    // Retired rather than reset: a tenant lent a buffer or whose call
    // trapped (each once; a native instantiation has no pooled memory).
    assert.ok(s.retiredExposed > 0 && s.retiredExposed <= handedOut, `retired as handed out: ${s.retiredExposed} of ${handedOut}`);
    assert.ok(s.pooledReuses > CYCLES / 10, `pooled reuses: ${s.pooledReuses}`);
    assert.ok(grew > 0 && trapped > 0);
    // At least one window of queued resets (the pool goes inline for a while
    // when this thread ends up doing most of them itself).
    if (backgroundReset && backend === 'native') assert.ok(s.backgroundResets >= Math.min(256, CYCLES / 4), `background resets: ${s.backgroundResets}`);
    else assert.equal(s.backgroundResets, 0);
    console.log(`${backend}: ${CYCLES} tenants, ${grew} grew, ${trapped} trapped, stats ${JSON.stringify(s)}`);
    engine.close();
  });
}
