/**
 * measureInterleaved (src/bench/measure.ts): variants of similar cost are
 * measured over the same rounds until all of them are done (none runs alone
 * at the end, in a process state the others never saw); a variant of very
 * different cost is not held beside the others past its budget.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { measureInterleaved, SIMILAR } from '../src/bench/measure.js';

const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

test('measureInterleaved: a variant of similar cost that spent its budget first keeps alternating until the other is done', () => {
  const log: string[] = [];
  // With 1 ms blocks, each runs one iteration per round: a (1.5 ms) spends
  // its budget in about 14 rounds, b (0.75 ms) in about 27. Their ratio, 2,
  // leaves room for a loaded machine's stretching of either.
  assert.ok(2 * 1.5 / 0.75 <= SIMILAR);
  const r = measureInterleaved(
    {
      a: () => {
        log.push('a');
        busy(1.5);
      },
      b: () => {
        log.push('b');
        busy(0.75);
      },
    },
    { warmup: 3, warmupMs: 0, budgetMs: 20, minIterations: 5, maxIterations: 100_000, blockMs: 1 },
  );
  assert.ok(r.a.n >= 5 && r.b.n >= 5);
  const tail = log.slice(-6);
  assert.ok(tail.includes('a'), `a ran in the last rounds too (${tail.join(' ')})`);
});

test('measureInterleaved: a variant far slower than the others stops at its budget (they are not held beside it)', () => {
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
  // slow spends its 30 ms in about 10 rounds; fast (1 ms per round) needs about 30.
  assert.ok(r.slow.n <= 16, `slow ran ${r.slow.n} iterations`);
  assert.ok(log.slice(-20).every((x) => x === 'fast'), 'fast ran on alone once slow was done');
});
