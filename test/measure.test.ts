/**
 * measureInterleaved (src/bench/measure.ts): variants of similar cost are
 * measured over the same rounds until all of them are done (none runs alone
 * at the end, in a process state the others never saw); a variant of very
 * different cost is not held beside the others past its budget. On a
 * virtual clock: each variant advances it by its cost, so the schedule does
 * not depend on the machine's load.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { measureInterleaved, SIMILAR } from '../src/bench/measure.js';

function virtual<K extends string>(costs: Record<K, number>) {
  let now = 0;
  const log: string[] = [];
  const variants = {} as Record<K, () => void>;
  for (const [name, ms] of Object.entries(costs) as [K, number][]) {
    variants[name] = () => {
      log.push(name);
      now += ms;
    };
  }
  return { variants, log, clock: () => now };
}

test('measureInterleaved: a variant of similar cost that spent its budget first keeps alternating until the other is done', () => {
  // 1 ms blocks: a runs one 1.5 ms iteration per round and spends its 20 ms
  // budget in 14 rounds; b runs two of 0.625 ms and needs 16. (Binary
  // fractions: the virtual clock adds them exactly.)
  assert.ok(1.5 / 0.625 <= SIMILAR);
  const { variants, log, clock } = virtual({ a: 1.5, b: 0.625 });
  const r = measureInterleaved(variants, { warmup: 3, warmupMs: 0, budgetMs: 20, minIterations: 5, maxIterations: 100_000, blockMs: 1, clock });
  assert.equal(r.a.median, 1500);
  assert.equal(r.b.median, 625);
  assert.equal(r.b.n, 32);
  assert.equal(r.a.n, 16, 'a ran until b was done (alone at its own budget it would have stopped at 14)');
  assert.ok(log.slice(-3).includes('a'), 'the last round ran a too');
});

test('measureInterleaved: identical variants are measured over the same rounds to the end', () => {
  const { variants, log, clock } = virtual({ a: 1, b: 1, c: 1 });
  const r = measureInterleaved(variants, { warmup: 3, warmupMs: 0, budgetMs: 20, minIterations: 5, maxIterations: 100_000, blockMs: 1, clock });
  assert.deepEqual([r.a.n, r.b.n, r.c.n], [20, 20, 20]);
  assert.deepEqual(new Set(log.slice(-3)), new Set(['a', 'b', 'c']), 'the last round ran all three');
});

test('measureInterleaved: a variant far slower than the others stops at its budget (they are not held beside it)', () => {
  const { variants, log, clock } = virtual({ slow: 3, fast: 0.05 });
  const r = measureInterleaved(variants, { warmup: 3, warmupMs: 0, budgetMs: 30, minIterations: 5, maxIterations: 100_000, blockMs: 1, clock });
  // slow spends its 30 ms in 10 rounds; fast (20 iterations, 1 ms, per round) needs 30.
  assert.equal(r.slow.n, 10);
  assert.ok(r.fast.n >= 600);
  assert.ok(log.slice(-200).every((x) => x === 'fast'), 'fast ran on alone once slow was done');
});
