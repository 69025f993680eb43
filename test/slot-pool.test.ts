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
  return kind === 'native' ? new NativeBackend(binding()) : new CopyBackend();
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

  test(`reset detaches every buffer handed out (${kind})`, () => {
    const slot = new Slot(backend, { initialPages: 1, maximumPages: null });
    slot.acquire(null);
    const buf = slot.memory.buffer;
    slot.reset();
    assert.equal(buf.byteLength, 0);
    assert.equal(slot.memory.buffer.byteLength, 65536);
  });

  test(`only a buffer JS has read is detached (${kind})`, () => {
    const slot = new Slot(backend, { initialPages: 1, maximumPages: null });
    const genuine = () => bufferOf(slot.memory);
    slot.acquire(null, true);
    const unseen = genuine();
    slot.reset();
    assert.equal(unseen.byteLength, 65536, 'nobody read memory.buffer: no grow(0) needed');
    slot.acquire(null, true);
    const seen = slot.memory.buffer;
    slot.reset();
    assert.equal(seen.byteLength, 0, 'read through the property: detached');
    assert.equal(Object.getOwnPropertyDescriptor(slot.memory, 'buffer')?.configurable, false);
  });

  test(`a memory no one could see keeps its buffer (no detach cost) (${kind})`, () => {
    const slot = new Slot(backend, { initialPages: 1, maximumPages: null });
    slot.acquire(null, false);
    const buf = slot.memory.buffer;
    new Uint8Array(buf)[5] = 5;
    slot.reset();
    assert.equal(buf.byteLength, 65536);
    assert.equal(new Uint8Array(buf)[5], 0, 'reset all the same');
  });

  test(`a memory that grew is retired, never reused (${kind})`, () => {
    const counters = newCounters();
    const pool = new MemoryPool(backend, 10, counters);
    const s1 = pool.acquire({ initialPages: 1, maximumPages: 4, image: null, exported: true });
    s1.memory.grow(1);
    pool.release(s1);
    assert.equal(s1.state, 'retired');
    assert.equal(pool.idle, 0);
    assert.equal(counters.retiredMemories, 1);
    const s2 = pool.acquire({ initialPages: 1, maximumPages: 4, image: null, exported: true });
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
    const sa = pool.acquire({ ...size, image: a, exported: true });
    const sb = pool.acquire({ ...size, image: b, exported: true });
    const other = pool.acquire({ initialPages: 2, maximumPages: null, image: null, exported: true });
    pool.release(sa);
    pool.release(sb);
    pool.release(other);
    assert.equal(pool.idle, 3);
    // Image b is asked for: its own slot comes back, untouched (fast path).
    const again = pool.acquire({ ...size, image: b, exported: true });
    assert.equal(again, sb);
    assert.equal(counters.fastPathHits, 1);
    // Image a's slot is now the only idle one of size 1: a new image takes it.
    const c = backend.createImage({ offset: 0, length: PAGE, bytes: pageOf(0xcc) }).image;
    const sc = pool.acquire({ ...size, image: c, exported: true });
    assert.equal(sc, sa);
    assert.equal(new Uint8Array(sc.memory.buffer)[0], 0xcc);
    assert.equal(new Uint8Array(sc.memory.buffer)[PAGE], 0, 'image a was removed');
    // Size 1 has no idle slot left: a new memory, not the size-2 one.
    const fresh = pool.acquire({ ...size, image: null, exported: true });
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
    const slots = [1, 2, 3, 4].map(() => pool.acquire({ initialPages: 1, maximumPages: null, image: null, exported: true }));
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
    const s = pool.acquire({ initialPages: 1, maximumPages: null, image: a, exported: true });
    pool.release(s);
    a.dispose();
    pool.dropImage(a);
    assert.equal(s.image, null);
    assert.equal(new Uint8Array(s.memory.buffer)[PAGE], 0);
    // Still pooled, as a zero memory of its size.
    assert.equal(pool.acquire({ initialPages: 1, maximumPages: null, image: null, exported: true }), s);
  });
}
