/**
 * Engine options at their bounds: Infinity means no bound, and pooling
 * keeps working.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/index.js';
import { BACKENDS, fns } from './helpers/env.js';
import { buildModule, stdFuncs } from './helpers/wasm.js';

const DATA = new Uint8Array(3 * 4096).map((_, i) => (i * 13 + 5) & 0xff || 1);
const MODULE = buildModule({ memories: [{ min: 4, export: 'mem' }], funcs: stdFuncs, data: [{ offset: 4096, bytes: DATA }] });

for (const backend of BACKENDS) {
  for (const backgroundReset of [false, true]) {
    test(`keepResident: Infinity pools and restores every tenant's memory (${backend}, background ${backgroundReset})`, () => {
      const engine = new Engine({ backend, keepResident: Infinity, backgroundReset });
      const prepared = engine.prepare(MODULE);
      for (let i = 0; i < 100; i++) {
        const lease = prepared.instantiate();
        const f = fns(lease.exports);
        // Each tenant sees the image and zeros where the last one wrote.
        assert.equal(f.load8!(4096 + 100), DATA[100]);
        assert.equal(f.load8!(4096 + 3 * 4096 - 1), DATA[DATA.length - 1]);
        assert.equal(f.load8!(200000), 0);
        // Dirty pages inside and outside the image, a different number each time.
        for (let p = 0; p <= i % 5; p++) f.store8!(4096 + 100 + p * 4096, 0xee);
        f.store8!(200000, 1);
        lease.release();
      }
      const stats = engine.stats();
      assert.ok(stats.memoriesCreated <= 2, `memories created: ${stats.memoriesCreated}`);
      assert.ok(stats.pooledReuses >= 98, `pooled reuses: ${stats.pooledReuses}`);
      assert.equal(stats.retiredMemories, 0);
      engine.close();
    });
  }
}
