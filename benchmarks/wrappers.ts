/**
 * Micro-benchmark: the cost of a call through `lease.exports` against the
 * genuine export, and against the wrapper used before issue 10 (rest
 * arguments + Reflect.apply, a released check on entry only).
 *   npx tsc -p tsconfig.json && node out/benchmarks/wrappers.js [rounds]
 * Prints ns per call (median over rounds, each round interleaving the
 * variants) for load8(addr), store8(addr, value) and size().
 */
import { Engine } from '../src/index.js';
import { unexposedInstance } from '../src/lease.js';
import { buildModule, stdFuncs } from '../src/bench/builder.js';

const rounds = Number(process.argv[2] ?? 15);
const N = 2_000_000;
const bytes = buildModule({ memories: [{ min: 1, export: 'mem' }], funcs: stdFuncs });
const engine = new Engine();
const lease = engine.prepare(bytes).instantiate();
const genuine = unexposedInstance(lease).exports;

/** The wrapper lease.ts used before (a call after release threw; a release during the call was not seen). */
function oldWrap(exports: WebAssembly.Exports): WebAssembly.Exports {
  const state = { released: false };
  const out: Record<string, WebAssembly.ExportValue> = Object.create(null);
  for (const name of Object.keys(exports)) {
    const value = exports[name]!;
    if (typeof value !== 'function') continue;
    const fn = value as (...args: unknown[]) => unknown;
    out[name] = function (this: unknown, ...args: unknown[]): unknown {
      if (state.released) throw new Error(`export "${name}" called`);
      return Reflect.apply(fn, this, args);
    } as WebAssembly.ExportValue;
  }
  return Object.freeze(out);
}

type Fns = { load8: (a: number) => number; store8: (a: number, v: number) => void; size: () => number };
const variants: Record<string, Fns> = {
  genuine: genuine as unknown as Fns,
  'old wrapper': oldWrap(genuine) as unknown as Fns,
  'lease.exports': lease.exports as unknown as Fns,
};

// One loop function per variant and call, so each call site stays monomorphic.
const loops = {
  load8: () => new Function('f', 'N', 'let x = 0; for (let i = 0; i < N; i++) x += f(i & 0xfff); return x;'),
  store8: () => new Function('f', 'N', 'for (let i = 0; i < N; i++) f(i & 0xfff, i); return 0;'),
  size: () => new Function('f', 'N', 'let x = 0; for (let i = 0; i < N; i++) x += f(); return x;'),
} as const;
type Call = keyof typeof loops;
const compiled = new Map<string, (f: unknown, n: number) => number>();
const samples = new Map<string, number[]>();

for (let r = 0; r < rounds; r++) {
  for (const call of Object.keys(loops) as Call[]) {
    for (const [name, fns] of Object.entries(variants)) {
      const key = `${call}\t${name}`;
      let loop = compiled.get(key);
      if (!loop) compiled.set(key, (loop = loops[call]() as (f: unknown, n: number) => number));
      const t0 = process.hrtime.bigint();
      loop(fns[call], N);
      const ns = Number(process.hrtime.bigint() - t0) / N;
      if (r > 0) (samples.get(key) ?? samples.set(key, []).get(key)!).push(ns);
    }
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`ns per call, median of ${rounds - 1} rounds (${N} calls each):`);
console.log(['call', ...Object.keys(variants)].join('\t'));
for (const call of Object.keys(loops)) {
  console.log([call, ...Object.keys(variants).map((v) => median(samples.get(`${call}\t${v}`)!).toFixed(2))].join('\t'));
}
lease.release();
engine.close();
