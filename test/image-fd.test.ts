// An image is named by its fd number, and other code in the process may
// close that number by mistake (a double close elsewhere); the kernel then
// gives it to the next file opened. wasm-cow must notice (the memfd's
// (st_dev, st_ino) no longer match), map nothing from that number and
// never close it.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { uleb } from '../src/bench/builder.js';
import { Engine, ImageFdReplacedError } from '../src/index.js';
import { binding, leaseMemory } from './helpers/env.js';

const linux = process.platform === 'linux';
const PAGE = 4096;

/** Closes `fd` and opens `file` until the kernel hands out that very number; returns it. */
function replaceFd(fd: number, file: string): number {
  fs.closeSync(fd);
  const extra: number[] = [];
  let got = -1;
  try {
    for (let i = 0; i < 256 && got !== fd; i++) {
      const n = fs.openSync(file, 'r');
      if (n === fd) got = n;
      else extra.push(n);
    }
  } finally {
    for (const n of extra) fs.closeSync(n);
  }
  assert.equal(got, fd, 'the kernel gave the closed number to the file opened next');
  return got;
}

const imageFds = (): Set<number> =>
  new Set(
    fs.readdirSync('/proc/self/fd').flatMap((f) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${f}`).includes('wasm-cow-image') ? [Number(f)] : [];
      } catch {
        return [];
      }
    }),
  );

if (linux) {
  const b = binding();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasm-cow-fd-'));
  const secret = path.join(dir, 'secret');
  fs.writeFileSync(secret, 'SECRET-TOKEN-'.repeat(6000)); // longer than the images below
  const secretIno = fs.statSync(secret).ino;

  test('an image fd closed by other code and reused by another file is never mapped nor closed', () => {
    const before = b.openImages();
    const img = new Uint8Array(2 * PAGE).fill(0x41);
    const fd = b.createImage(img);
    const other = replaceFd(fd, secret);
    try {
      const m = new WebAssembly.Memory({ initial: 1 });
      assert.throws(() => b.mapImage(m, fd, 0, 2 * PAGE), { code: 'ERR_WASM_COW_IMAGE_FD_REPLACED' });
      // Nothing mapped: the memory still reads zero, not the other file.
      assert.deepEqual(new Uint8Array(m.buffer, 0, 2 * PAGE), new Uint8Array(2 * PAGE));
      // mapImageAt says the range still holds zero (the caller then writes the bytes).
      assert.throws(() => b.mapImageAt(m, fd, 0, PAGE, 0), (e: { code?: unknown; zeroed?: unknown }) => e.code === 'ERR_WASM_COW_IMAGE_FD_REPLACED' && e.zeroed === true);
      assert.deepEqual(new Uint8Array(m.buffer, 0, 2 * PAGE), new Uint8Array(2 * PAGE));
      // A new image of the same bytes is not "shared" with the number that names another file.
      const fd2 = b.createImage(img);
      assert.notEqual(fd2, fd);
      b.mapImage(m, fd2, 0, 2 * PAGE);
      assert.equal(new Uint8Array(m.buffer)[PAGE + 5], 0x41);
      b.closeImage(fd2);
      // Dropping the last hold forgets the number: the other file stays open.
      b.closeImage(fd);
      assert.equal(b.openImages(), before);
      assert.equal(fs.fstatSync(other).ino, secretIno);
      assert.equal(fs.readSync(other, Buffer.alloc(6), 0, 6, 0), 6);
    } finally {
      fs.closeSync(other);
    }
  });

  test('engine: a memory that must map a replaced image fails with ImageFdReplacedError; close() leaves the other file open', () => {
    const data = new Uint8Array(65536).fill(0x41);
    const seg = [1, 0, 0x41, 0, 0x0b, ...uleb(data.length)];
    const exp = [7, 7, 1, 3, 109, 101, 109, 2, 0];
    const bytes = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 2, ...exp, 11, ...uleb(seg.length + data.length), ...seg, ...data]);
    // Inline resets: the released memory is idle (not resetting) when the next instantiate comes.
    const engine = new Engine({ backend: 'native', nativeWhenFaster: false, backgroundReset: false });
    const seen = imageFds();
    const p = engine.prepare(bytes);
    p.instantiate({}).release(); // builds the image, leaves one idle memory holding it
    const fds = [...imageFds()].filter((f) => !seen.has(f));
    assert.equal(fds.length, 1, 'one new image fd');
    const other = replaceFd(fds[0]!, secret);
    try {
      const l = p.instantiate({}); // the idle memory: its mapping is of the memfd itself, not of the number
      assert.equal(new Uint8Array(leaseMemory(l).buffer)[100], 0x41);
      let err: unknown;
      try {
        p.instantiate({}).release(); // a new memory must map the image
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ImageFdReplacedError, `got ${String(err)}`);
      assert.equal(err.code, 'ERR_WASM_COW_IMAGE_FD_REPLACED');
      assert.equal(err.fd, other);
      l.release();
      engine.close();
      assert.equal(fs.fstatSync(other).ino, secretIno, 'engine.close() did not close the other file');
    } finally {
      fs.closeSync(other);
    }
  });

  test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
}
