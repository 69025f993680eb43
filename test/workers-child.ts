/**
 * Child process of the worker-thread cleanup tests (run alone, so that its
 * fd and mapping counts are its own):
 *
 *   node out/test/workers-child.js <scenario> <workers>
 *
 * In the main thread it runs a scenario, starting workers (this same file)
 * two at a time, and prints JSON: open fds and memfd image mappings before
 * and after, and what the scenario checked.
 *
 *   noclose  the main thread loads the addon; each worker prepares and
 *            instantiates modules with images and leaves without
 *            engine.close(): most when their script ends, every 5th with
 *            process.exit(), every 5th terminated while it works
 *   noaddon  the main thread never loads the addon; each worker loads it,
 *            uses it and calls engine.close() (in the second half, every
 *            3rd is terminated while it works, before it could close
 *            anything); Node unloads the addon when its last thread ends
 *   main     the main thread's own images (an engine's, and one made with
 *            the addon directly) are used while workers come and go; the
 *            workers also try to close, map and restore from the main
 *            thread's image fd, which is not theirs
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Engine } from '../src/index.js';
import { loadBinding, type NativeBinding } from '../src/native/binding.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from '../src/bench/builder.js';

type Job = { spin: boolean; close: boolean; exit?: boolean; foreign: number[] };
type Done = { done: true; foreign: string[]; bad: number };
/** How a worker ended: its report, terminated while it worked, or an uncaught error. */
type Ended = Done | 'terminated' | { error: string };

const modules = Array.from({ length: 3 }, (_, i) =>
  buildModule({
    memories: [{ min: 2 + i, max: 8, export: 'mem' }],
    funcs: stdFuncs,
    data: [{ offset: 4096 * i + 7, bytes: pseudoRandomBytes(9000 + 1000 * i, 40 + i) }],
  }),
);
const digest = (m: WebAssembly.Memory) => createHash('sha256').update(new Uint8Array(m.buffer)).digest('hex');
const wants = modules.map((bytes) => digest(new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports['mem'] as WebAssembly.Memory));

function nativeBinding(): NativeBinding {
  const load = loadBinding();
  if (!load.binding) throw new Error(`native addon unavailable: ${load.error}`);
  return load.binding;
}

/** Instantiates, checks, dirties and releases each module `rounds` times; returns tenants that started dirty. */
function work(engine: Engine, rounds: number): number {
  let bad = 0;
  const prepared = modules.map((bytes) => engine.prepare(bytes));
  for (let r = 0; r < rounds; r++) {
    prepared.forEach((p, i) => {
      const lease = p.instantiate();
      if (r % 4 === 0 && digest(lease.exports['mem'] as WebAssembly.Memory) !== wants[i]) bad++;
      const store8 = lease.exports['store8'] as (a: number, v: number) => void;
      for (let k = 0; k < 1 + (r % 5); k++) store8(((r + k * 3) % 8) * 4096 + 11 * k, 1 + ((r + k) % 250));
      lease.release();
    });
  }
  return bad;
}

if (!isMainThread) {
  const job = workerData as Job;
  // Someone else's fd: never ours to close, map or restore from.
  const foreign: string[] = [];
  if (job.foreign.length > 0) {
    const b = nativeBinding();
    const m = new WebAssembly.Memory({ initial: 1, maximum: 1 });
    const attempts: [string, () => unknown][] = [
      ['closeImage', () => b.closeImage(job.foreign[0]!)],
      ['mapImage', () => b.mapImage(m, job.foreign[0]!, 0, b.pageSize)],
      ['resetRange', () => b.resetRange(m, 65536, job.foreign[0]!, 0, b.pageSize, 65536)],
    ];
    for (const [name, attempt] of attempts) {
      try {
        attempt();
        foreign.push(`${name}: accepted`);
      } catch (e) {
        foreign.push(`${name}: ${(e as Error).message}`);
      }
    }
  }
  const engine = new Engine({ backend: 'native' });
  let bad = work(engine, 6);
  if (job.spin) {
    parentPort!.postMessage({ started: true });
    for (;;) bad += work(engine, 4); // until terminated
  }
  if (job.close) engine.close();
  parentPort!.postMessage({ done: true, foreign, bad } satisfies Done);
  if (job.exit) process.exit(0); // ends this thread, not the process
  // Leaves with the engine's images open (unless closed above) and its
  // event loop empty: the thread ends here.
} else {
  const [scenario = 'noclose', countArg = '50'] = process.argv.slice(2);
  const count = Number(countArg);
  const self = fileURLToPath(import.meta.url);

  // A full GC first (the child runs with --expose-gc): memories the main thread's engine retired
  // (a tenant read its memory) keep their image mapped until V8 collects them, which would
  // otherwise happen at any moment between two samples.
  const gc = (globalThis as { gc?: () => void }).gc;
  const sample = () => (gc?.(), {
    fds: readdirSync('/proc/self/fd').length,
    memfdMaps: readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .filter((l) => l.includes('memfd:wasm-cow-image')).length,
  });

  /** Runs one worker to its end; `spin` ones are terminated once they work. */
  const runWorker = (job: Job): Promise<Ended> =>
    new Promise((resolve, reject) => {
      const w = new Worker(self, { workerData: job });
      let done: Done | null = null;
      w.on('message', (m: Done | { started: true }) => {
        if ('done' in m) done = m;
        else void w.terminate();
      });
      let error: string | null = null;
      w.on('error', (e) => (error = e.message));
      w.on('exit', (code) => {
        if (error !== null) resolve({ error });
        else if (job.spin && code === 1) resolve('terminated');
        else if (code === 0 && done) resolve(done);
        else reject(new Error(`worker exited with code ${code}`));
      });
    });

  /** Runs jobs(i) for i < n, two workers at a time; returns the results in order. */
  const runWorkers = async (n: number, job: (i: number) => Job) => {
    const results: Ended[] = [];
    for (let i = 0; i < n; i += 2) results.push(...(await Promise.all([runWorker(job(i)), ...(i + 1 < n ? [runWorker(job(i + 1))] : [])])));
    return results;
  };

  /** Samples until the counts are `want` (a thread's teardown may end just after its exit event), at most 2 s. */
  const settle = async (want: ReturnType<typeof sample>) => {
    let s = sample();
    for (let i = 0; i < 40 && (s.fds !== want.fds || s.memfdMaps !== want.memfdMaps); i++) {
      await new Promise((r) => setTimeout(r, 50));
      s = sample();
    }
    return s;
  };

  /** The baseline: the first of two equal samples 50 ms apart (at most 1 s). */
  const steady = async () => {
    let s = sample();
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const next = sample();
      if (next.fds === s.fds && next.memfdMaps === s.memfdMaps) break;
      s = next;
    }
    return s;
  };

  const out: Record<string, unknown> = { scenario, workers: count };
  const summary = (results: Ended[]) => ({
    terminated: results.filter((r) => r === 'terminated').length,
    errors: results.flatMap((r) => (typeof r === 'object' && 'error' in r ? [r.error] : [])),
    bad: results.reduce((n, r) => n + (typeof r === 'object' && 'bad' in r ? r.bad : 0), 0),
  });
  if (scenario === 'noclose') {
    const engine = new Engine({ backend: 'native' }); // the addon stays loaded in this process
    const b = nativeBinding();
    out['mainBad'] = work(engine, 2);
    const job = (i: number): Job => ({ spin: i % 5 === 4, close: false, exit: i % 5 === 2, foreign: [] });
    await runWorkers(4, job); // warm-up: what the first workers make once and keep is not ours
    const before = await steady();
    const imagesBefore = b.openImages();
    const results = await runWorkers(count, job);
    Object.assign(out, summary(results));
    out['before'] = before;
    out['after'] = await settle(before);
    out['images'] = { before: imagesBefore, after: b.openImages() };
    out['mainBadAfter'] = work(engine, 2);
    engine.close();
  } else if (scenario === 'noaddon') {
    const closing = (): Job => ({ spin: false, close: true, foreign: [] });
    await runWorkers(4, closing); // warm-up
    const before = await steady();
    // First half: every worker closes its engine (what is left is not the images').
    const first = await runWorkers(Math.ceil(count / 2), closing);
    out['closedOnly'] = await settle(before);
    // Second half: every third one is terminated while it works.
    const second = await runWorkers(Math.floor(count / 2), (i) => ({ spin: i % 3 === 2, close: true, foreign: [] }));
    Object.assign(out, summary([...first, ...second]));
    out['before'] = before;
    out['after'] = await settle(before);
    out['addonStillMapped'] = readFileSync('/proc/self/maps', 'utf8').includes('wasm_cow.node');
  } else if (scenario === 'main') {
    const b = nativeBinding();
    const page = b.pageSize;
    const engine = new Engine({ backend: 'native' });
    const prepared = modules.map((bytes) => engine.prepare(bytes));
    // An image made with the addon directly: its fd is what the workers try to use.
    const imageBytes = pseudoRandomBytes(2 * page, 77);
    const fd = b.createImage(imageBytes);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
    const view = () => new Uint8Array(memory.buffer);
    b.mapImage(memory, fd, 0, 2 * page);
    const restores: (number | string)[] = [];
    const restore = () => {
      try {
        return b.resetRange(memory, 65536, fd, 0, 2 * page, 65536);
      } catch (e) {
        return (e as Error).message;
      }
    };
    const checks: boolean[] = [];
    const foreign: string[] = [];
    const all: Ended[] = [];
    let teardowns = 0;
    for (let round = 0; teardowns < count; round++) {
      // Dirty both image pages and one past them, then restore from the image in place.
      view()[5]! ^= 0xff;
      view()[page + 9]! ^= 0xff;
      view()[3 * page] = 1;
      restores.push(restore());
      checks.push(Buffer.compare(view().subarray(0, 2 * page), imageBytes) === 0 && view()[3 * page] === 0);
      // The engine's images: instantiate, check, dirty, release (a queued reset restores from the image).
      for (let i = 0; i < prepared.length; i++) {
        const lease = prepared[i]!.instantiate();
        checks.push(digest(lease.exports['mem'] as WebAssembly.Memory) === wants[i]);
        (lease.exports['store8'] as (a: number, v: number) => void)(4096 * i + 100, 0xee);
        lease.release();
      }
      const results = await runWorkers(2, (i) => ({ spin: (round + i) % 3 === 2, close: false, foreign: [fd] }));
      teardowns += results.length;
      all.push(...results);
      foreign.push(...results.flatMap((r) => (typeof r === 'object' && 'foreign' in r ? r.foreign : [])));
    }
    out['teardowns'] = teardowns;
    Object.assign(out, summary(all));
    // After the last teardowns: restore from the main thread's images once more.
    view()[page + 1]! ^= 0x55;
    const last = restore();
    out['lastRestore'] = { restored: last, exact: Buffer.compare(view().subarray(0, 2 * page), imageBytes) === 0 };
    out['restores'] = restores;
    out['foreign'] = foreign;
    out['checksFailed'] = checks.filter((c) => !c).length;
    out['mainBadAfter'] = work(engine, 2);
    try {
      b.closeImage(fd);
    } catch {
      // Closed by someone else (a worker): what the test looks for.
    }
    engine.close();
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
  process.stdout.write(JSON.stringify(out));
}
