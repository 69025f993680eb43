/**
 * Child process of the resource hygiene test (run with --expose-gc):
 *   node --expose-gc out/test/hygiene-child.js <cycles> <modules> <backend>
 * Runs prepare / instantiate / release / dispose cycles over distinct modules
 * and prints open fds, mappings and RSS before, during and after, as JSON.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Engine } from '../src/index.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from '../src/bench/builder.js';

const [cyclesArg = '1000', modulesArg = '50', backend = 'auto'] = process.argv.slice(2);
const cycles = Number(cyclesArg);
const count = Number(modulesArg);
const gc = (globalThis as { gc?: () => void }).gc!;
const sample = () => ({
  fds: readdirSync('/proc/self/fd').length,
  maps: readFileSync('/proc/self/maps', 'utf8').split('\n').length,
  rss: process.memoryUsage.rss(),
});
const settle = async () => {
  for (let i = 0; i < 6; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
};

const modules = Array.from({ length: count }, (_, i) =>
  buildModule({
    memories: [{ min: 1 + (i % 4), max: 8, export: 'mem' }],
    funcs: stdFuncs,
    data: [{ offset: 4096 * (i % 3), bytes: pseudoRandomBytes(5000 + i * 100, i + 1) }],
  }),
);

/** The workload: prepare / instantiate / write / release / dispose. */
function run(engine: Engine, n: number, onSample?: () => void): void {
  for (let i = 0; i < n; i++) {
    const p = engine.prepare(modules[i % count]!);
    const lease = p.instantiate();
    (lease.exports['store8'] as (a: number, v: number) => void)(i % 65536, 1);
    lease.release();
    p.dispose();
    if (i % 500 === 0) onSample?.();
  }
}

// Warm up to a steady state first: V8 and glibc keep heap pages, code
// space and per-thread malloc arenas once they have made them, and those
// are theirs, not ours. A leak of ours grows with the cycles that follow.
// (Measured: maps grow over the first ~10,000 cycles of a process, then stay
// flat, on both backends, so two warm-up rounds of 5,000.)
for (let round = 0; round < 2; round++) {
  const warm = new Engine({ backend: backend as 'auto', maxIdle: 16 });
  run(warm, 5000);
  warm.close();
  await settle();
}
const before = sample();
const engine = new Engine({ backend: backend as 'auto', maxIdle: 16 });
let peak = before;
run(engine, cycles, () => {
  const s = sample();
  if (s.rss > peak.rss) peak = s;
});
engine.close();
await settle();
const after = sample();
process.stdout.write(JSON.stringify({ cycles, before, peak, after, stats: engine.stats() }));
