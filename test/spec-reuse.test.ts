/**
 * The 20 spec scripts with every module prepared for instance reuse: each
 * module runs on a reused instance (after a first tenant that only ran its
 * start function) where it is eligible; every command must have the same
 * outcome as natively.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runScript } from './spec/runner.js';

const dir = fileURLToPath(new URL('../../test/fixtures/spec/json/', import.meta.url));
const scripts = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -5))
  .sort();

let reused = 0;
let prepared = 0;
let eligible = 0;
for (const script of scripts) {
  test(`spec ${script} in reuse mode: identical outcomes natively and on reused instances`, () => {
    const native = runScript(dir, script, 'native');
    const r = runScript(dir, script, 'engine-reuse');
    assert.equal(r.results.length, native.results.length);
    r.results.forEach((c, i) => {
      const n = native.results[i]!;
      assert.equal(c.outcome, n.outcome, `${script}.json line ${c.line} (${c.type}): reuse differs from native`);
      assert.equal(c.verdict, n.verdict);
    });
    reused += r.reused!;
    prepared += r.reusePrepared!;
    eligible += r.reuseEligible!;
  });
}

test('reuse mode ran most modules on reused instances', () => {
  console.log(`modules prepared ${prepared}, eligible ${eligible}, instances reused ${reused}`);
  assert.ok(eligible > prepared / 2, `${eligible} of ${prepared} eligible`);
  assert.ok(reused > eligible / 2, `${reused} reused of ${eligible} eligible`);
});
