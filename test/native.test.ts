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

test('every copy of the loader in a thread shares one load of the addon (the library, the register bundle)', { skip: !linux && 'the native backend is Linux-only' }, async () => {
  const b = binding();
  const shared = (globalThis as Record<symbol, { binding: unknown } | undefined>)[Symbol.for('wasm-cow.binding')];
  assert.equal(shared?.binding, b, 'kept under the global symbol');
  // Another copy of the same code (the built package's), as the register bundle has its own.
  const dist = (await import(new URL('../../dist/native/binding.js', import.meta.url).href)) as typeof import('../src/native/binding.js');
  assert.equal(dist.loadBinding().binding, b, 'no second load');
});

if (linux) {
  const b = binding();
  const status = new Int32Array(new SharedArrayBuffer(128 * 4));

  /**
   * A 4-page memory with a 2-page image at pages 4..5 (4 KiB pages), and
   * clean(): 'clean' when every page holds the image or zero (byte 3 of
   * each page checked), else the first page that does not.
   */
  const imagedMemory = (seed: number) => {
    const img = imageBytes(2, seed);
    const fd = b.createImage(img);
    const m = new WebAssembly.Memory({ initial: 4 });
    const len = 4 * 65536;
    b.mapImage(m, fd, 4 * PAGE, 2 * PAGE);
    const v = new Uint8Array(m.buffer);
    const clean = () => {
      for (let p = 0; p < len / PAGE; p++) {
        const want = p === 4 || p === 5 ? img[(p - 4) * PAGE + 3] : 0;
        if (v[p * PAGE + 3] !== want) return `page ${p}`;
      }
      return 'clean';
    };
    return { fd, m, len, v, clean };
  };

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
    const { fd, m, len, v, clean } = imagedMemory(9);
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

  test('resetInit takes one Int32Array over a SharedArrayBuffer, once per thread', () => {
    const m = new WebAssembly.Memory({ initial: 1 });
    assert.throws(() => b.resetBegin(m, 65536, -1, 0, 0, 0, 0), /resetInit\(\) was not called/);
    assert.throws(() => b.resetWait(0), /resetInit\(\) was not called/);
    assert.throws(() => b.resetInit(new Int32Array(16)), /SharedArrayBuffer/);
    assert.throws(() => b.resetInit(new Uint8Array(new SharedArrayBuffer(64)) as never), /Int32Array/);
    assert.throws(() => b.resetInit(new Int32Array(new SharedArrayBuffer(0))), /cells/);
    assert.throws(() => b.resetInit(undefined as never), /Int32Array/);
    b.resetInit(status);
    assert.throws(() => b.resetInit(new Int32Array(new SharedArrayBuffer(64))), /already called/);
  });

  test('resetBegin queues what resetRange does; resetWait returns when it is done', () => {
    const { fd, m, len, v, clean } = imagedMemory(11);
    const queued = (keep: number, cell = 3) => {
      assert.equal(b.resetBegin(m, len, fd, 4 * PAGE, 2 * PAGE, keep, cell), 0);
      assert.ok(Atomics.load(status, cell) === 1 || Atomics.load(status, cell) === 2);
      const r = b.resetWait(cell); // 2: done by the reset thread; 3: by resetWait, here
      assert.ok(r === 2 || r === 3, `resetWait returned ${r}`);
      assert.equal(Atomics.load(status, cell), r, 'the cell says done until we free it');
      Atomics.store(status, cell, 0);
    };
    for (const p of [0, 5, 9]) v[p * PAGE + 3] = 0xee;
    queued(16 * PAGE);
    assert.equal(clean(), 'clean');
    assert.equal(b.residentPages(m, 0, PAGE), 1, 'rewritten in place: still resident');
    for (let p = 0; p < 20; p++) v[p * PAGE + 3] = 0xee;
    queued(16 * PAGE);
    assert.equal(b.residentPages(m, 0, len), 0, 'over the budget: discarded');
    assert.equal(clean(), 'clean');
    v[3] = 1;
    queued(0);
    assert.equal(clean(), 'clean');
    // More jobs than the ring holds, one after another: indices wrap, references are dropped.
    for (let i = 0; i < 600; i++) {
      v[((i % 16) + 1) * PAGE] = 0xee;
      queued(16 * PAGE, i % 7);
      if (clean() !== 'clean') assert.fail(`job ${i}: ${clean()}`);
    }
    // The memory grew (or never had that length): -2, nothing queued, nothing touched.
    v[3] = 1;
    assert.equal(b.resetBegin(m, len + 65536, fd, 0, PAGE, 16 * PAGE, 3), -2);
    assert.equal(Atomics.load(status, 3), 0);
    assert.equal(v[3], 1);
    v[3] = 0;
    // Bad arguments throw and queue nothing.
    assert.throws(() => b.resetBegin(m, len, fd, 0, 0, 0, status.length), { name: 'RangeError', message: /outside the status array/ });
    assert.throws(() => b.resetBegin(m, len, fd, 0, 0, 0, -1), /cell must be a non-negative integer/);
    Atomics.store(status, 9, 1);
    assert.throws(() => b.resetBegin(m, len, fd, 0, 0, 0, 9), /cell is not free/);
    assert.equal(b.resetWait(9), 1, 'pending with nothing queued: returns instead of hanging');
    Atomics.store(status, 9, 0);
    assert.throws(() => b.resetBegin({} as WebAssembly.Memory, len, fd, 0, 0, 0, 3), TypeError);
    assert.throws(() => b.resetBegin(m, len, fd, 0, 3 * PAGE, 0, 3), /exceeds the image/);
    assert.throws(() => b.resetBegin(m, len, 99999, 0, 0, 0, 3), /not an open wasm-cow image/);
    assert.throws(() => b.resetWait(status.length), /outside the status array/);
    assert.equal(Atomics.load(status, 3), 0);
    b.closeImage(fd);
    assert.throws(() => b.resetBegin(m, len, fd, 4 * PAGE, 2 * PAGE, 0, 3), /not an open wasm-cow image/);
  });

  test('queued resets taken back by the JS thread or run by the reset thread: each runs once, every memory clean', () => {
    const memories = Array.from({ length: 64 }, () => new WebAssembly.Memory({ initial: 1 }));
    const views = memories.map((m) => new Uint8Array(m.buffer));
    for (let round = 0; round < 200; round++) {
      // Each memory gets pages written, then all resets are queued at once...
      memories.forEach((m, i) => {
        for (let p = 0; p < 1 + ((i + round) % 4); p++) views[i]![((i + p + round) % 16) * PAGE + 1] = 0xee;
        assert.equal(b.resetBegin(m, 65536, -1, 0, 0, 16 * PAGE, 64 + i), 0);
      });
      // ...and waited for in an order that differs from the queue's: the
      // JS thread does the ones the reset thread has not started yet.
      for (let k = 0; k < 64; k++) {
        const i = round % 2 ? 63 - k : (k * 37) % 64;
        const r = b.resetWait(64 + i);
        if (r !== 2 && r !== 3) assert.fail(`round ${round}, memory ${i}: resetWait returned ${r}`);
        Atomics.store(status, 64 + i, 0);
      }
      memories.forEach((_, i) => {
        for (let p = 0; p < 16; p++) if (views[i]![p * PAGE + 1] !== 0) assert.fail(`round ${round}, memory ${i}, page ${p}`);
      });
    }
  });

  test('a cell reused the moment its status says done: resetWait finds the new job, not the old', () => {
    const m = new WebAssembly.Memory({ initial: 1 });
    const v = new Uint8Array(m.buffer);
    const cell = 100;
    for (let i = 0; i < 20_000; i++) {
      v[(i % 16) * PAGE] = 1;
      assert.equal(b.resetBegin(m, 65536, -1, 0, 0, 16 * PAGE, cell), 0);
      if (i % 2) {
        // As the pool does: free the cell once its status is no longer pending...
        while (Atomics.load(status, cell) === 1);
        Atomics.store(status, cell, 0);
        // ...and queue again at once: the previous job's tag may still say running.
        v[((i + 1) % 16) * PAGE] = 1;
        assert.equal(b.resetBegin(m, 65536, -1, 0, 0, 16 * PAGE, cell), 0);
      }
      const r = b.resetWait(cell);
      if (r !== 2 && r !== 3) assert.fail(`iteration ${i}: resetWait returned ${r}`);
      Atomics.store(status, cell, 0);
      if (v[(i % 16) * PAGE] !== 0 || v[((i + 1) % 16) * PAGE] !== 0) assert.fail(`iteration ${i}: not reset`);
    }
  });

  test('the reset thread has a name and is one per thread', () => {
    const names = fs.readdirSync('/proc/self/task').map((t) => fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim());
    assert.equal(names.filter((n) => n === 'wasm-cow-reset').length, 1);
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

test('NativeBackend.classifyPages: one reused buffer, right for each call whatever the calls before (smaller, larger, past its first size)', { skip: !linux && 'the native backend is Linux-only' }, async () => {
  const { NativeBackend } = await import('../src/backend/native.js');
  const backend = new NativeBackend(binding(), 0, false);
  const page = backend.pageSize;
  const perWasmPage = 65536 / page;
  const withPages = (wasmPages: number, nonZero: number[]) => {
    const m = new WebAssembly.Memory({ initial: wasmPages });
    const view = new Uint8Array(m.buffer);
    for (const p of nonZero) view[p * page + 7] = 1;
    return m;
  };
  const marks = (m: WebAssembly.Memory, pages: number) => [...backend.classifyPages(m, 0, pages * page)!];
  const a = withPages(1, [1, 3]);
  const expectA = new Array(perWasmPage).fill(0);
  expectA[1] = expectA[3] = 1;
  assert.deepEqual(marks(a, perWasmPage), expectA);
  // Smaller, after: nothing of the call before shows.
  assert.deepEqual(marks(withPages(1, []), 2), [0, 0]);
  // Larger than any call before (the buffer grows), then the first again.
  const bigPages = 5 * perWasmPage;
  const big = withPages(5, [bigPages - 1]);
  const expectBig = new Array(bigPages).fill(0);
  expectBig[bigPages - 1] = 1;
  assert.deepEqual(marks(big, bigPages), expectBig);
  assert.deepEqual(marks(a, perWasmPage), expectA);
});
