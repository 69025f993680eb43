/**
 * Snapshots against Wizer (issue 12): the same program, run to its first
 * result from a compiled / prepared module in hand, five ways:
 *
 *   init, native           new WebAssembly.Instance of the original, _initialize(), init(), lookup()
 *   Wizer, native          new WebAssembly.Instance of the Wizer output, lookup()
 *   Wizer, wasm-cow        prepared Wizer output: instantiate(), lookup(), release()
 *   snapshot, pooled       prepared.snapshot(lease) after init(): instantiate(), lookup(), release()
 *   snapshot, new memory   the same with maxIdle 0: every instance gets a new memory, the image mapped
 *
 * The program is test/fixtures/snapshot/dictionary.c (a WASI reactor whose
 * init() builds a 65k-word hash table and a sieve up to 2^23, about 30 ms;
 * lookup() then answers in well under a microsecond). Its WASI imports are
 * stubs: nothing before the first result calls them. Times are measured
 * interleaved in one process (median and p99, µs). RSS and PSS per live
 * instance come from child processes, each holding N instances that have
 * given their first result:
 *
 *   node out/benchmarks/snapshot.js [--quick]
 *   node out/benchmarks/snapshot.js --child <variant> <N>   (one child)
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fmtBytes, fmtRatio, fmtUs, measureInterleaved, memoryUsage, type Timing } from '../src/bench/measure.js';
import { Engine, type Lease, type PreparedModule } from '../src/index.js';

const fixture = (name: string): Uint8Array<ArrayBuffer> =>
  new Uint8Array(readFileSync(fileURLToPath(new URL(`../../test/fixtures/snapshot/${name}`, import.meta.url))));

const KEY = 12345;
const stubs: WebAssembly.Imports = {
  wasi_snapshot_preview1: { fd_close: () => 8, fd_fdstat_get: () => 8, fd_seek: () => 8, fd_write: () => 8 },
};

type Fns = Record<string, (...a: number[]) => number>;
export const VARIANTS = ['init, native', 'Wizer, native', 'Wizer, wasm-cow', 'snapshot, pooled', 'snapshot, new memory'] as const;
export type Variant = (typeof VARIANTS)[number];

interface Runner {
  /** Instantiates and returns the first result; `keep` holds the instance (lease) afterwards, or it is released. */
  first(keep?: unknown[]): number;
  expected: number;
  close(): void;
}

/** The snapshot of a lease that ran _initialize() and init(), prepared in `engine`. */
function snapshotOf(engine: Engine): PreparedModule {
  const prepared = engine.prepare(fixture('dictionary.wasm'), { snapshots: true });
  const lease = prepared.instantiate(stubs);
  const fns = lease.exports as Fns;
  fns['_initialize']!();
  fns['init']!();
  const snap = prepared.snapshot(lease);
  lease.release();
  prepared.dispose();
  return snap;
}

export function runner(variant: Variant, maxInstances = 1000, expected?: number): Runner {
  const nativeFirst = (module: WebAssembly.Module, init: boolean) => (keep?: unknown[]): number => {
    const instance = new WebAssembly.Instance(module, stubs);
    const fns = instance.exports as Fns;
    if (init) {
      fns['_initialize']!();
      fns['init']!();
    }
    keep?.push(instance);
    return fns['lookup']!(KEY);
  };
  const leaseFirst = (prepared: PreparedModule) => (keep?: unknown[]): number => {
    const lease: Lease = prepared.instantiate(stubs);
    const r = (lease.exports as Fns)['lookup']!(KEY);
    if (keep) keep.push(lease);
    else lease.release();
    return r;
  };
  let engine: Engine | null = null;
  let first: (keep?: unknown[]) => number;
  switch (variant) {
    case 'init, native':
      first = nativeFirst(new WebAssembly.Module(fixture('dictionary.wasm')), true);
      break;
    case 'Wizer, native':
      first = nativeFirst(new WebAssembly.Module(fixture('dictionary.wizer.wasm')), false);
      break;
    case 'Wizer, wasm-cow':
      engine = new Engine({ maxInstances });
      first = leaseFirst(engine.prepare(fixture('dictionary.wizer.wasm')));
      break;
    case 'snapshot, pooled':
      engine = new Engine({ maxInstances });
      first = leaseFirst(snapshotOf(engine));
      break;
    case 'snapshot, new memory':
      engine = new Engine({ maxInstances, maxIdle: 0 });
      first = leaseFirst(snapshotOf(engine));
      break;
  }
  return { first, expected: expected ?? nativeFirst(new WebAssembly.Module(fixture('dictionary.wasm')), true)(), close: () => engine?.close() };
}

/** Lets V8 collect what setup left behind (and free wasm memories, which it does off the thread). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Child: N live instances after their first result; prints RSS / PSS growth per instance. */
async function child(variant: Variant, n: number, expected: number): Promise<void> {
  const r = runner(variant, n + 2, expected);
  const warm: unknown[] = [];
  r.first(warm); // compile, build the image, fault in what every instance shares
  const keep: unknown[] = [];
  await settle();
  const base = memoryUsage();
  for (let i = 0; i < n; i++) if (r.first(keep) !== r.expected) throw new Error('wrong first result');
  await settle();
  const now = memoryUsage();
  process.stdout.write(JSON.stringify({ rss: (now.rss - base.rss) / n, pss: (now.pss - base.pss) / n, live: keep.length + warm.length }));
}

export interface SnapshotBench {
  readonly timing: Record<Variant, Timing>;
  readonly memory: Record<Variant, { rss: number; pss: number }>;
  readonly instances: number;
}

export function snapshotBench(quick: boolean): SnapshotBench {
  const runners = Object.fromEntries(VARIANTS.map((v) => [v, runner(v)])) as Record<Variant, Runner>;
  for (const v of VARIANTS) if (runners[v].first() !== runners[v].expected) throw new Error(`${v}: wrong first result`);
  const timing = measureInterleaved(
    Object.fromEntries(VARIANTS.map((v) => [v, () => void runners[v].first()])) as Record<Variant, () => void>,
    { budgetMs: quick ? 300 : 1500, minIterations: quick ? 10 : 30, maxIterations: 5000, warmupMs: 100, blockMs: 40 },
  );
  for (const v of VARIANTS) runners[v].close();
  const instances = quick ? 20 : 100;
  const script = fileURLToPath(import.meta.url);
  const expected = String(runners['init, native'].expected);
  const memory = Object.fromEntries(
    VARIANTS.map((v) => [
      v,
      JSON.parse(execFileSync(process.execPath, ['--expose-gc', script, '--child', v, String(instances), expected], { encoding: 'utf8' })) as {
        rss: number;
        pss: number;
      },
    ]),
  ) as Record<Variant, { rss: number; pss: number }>;
  return { timing, memory, instances };
}

export function snapshotTable(b: SnapshotBench): string[] {
  const init = b.timing['init, native'].median;
  const lines = [
    `| way to the first result | median | p99 | faster than running the init | RSS / instance | PSS / instance |`,
    `|---|---|---|---|---|---|`,
  ];
  for (const v of VARIANTS) {
    const t = b.timing[v];
    const m = b.memory[v];
    lines.push(`| ${v} | ${fmtUs(t.median)} | ${fmtUs(t.p99)} | ${fmtRatio(init / t.median)} | ${fmtBytes(m.rss)} | ${fmtBytes(m.pss)} |`);
  }
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    await child(args[1] as Variant, Number(args[2]), Number(args[3]));
  } else {
    const b = snapshotBench(args.includes('--quick'));
    console.log(snapshotTable(b).join('\n'));
    console.log(`\n(${b.instances} live instances per child for RSS / PSS; times: ${Object.values(b.timing).map((t) => t.n).join(' / ')} iterations)`);
  }
}
