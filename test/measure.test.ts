/**
 * measureInterleaved (src/bench/measure.ts): the variants are measured in
 * the same rounds until every one of them is done, so that none runs alone
 * at the end (in a process state the others never see).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { measureInterleaved } from '../src/bench/measure.js';

const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

test('measureInterleaved: a variant slower than a block keeps alternating with the others until all are done', () => {
  const log: string[] = [];
  const r = measureInterleaved(
    {
      slow: () => {
        log.push('slow');
        busy(3);
      },
      fast: () => {
        log.push('fast');
        busy(0.05);
      },
    },
    { warmup: 3, warmupMs: 0, budgetMs: 30, minIterations: 5, maxIterations: 100_000, blockMs: 1 },
  );
  assert.ok(r.slow.n >= 5 && r.fast.n >= 5);
  // The slow variant spends its budget in about 10 rounds (3 ms each), the
  // fast one (1 ms per round) in about 30: both run to the last round.
  const tail = log.slice(-40);
  assert.ok(tail.includes('slow'), `the last rounds ran the slow variant too (${tail.filter((x) => x === 'slow').length} of 40)`);
});
