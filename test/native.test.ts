import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { binding } from './helpers/env.js';

const linux = process.platform === 'linux';
const PAGE = 4096;

function imageBytes(pages: number, seed: number): Uint8Array {
  const b = new Uint8Array(pages * PAGE);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + seed) & 0xff || 1;
  return b;
}

test('the addon loads on Linux', { skip: !linux && 'the native backend is Linux-only' }, () => {
  const b = binding();
  assert.equal(b.pageSize, PAGE);
  assert.equal(typeof b.createImage, 'function');
});

if (linux) {
  const b = binding();

  test('an image is a sealed memfd: no write, no resize', () => {
    const fd = b.createImage(imageBytes(2, 1));
    try {
      assert.match(fs.readlinkSync(`/proc/self/fd/${fd}`), /memfd:wasm-cow-image/);
      assert.equal(fs.fstatSync(fd).size, 2 * PAGE);
      assert.throws(() => fs.writeSync(fd, Buffer.from([1]), 0, 1, 0), { code: 'EPERM' });
      assert.throws(() => fs.ftruncateSync(fd, PAGE), { code: 'EPERM' });
      assert.throws(() => fs.ftruncateSync(fd, 4 * PAGE), { code: 'EPERM' });
      const back = Buffer.alloc(2 * PAGE);
      fs.readSync(fd, back, 0, back.length, 0);
      assert.ok(back.equals(imageBytes(2, 1)));
    } finally {
      b.closeImage(fd);
    }
  });

  test('map: the memory sees the image at once; writes are private to each memory', () => {
    const img = imageBytes(3, 2);
    const fd = b.createImage(img);
    const m1 = new WebAssembly.Memory({ initial: 1 });
    const m2 = new WebAssembly.Memory({ initial: 1 });
    b.mapImage(m1, fd, PAGE, 3 * PAGE);
    b.mapImage(m2, fd, PAGE, 3 * PAGE);
    const v1 = new Uint8Array(m1.buffer);
    const v2 = new Uint8Array(m2.buffer);
    assert.ok(Buffer.from(v1.subarray(PAGE, 4 * PAGE)).equals(img));
    assert.equal(v1[0], 0);
    assert.equal(v1[4 * PAGE], 0);
    assert.equal(b.residentPages(m1, PAGE, 3 * PAGE), 3, 'read faults map the shared image pages');
    v1[PAGE + 5] = 0xee;
    assert.equal(v1[PAGE + 5], 0xee);
    assert.equal(v2[PAGE + 5], img[5], 'the other memory does not see the write');
    const m3 = new WebAssembly.Memory({ initial: 1 });
    b.mapImage(m3, fd, 0, PAGE);
    assert.equal(new Uint8Array(m3.buffer)[5], img[5], 'the image itself is unchanged');
    b.closeImage(fd);
    // Mappings outlive the fd.
    assert.equal(v2[PAGE + 6], img[6]);
  });

  test('discard restores the image and zero elsewhere; mapZero removes the image', () => {
    const img = imageBytes(1, 3);
    const fd = b.createImage(img);
    const m = new WebAssembly.Memory({ initial: 1, maximum: 2 });
    b.mapImage(m, fd, 2 * PAGE, PAGE);
    const v = new Uint8Array(m.buffer);
    v[2 * PAGE] = img[0]! ^ 0xff;
    v[0] = 9;
    v[10 * PAGE] = 9;
    assert.ok(b.residentPages(m, 0, 65536) >= 3);
    b.discard(m, 0, 65536);
    assert.equal(b.residentPages(m, 0, 65536), 0, 'discard frees the private pages');
    assert.equal(v[2 * PAGE], img[0]);
    assert.equal(v[0], 0);
    assert.equal(v[10 * PAGE], 0);
    b.mapZero(m, 2 * PAGE, PAGE);
    assert.equal(v[2 * PAGE], 0);
    // Growth keeps the mapping below the old size.
    b.mapImage(m, fd, 2 * PAGE, PAGE);
    m.grow(1);
    assert.equal(new Uint8Array(m.buffer)[2 * PAGE], img[0]);
    b.closeImage(fd);
  });

  test('resetRange: few dirty pages are rewritten in place and stay resident; many are discarded', () => {
    const img = imageBytes(2, 9);
    const fd = b.createImage(img);
    const m = new WebAssembly.Memory({ initial: 4 });
    const len = 4 * 65536;
    b.mapImage(m, fd, 4 * PAGE, 2 * PAGE); // image at pages 4..5
    const v = new Uint8Array(m.buffer);
    const clean = () => {
      for (let p = 0; p < len / PAGE; p++) {
        const want = p === 4 || p === 5 ? img[(p - 4) * PAGE + 3] : 0;
        if (v[p * PAGE + 3] !== want) return `page ${p}`;
      }
      return 'clean';
    };
    // Nothing written: nothing to do.
    assert.equal(b.resetRange(m, len, fd, 4 * PAGE, 2 * PAGE, 16 * PAGE), 0);
    // Three pages: one before, one inside, one after the image.
    for (const p of [0, 5, 9]) v[p * PAGE + 3] = 0xee;
    assert.equal(b.resetRange(m, len, fd, 4 * PAGE, 2 * PAGE, 16 * PAGE), 3 * PAGE);
    assert.equal(clean(), 'clean');
    assert.equal(b.residentPages(m, 0, PAGE), 1, 'restored in place: still resident');
    // Over the budget: madvise, nothing stays.
    for (let p = 0; p < 20; p++) v[p * PAGE + 3] = 0xee;
    assert.equal(b.resetRange(m, len, fd, 4 * PAGE, 2 * PAGE, 16 * PAGE), -1);
    assert.equal(b.residentPages(m, 0, len), 0);
    assert.equal(clean(), 'clean');
    // keep 0: always madvise. No image: fd -1.
    v[3] = 1;
    assert.equal(b.resetRange(m, len, fd, 4 * PAGE, 2 * PAGE, 0), -1);
    assert.equal(clean(), 'clean');
    const z = new WebAssembly.Memory({ initial: 1 });
    new Uint8Array(z.buffer)[3] = 1;
    assert.equal(b.resetRange(z, 65536, -1, 0, 0, 16 * PAGE), PAGE);
    assert.equal(new Uint8Array(z.buffer)[3], 0);
    // Bad arguments.
    // A length that is not the memory's (it grew, or was never that size): -2, nothing touched.
    v[3] = 1;
    assert.equal(b.resetRange(m, len + 65536, fd, 0, PAGE, 16 * PAGE), -2);
    assert.equal(b.resetRange(m, len - 65536, fd, 0, PAGE, 16 * PAGE), -2);
    assert.equal(v[3], 1);
    v[3] = 0;
    assert.throws(() => b.resetRange(m, len, fd, 0, 3 * PAGE, 0), /exceeds the image/);
    assert.throws(() => b.resetRange(m, len, -1, 0, PAGE, 0), /without an image fd/);
    assert.throws(() => b.resetRange(m, PAGE, fd, PAGE, PAGE, 0), /outside \[0, length\)/);
    assert.throws(() => b.resetRange(m, len, 99999, 0, 0, 0), /not an open wasm-cow image/);
    assert.throws(() => b.resetRange(m, len, fd, 0, 0, 100), /multiple of the page size/);
    assert.throws(() => b.resetRange({} as WebAssembly.Memory, len, fd, 0, 0, 0), TypeError);
    b.closeImage(fd);
  });

  test('the memory is resolved through the genuine buffer getter', () => {
    const fd = b.createImage(imageBytes(1, 4));
    const real = new WebAssembly.Memory({ initial: 1 });
    const decoy = new ArrayBuffer(65536);
    Object.defineProperty(real, 'buffer', { get: () => decoy });
    b.mapImage(real, fd, 0, PAGE);
    const genuine = Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, 'buffer')!.get!.call(real) as ArrayBuffer;
    assert.equal(new Uint8Array(genuine)[0], imageBytes(1, 4)[0]);
    assert.equal(new Uint8Array(decoy)[0], 0);
    b.closeImage(fd);
  });

  test('every bad argument throws a JS error and changes nothing', () => {
    const fd = b.createImage(imageBytes(2, 5));
    const m = new WebAssembly.Memory({ initial: 1 });
    const memLen = 65536;
    const notMemories: unknown[] = [
      undefined,
      null,
      42,
      'memory',
      {},
      { buffer: new ArrayBuffer(65536) },
      Object.create(WebAssembly.Memory.prototype),
      new Proxy(m, {}),
      new ArrayBuffer(65536),
      new Uint8Array(65536),
    ];
    for (const bad of notMemories) {
      assert.throws(() => b.mapImage(bad as WebAssembly.Memory, fd, 0, PAGE), TypeError, String(bad));
      assert.throws(() => b.discard(bad as WebAssembly.Memory, 0, PAGE), TypeError);
      assert.throws(() => b.mapZero(bad as WebAssembly.Memory, 0, PAGE), TypeError);
    }
    const badNumbers: unknown[] = [-PAGE, NaN, Infinity, 1.5, '4096', 2 ** 60, undefined, null, 4096n];
    for (const n of badNumbers) {
      assert.throws(() => b.mapImage(m, fd, n as number, PAGE), /offset/, String(n));
      assert.throws(() => b.mapImage(m, fd, 0, n as number), /length/, String(n));
      assert.throws(() => b.discard(m, n as number, PAGE), /offset/);
      assert.throws(() => b.mapZero(m, 0, n as number), /length/);
    }
    assert.throws(() => b.mapImage(m, fd, 100, PAGE), { name: 'RangeError', code: 'ERR_WASM_COW_NATIVE_ARG' });
    assert.throws(() => b.mapImage(m, fd, 0, 100), /multiple of the page size/);
    assert.throws(() => b.mapImage(m, fd, memLen, PAGE), /outside the memory/);
    assert.throws(() => b.mapImage(m, fd, memLen - PAGE, 2 * PAGE), /outside the memory/);
    assert.throws(() => b.discard(m, 0, memLen + PAGE), /outside the memory/);
    assert.throws(() => b.mapZero(m, memLen, PAGE), /outside the memory/);
    assert.throws(() => b.mapImage(m, fd, 0, 3 * PAGE), /exceeds the image/);
    for (const badFd of [0, 1, 2, 99999, -1, 1.5, 'x']) {
      assert.throws(() => b.mapImage(m, badFd as number, 0, PAGE), /fd/, String(badFd));
      assert.throws(() => b.closeImage(badFd as number), /fd/);
    }
    for (const bytes of [undefined, new Uint8Array(0), new Uint8Array(100), new Uint16Array(PAGE), [1, 2], new ArrayBuffer(PAGE)]) {
      assert.throws(() => b.createImage(bytes as Uint8Array), /bytes|page size/);
    }
    assert.throws(() => (b.mapImage as (...a: unknown[]) => void)(m, fd, 0), /missing arguments/);
    // Nothing was mapped by any of the failed calls.
    assert.equal(new Uint8Array(m.buffer)[0], 0);
    b.closeImage(fd);
    assert.throws(() => b.closeImage(fd), /not an open wasm-cow image/);
    assert.throws(() => b.mapImage(m, fd, 0, PAGE), /not an open wasm-cow image/);
  });

  test('fault injection is off unless enabled at load', () => {
    assert.equal(b.faultInjection, false);
    assert.throws(() => b.setFault('mmap'), /fault injection is off/);
  });

  test('open images return to their starting count', () => {
    const before = b.openImages();
    const fds = Array.from({ length: 50 }, (_, i) => b.createImage(imageBytes(1, i)));
    assert.equal(b.openImages(), before + 50);
    for (const fd of fds) b.closeImage(fd);
    assert.equal(b.openImages(), before);
  });
}
