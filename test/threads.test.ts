/**
 * The background reset thread: one per Node.js thread, stopped with it;
 * memories whose address might move are reset inline instead.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { EngineStats } from '../src/index.js';

const child = fileURLToPath(new URL('./helpers/thread-child.js', import.meta.url));
const linux = process.platform === 'linux';

type Report = { bad: number; stats: EngineStats };

/** Threads of this process named wasm-cow-reset. */
function resetThreads(): number {
  let n = 0;
  for (const t of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'wasm-cow-reset') n++;
    } catch {
      // The thread ended meanwhile.
    }
  }
  return n;
}

function runWorker(cycles: number): Promise<Report> {
  return new Promise((resolve, reject) => {
    const w = new Worker(child, { workerData: { mode: 'run', cycles, max: true } });
    let report: Report | null = null;
    w.on('message', (m: Report | { started: true }) => {
      if ('stats' in m) report = m;
    });
    w.on('error', reject);
    w.on('exit', (code) => (code === 0 && report ? resolve(report) : reject(new Error(`worker exited ${code}`))));
  });
}

test('engines on two worker threads reset on a thread each; every tenant is clean', { skip: !linux && 'native backend only' }, async () => {
  const before = resetThreads();
  const reports = await Promise.all([runWorker(3000), runWorker(3000)]);
  for (const r of reports) {
    assert.equal(r.bad, 0, 'a tenant saw a dirty memory');
    // Every 10th tenant takes lease.memoryBuffer(): its memory is retired at release.
    assert.equal(r.stats.resets + r.stats.retiredMemories, 3000);
    assert.equal(r.stats.retiredExposed, 300);
    assert.ok(r.stats.resets > 2600);
    // Queued on this worker's own reset thread (not all, maybe: the pool
    // goes inline for a while when the thread does not keep up).
    assert.ok(r.stats.backgroundResets >= 256 && r.stats.backgroundResets <= r.stats.resets, `background: ${r.stats.backgroundResets}`);
  }
  assert.equal(await settled(before), before, 'the workers’ reset threads ended with them');
});

test('terminating a worker while resets are queued: no crash, its reset thread ends', { skip: !linux && 'native backend only' }, async () => {
  const before = resetThreads();
  const w = new Worker(child, { workerData: { mode: 'spin', cycles: 0, max: true } });
  await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  });
  let code: number;
  try {
    // The reset thread names itself once it runs: under load that can lag its start a little.
    for (let i = 0; i < 100 && resetThreads() !== before + 1; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(resetThreads(), before + 1, 'the worker has its own reset thread');
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    code = await w.terminate(); // never leave the spinning worker behind (the run would hang)
  }
  assert.equal(code, 1, 'terminated, not crashed');
  assert.equal(await settled(before), before);
  // This thread still works.
  assert.equal((await runWorker(200)).bad, 0);
});

for (const max of [true, false]) {
  test(`without V8's trap handler (no guard regions): every tenant clean (${max ? 'memory with a maximum: reset inline' : 'no maximum'})`, { skip: !linux && 'native backend only' }, () => {
    const out = execFileSync(process.execPath, ['--disable-wasm-trap-handler', child, 'run', '1000', max ? 'max' : 'nomax'], { encoding: 'utf8' });
    const r = JSON.parse(out) as Report;
    assert.equal(r.bad, 0);
    assert.equal(r.stats.resets + r.stats.retiredMemories, 1000);
    assert.equal(r.stats.retiredExposed, 100, 'every 10th tenant took lease.memoryBuffer()');
    assert.ok(r.stats.resets > 850);
    // V8 reserves only the declared maximum then: the address is not known
    // to be stable for all it could grow to, so the reset stays inline.
    if (max) assert.equal(r.stats.backgroundResets, 0);
  });
}

/** Waits (up to 2 s) for the count of reset threads to return to `n`; returns the count. */
async function settled(n: number): Promise<number> {
  for (let i = 0; i < 100 && resetThreads() !== n; i++) await new Promise((r) => setTimeout(r, 20));
  return resetThreads();
}
