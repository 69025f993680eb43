/**
 * Timing and memory measurement for the benchmarks and the CLI.
 * Times are wall-clock per iteration (process.hrtime), in microseconds.
 */
import { readFileSync } from 'node:fs';

export interface Timing {
  /** Iterations measured (after warm-up). */
  readonly n: number;
  readonly median: number;
  readonly p99: number;
  readonly mean: number;
  readonly min: number;
}

export interface MeasureOptions {
  /** At most this many iterations are run and discarded first... */
  warmup?: number;
  /** ...or as many as fit in this many ms (but at least 3): the JIT and the heap reach their steady state. */
  warmupMs?: number;
  /** Stop after this many measured iterations... */
  maxIterations?: number;
  /** ...or once this much time has been spent, but not before minIterations. */
  budgetMs?: number;
  minIterations?: number;
}

/** Runs `fn` repeatedly and summarises the per-iteration times. */
export function measure(fn: () => void, options: MeasureOptions = {}): Timing {
  const { warmup = 1000, warmupMs = 200, maxIterations = 2000, budgetMs = 1000, minIterations = 20 } = options;
  const warmEnd = performance.now() + warmupMs;
  for (let i = 0; i < warmup && (i < 3 || performance.now() < warmEnd); i++) fn();
  const times: number[] = [];
  const deadline = performance.now() + budgetMs;
  while (times.length < maxIterations && (times.length < minIterations || performance.now() < deadline)) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return summarize(times);
}

/** Variants whose times per iteration are within this factor are measured over the same rounds (measureInterleaved). */
export const SIMILAR = 4;

export interface InterleaveOptions {
  /** Per variant: warm-up iterations (at most; at least 3)... */
  warmup?: number;
  /** ...or as many as fit in this many ms. */
  warmupMs?: number;
  /** Per variant: stop after this many measured iterations... */
  maxIterations?: number;
  /** ...or once this much time has been spent on it, but not before minIterations (see measureInterleaved: variants of similar cost run on until all of them are done). */
  budgetMs?: number;
  minIterations?: number;
  /** Length of one block of consecutive iterations of a variant, ms. */
  blockMs?: number;
  /**
   * The clock, in ms (default performance.now; iterations are then timed
   * with process.hrtime): a test gives a virtual one, so that the schedule
   * does not depend on the machine's load.
   */
  clock?: () => number;
}

/**
 * Measures several variants in alternating blocks, in a new order each
 * round (a seeded shuffle), so that drift in the machine's state (other
 * processes, CPU frequency, the heap's growth and its collections) falls on
 * all variants alike rather than on whichever ran last. (A rotation of one
 * fixed order had each variant always follow the same one, which then left
 * it its collections: the same engine code measured 0.3-0.7 µs apart in
 * two orders, after a variant that makes memories.) Each block
 * lasts about `blockMs`; each variant is warmed up before the first round.
 * A variant that has spent its budget keeps running while another of
 * similar cost (within SIMILAR times its time per iteration) has not: such
 * variants are measured over the same stretch of the run. (When each
 * stopped at its own budget, the variant that finished last ran alone at the
 * end, in a process state the others never saw: four identical variants of
 * web-tree-sitter's instantiation measured the first-declared one lowest in
 * most runs, 2.5-2.8 ms against 3.6-3.9.) Variants of very different cost
 * are not held together: a 10 µs cycle run beside a 150 ms native
 * instantiation of 256 MiB measured that instantiation's collections.
 * Each variant's `setup`, when given, runs before each iteration, untimed.
 */
export function measureInterleaved<K extends string>(
  variants: Record<K, (() => void) | { setup: () => unknown; run: (prepared: unknown) => void }>,
  options: InterleaveOptions = {},
): Record<K, Timing> {
  const { warmup = 1000, warmupMs = 200, maxIterations = 2000, budgetMs = 1000, minIterations = 20, blockMs = 20 } = options;
  const clock = options.clock;
  const now = clock ?? (() => performance.now());
  const names = Object.keys(variants) as K[];
  const step = (name: K): (() => number) => {
    const v = variants[name];
    if (clock !== undefined) {
      return () => {
        const arg = typeof v === 'function' ? undefined : v.setup();
        const t0 = clock();
        if (typeof v === 'function') v();
        else v.run(arg);
        return (clock() - t0) * 1000;
      };
    }
    if (typeof v === 'function') {
      return () => {
        const t0 = process.hrtime.bigint();
        v();
        return Number(process.hrtime.bigint() - t0) / 1000;
      };
    }
    return () => {
      const arg = v.setup();
      const t0 = process.hrtime.bigint();
      v.run(arg);
      return Number(process.hrtime.bigint() - t0) / 1000;
    };
  };
  const steps = names.map(step);
  const times = names.map(() => [] as number[]);
  const spent = names.map(() => 0);
  const perIteration = names.map(() => 1);
  names.forEach((_, i) => {
    const warmEnd = now() + warmupMs;
    let n = 0;
    let total = 0;
    for (; n < warmup && (n < 3 || now() < warmEnd); n++) total += steps[i]!();
    perIteration[i] = Math.max(total / n, 0.01);
  });
  const done = (i: number): boolean =>
    times[i]!.length >= maxIterations || (times[i]!.length >= minIterations && spent[i]! >= budgetMs * 1000);
  // A done variant keeps running while a variant of similar cost (within
  // SIMILAR of its time per iteration) is not done: variants of similar
  // cost are measured over the same stretch of the run. One far slower or
  // faster than every variant still running sits out.
  // From the times measured so far (the warm-up's first iterations can be
  // far slower than the steady state: a 130 µs variant whose warm-up mean
  // was tens of ms would have held a 150 ms native variant for hours).
  const cost = (i: number): number => (times[i]!.length > 0 ? spent[i]! / times[i]!.length : perIteration[i]!);
  const similar = (i: number, j: number): boolean => cost(i) <= SIMILAR * cost(j) && cost(j) <= SIMILAR * cost(i);
  // (Held at most to twice its budget, whatever the others do.)
  const sitsOut = (i: number): boolean =>
    times[i]!.length >= maxIterations ||
    (done(i) && (spent[i]! >= 2 * budgetMs * 1000 || !names.some((_, j) => j !== i && !done(j) && similar(i, j))));
  const order = names.map((_, i) => i);
  let seed = 0x2545f491;
  const next = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 0x100000000;
  };
  while (!names.every((_, i) => done(i))) {
    for (let k = order.length - 1; k > 0; k--) {
      const j = Math.floor(next() * (k + 1));
      [order[k], order[j]] = [order[j]!, order[k]!];
    }
    for (const i of order) {
      if (sitsOut(i)) continue;
      const block = Math.max(1, Math.round((blockMs * 1000) / Math.max(cost(i), 0.01)));
      const start = now();
      for (let j = 0; j < block && times[i]!.length < maxIterations; j++) times[i]!.push(steps[i]!());
      spent[i] = spent[i]! + (now() - start) * 1000;
    }
  }
  const out = {} as Record<K, Timing>;
  names.forEach((name, i) => (out[name] = summarize(times[i]!)));
  return out;
}

export function summarize(times: number[]): Timing {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return { n: sorted.length, median: at(0.5), p99: at(0.99), mean, min: sorted[0]! };
}

export interface MemoryUsage {
  /** Resident set size, bytes. */
  readonly rss: number;
  /** Proportional set size, bytes (Linux; equals rss elsewhere). */
  readonly pss: number;
}

/** RSS and PSS of this process, from /proc/self/smaps_rollup where it exists. */
export function memoryUsage(): MemoryUsage {
  try {
    const text = readFileSync('/proc/self/smaps_rollup', 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { rss: kb('Rss'), pss: kb('Pss') };
  } catch {
    const rss = process.memoryUsage.rss();
    return { rss, pss: rss };
  }
}

export const fmtUs = (us: number): string =>
  us >= 1000 ? `${(us / 1000).toFixed(us >= 10000 ? 1 : 2)} ms` : `${us.toFixed(us >= 100 ? 0 : us >= 10 ? 1 : 2)} µs`;

export const fmtBytes = (b: number): string =>
  Math.abs(b) >= 1024 ** 3
    ? `${(b / 1024 ** 3).toFixed(2)} GiB`
    : Math.abs(b) >= 1024 ** 2
      ? `${(b / 1024 ** 2).toFixed(1)} MiB`
      : `${(b / 1024).toFixed(0)} KiB`;

export const fmtRatio = (r: number): string => (r >= 100 ? `${r.toFixed(0)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`);

/** A speed-up (other's time / this one's) as "N.NNx faster" or, below 1, "N.NNx slower"; 'n/a' when there is none. */
export const fmtVersus = (speedup: number | null): string =>
  speedup === null || !(speedup > 0) || !Number.isFinite(speedup)
    ? 'n/a'
    : speedup >= 1
      ? `${fmtRatio(speedup)} faster`
      : `${fmtRatio(1 / speedup)} slower`;
