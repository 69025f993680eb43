/**
 * Runs the engine where the threads test wants it: in a worker thread
 * (workerData) or in a child process (argv), and reports with postMessage
 * or on stdout.
 *
 *   mode 'run'  <cycles> <max>: instantiate / check / dirty / release; report stats
 *   mode 'spin': the same, forever (the parent terminates it)
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { Engine } from '../../src/index.js';
import { buildModule, pseudoRandomBytes, stdFuncs } from '../../src/bench/builder.js';

type Args = { mode: 'run' | 'spin'; cycles: number; max: boolean };
const args: Args = isMainThread
  ? { mode: process.argv[2] as Args['mode'], cycles: Number(process.argv[3]), max: process.argv[4] === 'max' }
  : (workerData as Args);

const bytes = buildModule({
  memories: [{ min: 4, ...(args.max ? { max: 8 } : {}), export: 'mem' }],
  funcs: stdFuncs,
  data: [{ offset: 4096 * 3 + 5, bytes: pseudoRandomBytes(30_000, 9) }],
});
const digest = (b: ArrayBuffer) => createHash('sha256').update(new Uint8Array(b)).digest('hex');
const want = digest((new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports['mem'] as WebAssembly.Memory).buffer);

const engine = new Engine({ backend: 'native' });
const prepared = engine.prepare(bytes);
let bad = 0;
for (let i = 0; args.mode === 'spin' || i < args.cycles; i++) {
  const lease = prepared.instantiate();
  if (i % 10 === 0 && digest(lease.memoryBuffer()) !== want) bad++;
  const store8 = lease.exports['store8'] as (a: number, v: number) => void;
  for (let p = 0; p < 1 + (i % 40); p++) store8(((i * 7 + p * 13) % 64) * 4096 + (i % 4096), 1 + (i % 255));
  lease.release();
  if (i === 100) parentPort?.postMessage({ started: true });
}
const report = { bad, stats: engine.stats() };
if (parentPort) parentPort.postMessage(report);
else process.stdout.write(JSON.stringify(report));
