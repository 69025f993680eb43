// A queued (background) reset pins its image and holds its memory until
// the addon reaps the job on the JS thread. A job that ended before the
// last native call that passes a memory used to stay unreaped: after
// prepared.dispose() or engine.close() its image (memfd and view) stayed
// open, and its memory alive, until some unrelated later wasm-cow call.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { uleb } from '../src/bench/builder.js';
import { Engine } from '../src/index.js';
import { ResetQueue } from '../src/backend/reset-queue.js';
import { binding } from './helpers/env.js';

const linux = process.platform === 'linux';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const imageFds = (): number =>
  fs.readdirSync('/proc/self/fd').filter((f) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${f}`).includes('wasm-cow-image');
    } catch {
      return false;
    }
  }).length;
const imageMaps = (): number => fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('wasm-cow-image')).length;

/** A module exporting (as mem) a `pages`-page memory whose first 8 pages hold `k + 2` (distinct modules: distinct images). */
function module(k: number, pages = 16): Uint8Array<ArrayBuffer> {
  const data = new Uint8Array(8 * 65536).fill(1);
  data[data.length - 1] = k + 2;
  const seg = [1, 0, 0x41, 0, 0x0b, ...uleb(data.length)];
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 2 + uleb(pages).length, 1, 0, ...uleb(pages), 7, 7, 1, 3, 109, 101, 109, 2, 0, 11, ...uleb(seg.length + data.length), ...seg, ...data]);
}

async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
}

if (linux) {
  const b = binding();

  test('engine.close() leaves no image open and no memory mapped for background resets that ended', async () => {
    await collect();
    const base = { images: b.openImages(), fds: imageFds(), maps: imageMaps() };
    const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
    for (let k = 0; k < 20; k++) engine.prepare(module(k)).instantiate({}).release(); // queued to the reset thread
    await sleep(200); // every reset ends on the reset thread; nothing here calls the addon meanwhile
    engine.close();
    assert.ok(engine.stats().backgroundResets > 0, 'resets were queued to the reset thread');
    assert.equal(b.openImages(), base.images, 'openImages() back to where it was');
    assert.equal(imageFds(), base.fds, 'no image memfd left open');
    await collect();
    assert.equal(imageMaps(), base.maps, 'no image mapped: no memory kept alive by a finished reset');
  });

  test('closeImage() closes an image whose queued reset ended, with no native call in between', async () => {
    // What an image's finalizer or dispose() does when the last queued reset
    // that pinned the image ended after the thread's last call that passes a memory.
    const queue = ResetQueue.get(b);
    assert.ok(queue !== null, 'this thread has a reset queue');
    const base = b.openImages();
    const img = new Uint8Array(8 * 65536).fill(3);
    const fd = b.createImage(img);
    const m = new WebAssembly.Memory({ initial: 16 });
    b.mapImage(m, fd, 0, img.length);
    new Uint8Array(m.buffer).fill(5, 0, 65536); // something to restore
    const cell = queue.begin(m, 16 * 65536, fd, 0, img.length, 0);
    assert.equal(typeof cell, 'number', 'queued');
    let state = queue.poll(cell as number); // reads the status cell only (no native call)
    for (let i = 0; i < 500 && state === 'pending'; i++) {
      await sleep(10);
      state = queue.poll(cell as number);
    }
    assert.equal(state, 'done', 'the reset thread ran it');
    assert.equal(b.openImages(), base + 1);
    b.closeImage(fd);
    assert.equal(b.openImages(), base, 'closed with its last hold: the ended reset no longer pins it');
    assert.equal(new Uint8Array(m.buffer)[100], 3, 'the reset restored the image bytes');
  });
}
