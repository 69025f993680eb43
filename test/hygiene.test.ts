/**
 * Resource hygiene: after many prepare / instantiate / release cycles over
 * 50 modules (images disposed), the process's open fds and its number of
 * mappings return to their starting level, and RSS stays bounded.
 * WASM_COW_HYGIENE_CYCLES (default 5,000 per backend) sets the run.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BACKENDS } from './helpers/env.js';

const CYCLES = Number(process.env['WASM_COW_HYGIENE_CYCLES'] ?? 5000);
const child = fileURLToPath(new URL('./hygiene-child.js', import.meta.url));

for (const backend of BACKENDS) {
  test(`hygiene: ${CYCLES} cycles over 50 modules leave fds and mappings as they were (${backend})`, { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
    const out = execFileSync(process.execPath, ['--expose-gc', child, String(CYCLES), '50', backend], { encoding: 'utf8' });
    const r = JSON.parse(out) as {
      before: { fds: number; maps: number; rss: number };
      peak: { rss: number };
      after: { fds: number; maps: number; rss: number };
      stats: { instantiations: number; imagesBuilt: number; liveLeases: number; idleMemories: number };
    };
    console.log(`${backend}: ${JSON.stringify(r)}`);
    assert.equal(r.stats.instantiations, CYCLES);
    assert.equal(r.stats.liveLeases, 0);
    assert.equal(r.stats.idleMemories, 0);
    assert.equal(r.after.fds, r.before.fds, 'open fds back to the start');
    assert.ok(r.after.maps <= r.before.maps + 16, `mappings: ${r.before.maps} -> ${r.after.maps}`);
    assert.ok(r.peak.rss - r.before.rss < 256 * 1024 * 1024, 'RSS stays bounded');
  });
}
