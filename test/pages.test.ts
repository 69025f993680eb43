/**
 * The addon's page classification (nonZeroPages), partial image mapping
 * (mapImageAt) and the reset's first step, which replaces any mapping that
 * is not the memory's own image at its own offset.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { binding } from './helpers/env.js';

const linux = process.platform === 'linux';
const PAGE = 4096;

if (linux) {
  const b = binding();
  const classify = (m: WebAssembly.Memory, offset: number, pages: number): string => {
    const out = new Uint8Array(pages);
    const n = b.nonZeroPages(m, offset, pages * PAGE, out);
    assert.equal(n, out.reduce((a, v) => a + v, 0), 'the count is the number of 1s');
    return out.join('');
  };

  test('nonZeroPages: by content now, whatever the page’s history; file pages never zero', () => {
    const m = new WebAssembly.Memory({ initial: 1 });
    assert.equal(classify(m, 0, 16), '0000000000000000', 'a fresh memory holds only zeros');
    const v = new Uint8Array(m.buffer);
    v.fill(0, 0, 2 * PAGE); // written with zeros: present, still zero
    v[3 * PAGE + 9] = 1;
    void v[4 * PAGE]; // read only: the zero page
    v[5 * PAGE] = 1;
    v[5 * PAGE] = 0; // written, then zero again
    assert.equal(classify(m, 0, 16), '0001000000000000');
    const image = new Uint8Array(4 * PAGE);
    image[3 * PAGE] = 7; // pages 0..2 of the image are holes
    const fd = b.createImage(image);
    try {
      b.mapImageAt(m, fd, 8 * PAGE, 2 * PAGE, 2 * PAGE); // image pages 2 (a hole) and 3 at memory pages 8, 9
      assert.deepEqual([v[8 * PAGE], v[9 * PAGE]], [0, 7], 'mapped at the file offset');
      assert.equal(classify(m, 0, 16), '0001000011000000', 'an image page is not zero, even a hole');
      assert.equal(classify(m, 8 * PAGE, 2), '11', 'a range inside the mapping');
    } finally {
      b.closeImage(fd);
    }
  });

  test('nonZeroPages and mapImageAt validate every argument', () => {
    const m = new WebAssembly.Memory({ initial: 1 });
    assert.throws(() => b.nonZeroPages(m, 0, 2 * PAGE, new Uint8Array(1)), RangeError);
    assert.throws(() => b.nonZeroPages(m, 0, PAGE, new Uint16Array(4) as unknown as Uint8Array), TypeError);
    assert.throws(() => b.nonZeroPages(m, 1, PAGE, new Uint8Array(1)), RangeError);
    assert.throws(() => b.nonZeroPages(m, 0, 17 * PAGE, new Uint8Array(17)), RangeError);
    assert.throws(() => b.nonZeroPages({} as WebAssembly.Memory, 0, PAGE, new Uint8Array(1)), TypeError);
    const fd = b.createImage(new Uint8Array(2 * PAGE).fill(1));
    try {
      assert.throws(() => b.mapImageAt(m, fd, 0, 2 * PAGE, PAGE), RangeError, 'past the image’s end');
      assert.throws(() => b.mapImageAt(m, fd, 0, PAGE, 100), RangeError, 'unaligned file offset');
      assert.throws(() => b.mapImageAt(m, fd, 16 * PAGE, PAGE, 0), RangeError, 'past the memory’s end');
      assert.throws(() => b.mapImageAt(m, 99999, 0, PAGE, 0), RangeError, 'not an image');
      assert.equal(classify(m, 0, 16), '0000000000000000', 'nothing was mapped');
    } finally {
      b.closeImage(fd);
    }
  });

  for (const keep of [0, 16 * PAGE]) {
    test(`resetRange replaces every mapping but the memory's own image at its own offset (keep ${keep})`, () => {
      const own = new Uint8Array(3 * PAGE).fill(0x11);
      const ownFd = b.createImage(own);
      const otherFd = b.createImage(new Uint8Array(4 * PAGE).fill(0x55));
      try {
        const m = new WebAssembly.Memory({ initial: 1 });
        const v = new Uint8Array(m.buffer);
        b.mapImage(m, ownFd, 4 * PAGE, 3 * PAGE); // the slot's own image at pages 4..6
        b.mapImageAt(m, otherFd, 12 * PAGE, PAGE, 0); // another image outside it
        b.mapImageAt(m, otherFd, 5 * PAGE, PAGE, PAGE); // and inside it
        b.mapImageAt(m, ownFd, 14 * PAGE, PAGE, 0); // its own image, at the wrong offset
        assert.deepEqual([v[12 * PAGE], v[5 * PAGE], v[14 * PAGE]], [0x55, 0x55, 0x11]);
        b.resetRange(m, 65536, ownFd, 4 * PAGE, 3 * PAGE, keep);
        const want = new Uint8Array(65536);
        want.fill(0x11, 4 * PAGE, 7 * PAGE);
        assert.deepEqual(new Uint8Array(m.buffer), want);
        assert.equal(classify(m, 0, 16), '0000111000000000', 'the own image’s pages, and nothing else, are file pages');
        // Once more: a reset of a memory that is already as it should be changes nothing.
        v[12 * PAGE] = 3;
        b.resetRange(m, 65536, ownFd, 4 * PAGE, 3 * PAGE, keep);
        assert.deepEqual(new Uint8Array(m.buffer), want);
      } finally {
        b.closeImage(ownFd);
        b.closeImage(otherFd);
      }
    });
  }

  test('resetRange without an image replaces every file mapping with zero pages', () => {
    const fd = b.createImage(new Uint8Array(2 * PAGE).fill(0x42));
    try {
      const m = new WebAssembly.Memory({ initial: 1 });
      b.mapImage(m, fd, 0, 2 * PAGE);
      b.mapImageAt(m, fd, 10 * PAGE, PAGE, PAGE);
      b.resetRange(m, 65536, -1, 0, 0, 0);
      assert.deepEqual(new Uint8Array(m.buffer), new Uint8Array(65536));
      assert.equal(classify(m, 0, 16), '0000000000000000');
    } finally {
      b.closeImage(fd);
    }
  });
}
