/**
 * Worker threads and the addon's per-thread cleanup: when a worker's
 * environment is torn down, the images it created and did not close (fd
 * and view) are closed with it, and the process-wide pagemap fd is closed
 * with the last thread that loaded the addon (Node unloads the addon then,
 * and its statics start again at the next load). Another thread's images
 * are not a worker's to close, map or restore from.
 *
 * Each case runs in a child process (test/workers-child.ts) so that the
 * fds and mappings counted are its own. WASM_COW_WORKER_COUNT scales the
 * number of workers (default 1: 50, 60 and 20).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const child = fileURLToPath(new URL('./workers-child.js', import.meta.url));
const linux = process.platform === 'linux';
const scale = Number(process.env['WASM_COW_WORKER_COUNT'] ?? 1);

type Sample = { fds: number; memfdMaps: number };
type Common = { workers: number; terminated: number; errors: string[]; bad: number };

function run<T>(scenario: string, workers: number): T & Common {
  const out = execFileSync(process.execPath, ['--expose-gc', child, scenario, String(workers * scale)], { encoding: 'utf8', timeout: 120_000 });
  const r = JSON.parse(out) as T & Common;
  console.log(`${scenario}: ${out.length > 600 ? `${out.slice(0, 600)}…` : out}`);
  assert.deepEqual(r.errors, [], 'no worker failed');
  assert.equal(r.bad, 0, 'every tenant a worker checked started clean');
  return r;
}

test('workers that end without engine.close() (script end, process.exit, terminate) leave no image fd or mapping behind', { skip: !linux && 'native backend only' }, () => {
  const r = run<{ before: Sample; after: Sample; images: { before: number; after: number }; mainBad: number; mainBadAfter: number }>('noclose', 50);
  assert.equal(r.terminated, r.workers / 5, 'every 5th worker was terminated while it worked');
  assert.equal(r.after.fds, r.before.fds, `open fds: ${r.before.fds} -> ${r.after.fds}`);
  assert.equal(r.after.memfdMaps, r.before.memfdMaps, `memfd mappings: ${r.before.memfdMaps} -> ${r.after.memfdMaps}`);
  assert.equal(r.images.after, r.images.before, 'open images (process-wide) back to the main thread’s own');
  assert.equal(r.mainBad + r.mainBadAfter, 0, 'the main thread’s engine kept working');
});

test('a process that never loaded the addon: workers that load, use and close it leave no fd behind', { skip: !linux && 'native backend only' }, () => {
  const r = run<{ before: Sample; closedOnly: Sample; after: Sample; addonStillMapped: boolean }>('noaddon', 60);
  assert.equal(r.addonStillMapped, false, 'the main thread never loaded the addon (Node unloaded it with the last worker)');
  // Every worker closed its engine: only the pagemap fd could be left.
  assert.equal(r.closedOnly.fds, r.before.fds, `open fds after workers that closed: ${r.before.fds} -> ${r.closedOnly.fds}`);
  assert.ok(r.terminated >= 5, `terminated while working: ${r.terminated}`);
  assert.equal(r.after.fds, r.before.fds, `open fds after all: ${r.before.fds} -> ${r.after.fds}`);
  assert.equal(r.after.memfdMaps, r.before.memfdMaps, 'memfd mappings');
});

test('the main thread’s images keep working while workers come and go; no worker can close, map or restore from them', { skip: !linux && 'native backend only' }, () => {
  const r = run<{
    teardowns: number;
    restores: (number | string)[];
    lastRestore: { restored: number | string; exact: boolean };
    foreign: string[];
    checksFailed: number;
    mainBadAfter: number;
  }>('main', 20);
  assert.ok(r.teardowns >= 20);
  assert.ok(r.terminated > 0, 'some workers were terminated while they worked');
  const page = r.restores[0];
  assert.equal(typeof page, 'number');
  for (const n of r.restores) assert.equal(n, page, 'each restore rewrote the dirtied pages from the image');
  assert.deepEqual(r.lastRestore, { restored: page, exact: true }, `restore after ${r.teardowns} worker teardowns`);
  assert.equal(r.checksFailed, 0, 'every main-thread tenant and restore gave the image’s bytes');
  assert.equal(r.mainBadAfter, 0);
  assert.ok(r.foreign.length >= 3 * 10, `workers tried the main thread's fd: ${r.foreign.length}`);
  for (const f of r.foreign) assert.match(f, /^(closeImage|mapImage|resetRange): fd is not an open wasm-cow image/);
});
