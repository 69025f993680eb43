/**
 * Child process of test/shared-images.test.ts (run alone, so that the fds
 * it counts are its own):
 *
 *   node out/test/shared-images-child.js <order>
 *
 * The main thread loads the addon (so that it stays loaded while workers
 * come and go) and starts 4 workers (this same file) at once. Each prepares
 * the same module, instantiates it and checks each tenant against a native
 * instance, then waits. With all 4 alive, the main thread counts the memfd
 * images open in the process (fds linking to memfd:wasm-cow-image, and the
 * addon's own count). Then the workers end one by one in `order` (a
 * permutation of 0123); how each ends: worker 0 closes its engine and
 * returns, 1 returns without closing, 2 calls process.exit(), 3 is
 * terminated. After each end, the workers still alive instantiate again
 * (the image must still serve them) and the main thread counts again.
 * Prints JSON.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Engine } from '../src/index.js';
import { loadBinding } from '../src/native/binding.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from '../src/bench/builder.js';
import { leaseDigest } from './helpers/env.js';

const bytes = buildModule({
  memories: [{ min: 4, max: 8, export: 'mem' }],
  funcs: stdFuncs,
  data: [
    { offset: 10, bytes: pseudoRandomBytes(20000, 5) },
    { offset: 3 * 65536 + 77, bytes: pseudoRandomBytes(5000, 6) },
  ],
});

type Msg = { ok: number; bad: number } | { ended: true };

if (!isMainThread) {
  const { index } = workerData as { index: number };
  const want = createHash('sha256')
    .update(new Uint8Array((new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports['mem'] as WebAssembly.Memory).buffer))
    .digest('hex');
  const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
  const prepared = engine.prepare(bytes);
  /** Three tenants, each checked against native and dirtied. */
  const round = (): Msg => {
    let ok = 0;
    let bad = 0;
    for (let i = 0; i < 3; i++) {
      const lease = prepared.instantiate();
      if (leaseDigest(lease) === want) ok++;
      else bad++;
      (lease.exports['store8'] as (a: number, v: number) => void)(20 + i, 0xff);
      lease.release();
    }
    return { ok, bad };
  };
  parentPort!.postMessage(round());
  parentPort!.on('message', (m: 'round' | 'end') => {
    if (m === 'round') {
      parentPort!.postMessage(round());
      return;
    }
    if (index === 0) engine.close();
    if (index === 2) process.exit(0);
    parentPort!.close(); // returns: the thread ends with its engine's images open (worker 1)
  });
} else {
  const order = (process.argv[2] ?? '0123').split('').map(Number);
  const binding = loadBinding().binding!;
  const self = fileURLToPath(import.meta.url);
  const count = () => {
    let fds = 0;
    let images = 0;
    for (const name of readdirSync('/proc/self/fd')) {
      fds++;
      try {
        if (readlinkSync(`/proc/self/fd/${name}`).startsWith('/memfd:wasm-cow-image')) images++;
      } catch {
        // the fd of readdir itself, closed meanwhile
      }
    }
    return { fds, images, open: binding.openImages() };
  };
  /** Counts until `want` holds (a thread's teardown may end just after its exit event), at most 2 s. */
  const settle = async (want: { fds?: number; images: number }) => {
    let c = count();
    for (let i = 0; i < 40 && ((want.fds !== undefined && c.fds !== want.fds) || c.images !== want.images); i++) {
      await new Promise((r) => setTimeout(r, 50));
      c = count();
    }
    return c;
  };
  // Warm-up: what the first worker of a process makes once and keeps (an fd of Node's) is not ours.
  await new Promise((resolve) => new Worker('', { eval: true }).once('exit', resolve));
  const before = count();
  const workers = [0, 1, 2, 3].map((index) => new Worker(self, { workerData: { index } }));
  const next = (w: Worker) => new Promise<Msg>((resolve) => w.once('message', resolve));
  const exited = workers.map((w) => new Promise<number>((resolve) => w.once('exit', resolve)));
  const errors: string[] = [];
  for (const w of workers) w.on('error', (e) => errors.push(e.message));
  const first = await Promise.all(workers.map(next));
  const allAlive = count();
  const steps: { ended: number; alive: Msg[]; count: ReturnType<typeof count> }[] = [];
  const alive = new Set(workers.map((_, i) => i));
  for (const i of order) {
    if (i === 3) await workers[i]!.terminate();
    else workers[i]!.postMessage('end');
    await exited[i];
    alive.delete(i);
    const rounds = await Promise.all([...alive].map((j) => {
      const p = next(workers[j]!);
      workers[j]!.postMessage('round');
      return p;
    }));
    steps.push({ ended: i, alive: rounds, count: await settle({ images: alive.size > 0 ? 1 : 0 }) });
  }
  const after = await settle(before);
  process.stdout.write(JSON.stringify({ before, first, allAlive, steps, after, errors }));
}
