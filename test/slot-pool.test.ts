import test from 'node:test';
import assert from 'node:assert/strict';
import { CopyBackend } from '../src/backend/copy.js';
import { NativeBackend } from '../src/backend/native.js';
import type { Backend } from '../src/backend/backend.js';
import { MemoryPool } from '../src/pool.js';
import { Slot } from '../src/slot.js';
import { newCounters } from '../src/stats.js';
import { bufferOf } from '../src/memory.js';
import { BACKENDS, binding } from './helpers/env.js';

const PAGE = 4096;

function makeBackend(kind: string): Backend {
  // Inline resets: these tests check states right after release().
  return kind === 'native' ? new NativeBackend(binding(), 0, false) : new CopyBackend();
}

function pageOf(value: number, pages = 1): Uint8Array {
  return new Uint8Array(pages * PAGE).fill(value);
}

for (const kind of BACKENDS) {
  const backend = makeBackend(kind);
  const imageA = () => backend.createImage({ offset: PAGE, length: 2 * PAGE, bytes: pageOf(0xaa, 2) }).image;
  const imageB = () => backend.createImage({ offset: 3 * PAGE, length: PAGE, bytes: pageOf(0xbb) }).image;
  const view = (s: Slot) => new Uint8Array(s.memory.buffer);

  test(`slot without an image: zero, reset to zero (${kind})`, () => {
    const slot = new Slot(backend, { initialPages: 1, maximumPages: 2 });
    assert.equal(slot.acquire(null), true, 'same (no) image: fast path');
    view(slot)[100] = 1;
    assert.equal(slot.reset(), true);
    assert.equal(slot.state, 'clean');
    assert.equal(view(slot)[100], 0);
    assert.equal(slot.acquire(null), true);
  });

  test(`slot switching between two images and back (${kind})`, () => {
    const a = imageA();
    const b = imageB();
    const slot = new Slot(backend, { initialPages: 1, maximumPages: null });
    assert.equal(slot.acquire(a), false, 'first image: mapped');
    let v = view(slot);
    assert.deepEqual([v[PAGE - 1], v[PAGE], v[3 * PAGE - 1], v[3 * PAGE]], [0, 0xaa, 0xaa, 0]);
    v[PAGE] = 1;
    v[5 * PAGE] = 1;
    slot.reset();
    assert.equal(slot.acquire(b), false, 'another image: transition');
    v = view(slot);
    assert.deepEqual([v[PAGE], v[2 * PAGE], v[3 * PAGE], v[4 * PAGE - 1], v[4 * PAGE], v[5 * PAGE]], [0, 0, 0xbb, 0xbb, 0, 0]);
    slot.reset();
    assert.equal(slot.acquire(a), false);
    v = view(slot);
    assert.deepEqual([v[PAGE], v[3 * PAGE], v[5 * PAGE]], [0xaa, 0, 0]);
    v[PAGE] = 7;
    slot.reset();
    assert.equal(slot.acquire(a), true, 'same image again: fast path');
    assert.equal(view(slot)[PAGE], 0xaa, 'the previous tenant’s write is gone');
    slot.reset();
    assert.equal(slot.acquire(null), false, 'image to none: transition');
    assert.equal(view(slot)[PAGE], 0);
    slot.reset();
    a.dispose();
    b.dispose();
  });

  test(`reset detaches every buffer lent (${kind})`, () => {
    const slot = new Slot(backend, { initialPages: 1, maximumPages: null });
    slot.acquire(null);
    const buf = slot.lendBuffer();
    slot.reset();
    assert.equal(buf.byteLength, 0);
    assert.equal(bufferOf(slot.memory).byteLength, 65536);
  });

  test(`only a lent buffer is detached; the memory has no own properties (${kind})`, () => {
    const slot = new Slot(backend, { initialPages: 1, maximumPages: null });
    slot.acquire(null);
    const unseen = bufferOf(slot.memory);
    assert.equal(slot.needsDetach, false);
    slot.reset();
    assert.equal(unseen.byteLength, 65536, 'nothing lent: no grow(0) needed');
    slot.acquire(null);
    const lent = slot.lendBuffer();
    assert.equal(slot.needsDetach, true);
    slot.reset();
    assert.equal(lent.byteLength, 0, 'lent: detached');
    assert.equal(slot.needsDetach, false, 'for the next lease, nothing is lent yet');
    const native = new WebAssembly.Memory({ initial: 1 });
    assert.deepEqual(Reflect.ownKeys(slot.memory), Reflect.ownKeys(native));
    assert.deepEqual(Reflect.ownKeys(slot.memory), []);
  });

  test(`a memory no one was lent keeps its buffer (no detach cost) (${kind})`, () => {
    const slot = new Slot(backend, { initialPages: 1, maximumPages: null });
    slot.acquire(null);
    const buf = bufferOf(slot.memory);
    new Uint8Array(buf)[5] = 5;
    slot.reset();
    assert.equal(buf.byteLength, 65536);
    assert.equal(new Uint8Array(buf)[5], 0, 'reset all the same');
  });

  test(`an exposed slot is retired at release, its pages left as they were (${kind})`, () => {
    const counters = newCounters();
    const pool = new MemoryPool(backend, 10, counters);
    const s = pool.acquire({ initialPages: 1, maximumPages: null, image: null });
    new Uint8Array(bufferOf(s.memory))[7] = 7;
    s.exposed = true;
    pool.release(s);
    assert.equal(s.state, 'retired');
    assert.equal(new Uint8Array(bufferOf(s.memory))[7], 7, 'whatever still holds it keeps its own data');
    assert.equal(counters.retiredMemories, 1);
    assert.equal(counters.retiredExposed, 1);
    assert.equal(pool.idle, 0);
    const next = pool.acquire({ initialPages: 1, maximumPages: null, image: null });
    assert.notEqual(next, s);
    assert.equal(next.exposed, false);
    pool.release(next);
    assert.equal(pool.idle, 1);
  });

  test(`a memory that grew is retired, never reused (${kind})`, () => {
    const counters = newCounters();
    const pool = new MemoryPool(backend, 10, counters);
    const s1 = pool.acquire({ initialPages: 1, maximumPages: 4, image: null });
    s1.memory.grow(1);
    pool.release(s1);
    assert.equal(s1.state, 'retired');
    assert.equal(pool.idle, 0);
    assert.equal(counters.retiredMemories, 1);
    const s2 = pool.acquire({ initialPages: 1, maximumPages: 4, image: null });
    assert.notEqual(s2.memory, s1.memory);
    assert.equal(s2.memory.buffer.byteLength, 65536);
    pool.release(s2);
  });

  test(`pool affinity: same image first, then least recently used of the size (${kind})`, () => {
    const a = imageA();
    const b = imageB();
    const counters = newCounters();
    const pool = new MemoryPool(backend, 10, counters);
    const size = { initialPages: 1, maximumPages: null };
    const sa = pool.acquire({ ...size, image: a });
    const sb = pool.acquire({ ...size, image: b });
    const other = pool.acquire({ initialPages: 2, maximumPages: null, image: null });
    pool.release(sa);
    pool.release(sb);
    pool.release(other);
    assert.equal(pool.idle, 3);
    // Image b is asked for: its own slot comes back, untouched (fast path).
    const again = pool.acquire({ ...size, image: b });
    assert.equal(again, sb);
    assert.equal(counters.fastPathHits, 1);
    // Image a's slot is now the only idle one of size 1: a new image takes it.
    const c = backend.createImage({ offset: 0, length: PAGE, bytes: pageOf(0xcc) }).image;
    const sc = pool.acquire({ ...size, image: c });
    assert.equal(sc, sa);
    assert.equal(new Uint8Array(sc.memory.buffer)[0], 0xcc);
    assert.equal(new Uint8Array(sc.memory.buffer)[PAGE], 0, 'image a was removed');
    // Size 1 has no idle slot left: a new memory, not the size-2 one.
    const fresh = pool.acquire({ ...size, image: null });
    assert.notEqual(fresh, other);
    assert.equal(fresh.memory.buffer.byteLength, 65536);
    assert.equal(counters.memoriesCreated, 4);
    for (const s of [again, sc, fresh]) pool.release(s);
    pool.clear();
    assert.equal(pool.idle, 0);
    for (const i of [a, b, c]) i.dispose();
  });

  test(`pool idle bound: least recently used idle memories are retired (${kind})`, () => {
    const counters = newCounters();
    const pool = new MemoryPool(backend, 2, counters);
    const slots = [1, 2, 3, 4].map(() => pool.acquire({ initialPages: 1, maximumPages: null, image: null }));
    for (const s of slots) pool.release(s);
    assert.equal(pool.idle, 2);
    assert.deepEqual(
      slots.map((s) => s.state),
      ['retired', 'retired', 'clean', 'clean'],
    );
    assert.equal(counters.retiredMemories, 2);
  });

  test(`disposing an image clears the idle slots that hold it (${kind})`, () => {
    const a = imageA();
    const pool = new MemoryPool(backend, 4, newCounters());
    const s = pool.acquire({ initialPages: 1, maximumPages: null, image: a });
    pool.release(s);
    a.dispose();
    pool.dropImage(a);
    assert.equal(s.image, null);
    assert.equal(new Uint8Array(s.memory.buffer)[PAGE], 0);
    // Still pooled, as a zero memory of its size.
    assert.equal(pool.acquire({ initialPages: 1, maximumPages: null, image: null }), s);
  });
}

// Background resets (native backend): the reset runs on the addon's reset
// thread; the slot waits in 'resetting' until the pool settles it.
if (BACKENDS.includes('native')) {
  const backend = new NativeBackend(binding(), 16 * PAGE, true);
  const image = () => backend.createImage({ offset: PAGE, length: 2 * PAGE, bytes: pageOf(0xaa, 2) }).image;
  const request = (img: ReturnType<typeof image> | null) => ({ initialPages: 1, maximumPages: 2, image: img });
  const expectClean = (slot: Slot, img: boolean) => {
    const v = new Uint8Array(bufferOf(slot.memory));
    for (let p = 0; p < 16; p++) {
      const want = img && (p === 1 || p === 2) ? 0xaa : 0;
      if (v[p * PAGE + 9] !== want) assert.fail(`page ${p} holds ${v[p * PAGE + 9]}, not ${want}`);
    }
  };

  test('background reset: release leaves the slot resetting, buffers detached; settle makes it clean', () => {
    assert.equal(backend.backgroundReset, true);
    const img = image();
    const slot = new Slot(backend, request(img));
    slot.acquire(img);
    const buf = slot.lendBuffer();
    for (let p = 0; p < 16; p++) new Uint8Array(buf)[p * PAGE + 9] = 0xee;
    assert.equal(slot.release(true), 'resetting');
    assert.equal(buf.byteLength, 0, 'detached at release, before the reset ends');
    assert.throws(() => slot.acquire(img), /acquire of a resetting slot/);
    assert.equal(slot.settle(true), true);
    assert.equal(slot.state, 'clean');
    expectClean(slot, true);
    // Inline when asked: straight to clean.
    slot.acquire(img);
    new Uint8Array(bufferOf(slot.memory))[9] = 1;
    assert.equal(slot.release(false), 'clean');
    expectClean(slot, true);
    img.dispose();
  });

  test('background reset: a memory grown during the reset is retired when settled', () => {
    const slot = new Slot(backend, request(null));
    slot.acquire(null);
    const memory = slot.memory;
    new Uint8Array(memory.buffer)[9] = 1;
    assert.equal(slot.release(true), 'resetting');
    memory.grow(1); // a stale holder of the memory
    slot.settle(true);
    assert.equal(slot.state, 'retired');
  });

  test('background reset: retiring a resetting slot waits for the reset first', () => {
    let waited = 0;
    const watched = new NativeBackend(binding(), 16 * PAGE, true);
    const waitReset = watched.waitReset.bind(watched);
    watched.waitReset = (ticket) => (waited++, waitReset(ticket));
    const slot = new Slot(watched, request(null));
    slot.acquire(null);
    new Uint8Array(bufferOf(slot.memory)).fill(1, 0, 8 * PAGE);
    assert.equal(slot.release(true), 'resetting');
    slot.retire();
    assert.equal(waited, 1, 'the queued reset was waited for before the pages were given back');
    assert.equal(slot.state, 'retired');
  });

  test('background reset: a module in a loop alternates between two memories, every tenant clean', () => {
    const img = image();
    const counters = newCounters();
    const pool = new MemoryPool(backend, 8, counters);
    const seen = new Set<Slot>();
    for (let i = 0; i < 2000; i++) {
      const slot = pool.acquire(request(img));
      seen.add(slot);
      expectClean(slot, true);
      const v = new Uint8Array(bufferOf(slot.memory));
      for (let p = 0; p < 1 + (i % 5); p++) v[((i + p) % 16) * PAGE + 9] = 0xee;
      pool.release(slot);
    }
    pool.drain();
    assert.ok(seen.size >= 2 && seen.size <= 3, `memories used: ${seen.size}`);
    assert.equal(counters.memoriesCreated, seen.size);
    assert.equal(counters.resets, 2000);
    // At least the first window of 256 was queued; after a window in which
    // this thread did most queued resets itself, the pool resets inline for a while.
    assert.ok(counters.backgroundResets >= 256, `background: ${counters.backgroundResets}`);
    assert.equal(pool.idle, seen.size);
    pool.clear();
    img.dispose();
  });

  test('a memory whose buffer was lent is retired at release, the buffer detached (native code may hold its address)', () => {
    const img = image();
    const counters = newCounters();
    const pool = new MemoryPool(backend, 8, counters);
    const s = pool.acquire(request(img));
    const lent = s.lendBuffer();
    new Uint8Array(lent)[PAGE + 9] = 1; // a buffer was handed out
    pool.release(s);
    assert.equal(s.state, 'retired', 'never reset, never reused');
    assert.equal(lent.byteLength, 0, 'detached all the same');
    assert.equal(counters.retiredExposed, 1);
    assert.equal(counters.backgroundResets + counters.resets, 0);
    const next = pool.acquire(request(img));
    assert.notEqual(next, s, 'a new memory serves the next tenant');
    pool.release(next);
    pool.clear();
    img.dispose();
  });

  test('background reset: with two memories of an image still resetting, acquire waits for the older', () => {
    const img = image();
    const counters = newCounters();
    const pool = new MemoryPool(backend, 8, counters);
    const big = { ...request(img), initialPages: 256, maximumPages: null };
    const [a, b] = [pool.acquire(big), pool.acquire(big)];
    // 16 MiB dirty each: resets of a millisecond or so, both still running at the next acquire.
    for (const s of [a, b]) new Uint8Array(bufferOf(s.memory)).fill(0xee);
    pool.release(a);
    pool.release(b);
    const c = pool.acquire(big);
    assert.ok(c === a || c === b, 'one of the two, not a third memory');
    assert.equal(counters.memoriesCreated, 2);
    expectClean(c, true);
    pool.release(c);
    pool.clear();
    img.dispose();
  });

  test('background reset: dropping an image or clearing the pool waits for queued resets', () => {
    const img = image();
    const counters = newCounters();
    const pool = new MemoryPool(backend, 8, counters);
    const s = pool.acquire(request(img));
    new Uint8Array(bufferOf(s.memory)).fill(0xee, 0, 16 * PAGE);
    pool.release(s);
    pool.dropImage(img);
    img.dispose();
    assert.equal(s.state, 'clean');
    assert.equal(s.image, null);
    expectClean(s, false);
    const t = pool.acquire(request(null));
    assert.equal(t, s, 'pooled on as a zero memory');
    new Uint8Array(bufferOf(t.memory))[9] = 1;
    pool.release(t);
    pool.clear();
    assert.equal(t.state, 'retired');
    assert.equal(pool.idle, 0);
    assert.equal(counters.resets, 2);
  });
}

test('background reset: when this thread ends up doing most queued resets itself, the pool resets inline for a while', () => {
  // A backend whose background thread never starts anything: every wait is
  // done by the caller ('done-here'), every poll says pending.
  class StalledBackend extends CopyBackend {
    readonly backgroundReset = true;
    queued = 0;
    inline = 0;
    beginReset(): number {
      return this.queued++;
    }
    pollReset(): 'pending' {
      return 'pending';
    }
    waitReset(): 'done-here' {
      return 'done-here';
    }
    override reset(...args: Parameters<CopyBackend['reset']>): ReturnType<CopyBackend['reset']> {
      this.inline++;
      return super.reset(...args);
    }
  }
  const backend = new StalledBackend();
  const counters = newCounters();
  const pool = new MemoryPool(backend, 8, counters);
  const request = { initialPages: 1, maximumPages: null, image: null };
  for (let i = 0; i < 256 + 1024 + 10; i++) pool.release(pool.acquire(request));
  assert.equal(backend.queued, 256 + 10, 'a window queued, then 1024 inline, then queued again');
  assert.equal(backend.inline, 1024);
  pool.drain();
  assert.equal(counters.resets, 256 + 1024 + 10);
});
