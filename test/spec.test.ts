/**
 * The WebAssembly core spec suite (20 scripts, vendored under
 * test/fixtures/spec/), natively and through the engine on both backends.
 * Every command must have the same outcome in every mode: the same result,
 * or the same error class and message.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runScript, type Mode, type ScriptResult } from './spec/runner.js';

const dir = fileURLToPath(new URL('../../test/fixtures/spec/json/', import.meta.url));
const scripts = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -5))
  .sort();
const modes: Mode[] = process.platform === 'linux' ? ['native', 'engine-native', 'engine-copy'] : ['native', 'engine-copy'];
const totals = new Map<Mode, { run: number; passed: number; failed: number; skipped: number }>();
const nodeFailures: string[] = [];

test('the suite has its 20 scripts', () => {
  assert.equal(scripts.length, 20);
});

for (const script of scripts) {
  test(`spec ${script}: identical outcomes natively and through the engine`, () => {
    const byMode = new Map<Mode, ScriptResult>();
    for (const mode of modes) byMode.set(mode, runScript(dir, script, mode));
    const native = byMode.get('native')!;
    for (const mode of modes) {
      const r = byMode.get(mode)!;
      const t = totals.get(mode) ?? { run: 0, passed: 0, failed: 0, skipped: 0 };
      for (const c of r.results) {
        if (c.verdict === 'skipped') t.skipped++;
        else t.run++;
        if (c.verdict === 'passed') t.passed++;
        if (c.verdict === 'failed') t.failed++;
      }
      totals.set(mode, t);
    }
    for (const mode of modes) {
      const r = byMode.get(mode)!;
      if (mode === 'native') continue;
      assert.equal(r.results.length, native.results.length);
      r.results.forEach((c, i) => {
        const n = native.results[i]!;
        assert.equal(c.outcome, n.outcome, `${script}.json line ${c.line} (${c.type}): ${mode} differs from native`);
        assert.equal(c.verdict, n.verdict);
      });
    }
    for (const c of native.results) {
      if (c.verdict === 'failed') nodeFailures.push(`${script}:${c.line} ${c.type}: ${c.outcome}`);
    }
  });
}

test('totals per mode', () => {
  const lines = [...totals].map(([m, t]) => `${m}: run ${t.run}, passed ${t.passed}, failed ${t.failed}, skipped ${t.skipped}`);
  lines.push(`commands Node ${process.version} itself fails (the engine fails them identically): ${nodeFailures.length}`);
  for (const f of nodeFailures) lines.push(`  ${f}`);
  console.log(lines.join('\n'));
  const native = totals.get('native')!;
  for (const [, t] of totals) assert.deepEqual(t, native);
  assert.ok(native.run > 6000, `ran ${native.run} commands`);
});
