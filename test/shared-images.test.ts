/**
 * One image per content, process-wide (native/image_table.c): threads that
 * prepare the same bytes share one sealed memfd, held once per createImage
 * and closed with its last hold, whichever thread made it and in whatever
 * order the threads end.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { binding } from './helpers/env.js';
import { ResetQueue } from '../src/backend/reset-queue.js';

const linux = process.platform === 'linux';
const child = fileURLToPath(new URL('./shared-images-child.js', import.meta.url));

test('createImage of equal bytes returns the open image, held once per call; the last closeImage closes it', { skip: !linux && 'native backend only' }, () => {
  const b = binding();
  const page = b.pageSize;
  const open = b.openImages();
  const bytes = new Uint8Array(3 * page);
  for (let i = 0; i < bytes.length; i += 97) bytes[i] = i & 0xff;
  const a = b.createImage(bytes);
  const again = b.createImage(bytes.slice()); // equal bytes, another buffer
  assert.equal(again, a, 'the same image');
  assert.equal(b.openImages(), open + 1);
  const last = bytes.slice();
  last[last.length - 1]! ^= 1;
  const differsAtEnd = b.createImage(last);
  assert.notEqual(differsAtEnd, a, 'bytes that differ in their last byte: another image');
  const shorter = b.createImage(bytes.subarray(0, 2 * page));
  assert.notEqual(shorter, a, 'a prefix: another image');
  assert.equal(b.openImages(), open + 3);
  const memory = new WebAssembly.Memory({ initial: 1 });
  b.closeImage(a); // one hold dropped: still open
  assert.equal(b.openImages(), open + 3);
  b.mapImage(memory, a, 0, 3 * page);
  assert.deepEqual(new Uint8Array(memory.buffer, 0, 3 * page), bytes);
  b.closeImage(a); // the last hold: closed
  assert.equal(b.openImages(), open + 2);
  assert.throws(() => b.closeImage(a), /fd is not an open wasm-cow image/);
  assert.throws(() => b.mapImage(memory, a, 0, page), /fd is not an open wasm-cow image/);
  assert.deepEqual(new Uint8Array(memory.buffer, 0, 3 * page), bytes, 'a mapping outlives the image');
  b.closeImage(differsAtEnd);
  b.closeImage(shorter);
  assert.equal(b.openImages(), open);
  // Equal bytes after the close: a new image again.
  const renewed = b.createImage(bytes);
  assert.equal(b.openImages(), open + 1);
  b.closeImage(renewed);
});

test('a queued reset keeps its image open: closed meanwhile, the reset still restores it exactly, and the image closes once the reset is reaped', { skip: !linux && 'native backend only' }, () => {
  const b = binding();
  const page = b.pageSize;
  const queue = ResetQueue.get(b)!;
  const open = b.openImages();
  const bytes = new Uint8Array(2 * page);
  for (let i = 0; i < bytes.length; i += 13) bytes[i] = (i >> 3) & 0xff;
  for (let round = 0; round < 50; round++) {
    const fd = b.createImage(bytes);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 2 });
    b.mapImage(memory, fd, 0, 2 * page);
    const view = new Uint8Array(memory.buffer);
    view[1] = 0xee;
    view[page + 5] = 0xdd;
    view[3 * page] = 1;
    const ticket = queue.begin(memory, 65536, fd, 0, 2 * page, round % 2 === 0 ? 65536 : 0);
    assert.equal(typeof ticket, 'number');
    b.closeImage(fd); // its only holder lets go while the reset is queued (or running)
    assert.throws(() => b.closeImage(fd), /fd is not an open wasm-cow image/, 'no longer this thread\'s');
    const outcome = queue.wait(ticket as number);
    assert.ok(outcome === 'done' || outcome === 'done-here', `round ${round}: ${outcome}`);
    assert.deepEqual(new Uint8Array(memory.buffer, 0, 2 * page), bytes, `round ${round}: restored from the image`);
    assert.equal(new Uint8Array(memory.buffer)[3 * page], 0);
    b.touchedPages(memory, 0, page); // any call with a memory reaps finished resets: the pin goes
    assert.equal(b.openImages(), open, `round ${round}: closed once reaped`);
  }
});

for (const order of ['0123', '3210', '2031', '1302']) {
  test(`4 workers prepare the same module: one memfd, tenants equal native; they end in order ${order}: fds back to baseline`, { skip: !linux && 'native backend only' }, () => {
    const out = execFileSync(process.execPath, [child, order], { encoding: 'utf8', timeout: 120_000 });
    type Count = { fds: number; images: number; open: number };
    const r = JSON.parse(out) as {
      before: Count;
      first: { ok: number; bad: number }[];
      allAlive: Count;
      steps: { ended: number; alive: { ok: number; bad: number }[]; count: Count }[];
      after: Count;
      errors: string[];
    };
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.before.images, 0);
    assert.deepEqual(r.first, Array(4).fill({ ok: 3, bad: 0 }), 'every tenant of every worker equals native');
    assert.equal(r.allAlive.images, 1, 'one memfd for the 4 workers');
    assert.equal(r.allAlive.open, 1, 'the addon counts one image');
    r.steps.forEach((s, k) => {
      const left = 3 - k;
      assert.deepEqual(s.alive, Array(left).fill({ ok: 3, bad: 0 }), `after worker ${s.ended} ended, the others' tenants still equal native`);
      assert.equal(s.count.images, left > 0 ? 1 : 0, `after worker ${s.ended} ended`);
      assert.equal(s.count.open, left > 0 ? 1 : 0);
    });
    assert.equal(r.after.fds, r.before.fds, `fds: ${r.before.fds} -> ${r.after.fds}`);
    assert.equal(r.after.open, 0);
  });
}
