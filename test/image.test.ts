import test from 'node:test';
import assert from 'node:assert/strict';
import { parseModule } from '../src/binary/reader.js';
import { analyzeMemories } from '../src/image/analyze.js';
import { flattenImage } from '../src/image/flatten.js';
import { Engine } from '../src/index.js';
import { BACKENDS } from './helpers/env.js';
import { buildModule, stdFuncs, type DataSpec } from './helpers/wasm.js';

const PAGE = 4096;
const plan = (data: DataSpec[], min = 4, extra: Parameters<typeof buildModule>[0] = {}, sizeLimit = 1 << 30) => {
  const bytes = buildModule({ memories: [{ min }], data, ...extra });
  const parsed = parseModule(bytes);
  const plans = analyzeMemories(parsed, { sizeLimit, pageSize: PAGE, mapImported: true });
  return { bytes, plans };
};

test('overlapping segments: later bytes overwrite earlier ones', () => {
  const { bytes, plans } = plan([
    { offset: 100, bytes: [1, 1, 1, 1, 1] },
    { offset: 102, bytes: [2, 2] },
    { offset: 99, bytes: [3] },
  ]);
  const p = plans[0]!;
  assert.equal(p.excluded, null);
  const img = flattenImage(bytes, p.segments, PAGE);
  assert.equal(img.offset, 0);
  assert.equal(img.length, PAGE);
  assert.deepEqual([...img.bytes.subarray(99, 105)], [3, 1, 1, 2, 2, 1]);
});

test('offset and length are page multiples; zero pages at both ends are trimmed', () => {
  const zeros = new Uint8Array(3 * PAGE);
  const { bytes, plans } = plan([
    { offset: PAGE * 2 - 10, bytes: zeros }, // all zero, spans pages 1..4
    { offset: PAGE * 5 + 7, bytes: [9] },
    { offset: PAGE * 7 + 1, bytes: new Uint8Array(PAGE * 2) }, // trailing zeros
  ]);
  const img = flattenImage(bytes, plans[0]!.segments, PAGE);
  assert.equal(img.offset, PAGE * 5);
  assert.equal(img.length, PAGE);
  assert.equal(img.bytes.length, PAGE);
  assert.equal(img.bytes[7], 9);
});

test('an all-zero image has length 0; so does a memory without segments', () => {
  const { bytes, plans } = plan([{ offset: 1000, bytes: new Uint8Array(5000) }]);
  assert.deepEqual(
    { ...flattenImage(bytes, plans[0]!.segments, PAGE), bytes: undefined },
    { offset: 0, length: 0, bytes: undefined },
  );
  const none = plan([]);
  assert.equal(none.plans[0]!.excluded, null);
  assert.equal(flattenImage(none.bytes, none.plans[0]!.segments, PAGE).length, 0);
});

test('interior zero pages stay in the image', () => {
  const { bytes, plans } = plan([
    { offset: 0, bytes: [1] },
    { offset: PAGE * 3, bytes: [2] },
  ]);
  const img = flattenImage(bytes, plans[0]!.segments, PAGE);
  assert.equal(img.offset, 0);
  assert.equal(img.length, PAGE * 4);
  assert.equal(img.bytes[PAGE * 3], 2);
});

test('exclusion: an offset from a mutable, i64 or defined global is dynamic', () => {
  for (const g of [{ mutable: true }, { type: 0x7e }]) {
    const { plans } = plan([{ offset: 0, bytes: [1] }, { offset: { global: 0 }, bytes: [1] }], 1, {
      importGlobals: [{ module: 'env', name: 'g', ...g }],
    });
    assert.equal(plans[0]!.excluded?.code, 'dynamic-offset');
    assert.match(plans[0]!.excluded!.message, /segment 1/);
  }
  const defined = plan([{ offset: { global: 0 }, bytes: [1] }], 1, { globals: [{ type: 0x7f, init: [0x41, 0] }] });
  assert.equal(defined.plans[0]!.excluded?.code, 'dynamic-offset');
});

test('position-independent data: an imaged memory with a condition', () => {
  const { plans } = plan([{ offset: 0, bytes: [1] }, { offset: { global: 0, add: 8 }, bytes: [1] }], 1, {
    importGlobals: [{ module: 'env', name: '__memory_base' }],
  });
  assert.equal(plans[0]!.excluded, null);
  assert.equal(plans[0]!.condition, 'position-independent');
  assert.deepEqual(
    plans[0]!.segments.map((s) => [s.offset, s.global ?? null]),
    [
      [0, null],
      [8, 0],
    ],
  );
});

test('exclusion: a segment that may end beyond the initial size', () => {
  assert.equal(plan([{ offset: 65536 - 2, bytes: [1, 2, 3] }], 1).plans[0]!.excluded?.code, 'out-of-bounds');
  // Exactly at the end is fine; an empty segment just past the end traps natively.
  assert.equal(plan([{ offset: 65536 - 3, bytes: [1, 2, 3] }], 1).plans[0]!.excluded, null);
  assert.equal(plan([{ offset: 65537, bytes: [] }], 1).plans[0]!.excluded?.code, 'out-of-bounds');
  assert.equal(plan([{ offset: 65536, bytes: [] }], 1).plans[0]!.excluded, null);
  // Offsets are unsigned: i32.const -1 is 4 GiB - 1.
  assert.equal(plan([{ offset: -1, bytes: [1] }], 1).plans[0]!.excluded?.code, 'out-of-bounds');
});

test('exclusion: image over the size limit', () => {
  const { plans } = plan([{ offset: 0, bytes: [1] }, { offset: 3 * PAGE, bytes: [1] }], 1, {}, 3 * PAGE);
  assert.equal(plans[0]!.excluded?.code, 'too-large');
  assert.equal(plan([{ offset: 0, bytes: [1] }, { offset: 2 * PAGE, bytes: [1] }], 1, {}, 3 * PAGE).plans[0]!.excluded, null);
});

test('exclusion: shared memory; imported memory', () => {
  const shared = parseModule(buildModule({ memories: [{ min: 1, max: 1, shared: true }] }));
  const sp = analyzeMemories(shared, { sizeLimit: 1 << 30, pageSize: PAGE, mapImported: true });
  assert.equal(sp[0]!.excluded?.code, 'shared');
  const imported = parseModule(buildModule({ importMemory: { module: 'env', name: 'm', min: 1 } }));
  const ip = analyzeMemories(imported, { sizeLimit: 1 << 30, pageSize: PAGE, mapImported: true });
  assert.equal(ip[0]!.imported, true);
  assert.equal(ip[0]!.excluded?.code, 'imported', 'no data for it');
  const withData = parseModule(buildModule({ importMemory: { module: 'env', name: 'm', min: 1 }, data: [{ offset: 70000, bytes: [1] }] }));
  const wp = analyzeMemories(withData, { sizeLimit: 1 << 30, pageSize: PAGE, mapImported: true });
  assert.equal(wp[0]!.excluded, null);
  assert.equal(wp[0]!.condition, 'imported-untouched', 'bounds are checked against the memory given');
  const copyBackend = analyzeMemories(withData, { sizeLimit: 1 << 30, pageSize: PAGE, mapImported: false });
  assert.equal(copyBackend[0]!.excluded?.code, 'imported');
});

test('exclusion: an i64 offset on a 32-bit memory is left to V8 (which rejects it)', () => {
  const { plans } = plan([{ offset: { expr: [0x42, 0x00] }, bytes: [1] }], 1);
  assert.equal(plans[0]!.excluded?.code, 'invalid-offset');
});

for (const backend of BACKENDS) {
  test(`prepared.memories reports image and exclusions (${backend})`, () => {
    const engine = new Engine({ backend });
    const imaged = engine.prepare(
      buildModule({ memories: [{ min: 2, max: 3 }], funcs: stdFuncs, data: [{ offset: 70000, bytes: [7] }] }),
    );
    assert.deepEqual(imaged.memories, [
      {
        index: 0,
        imported: false,
        initialPages: 2,
        maximumPages: 3,
        image: { offset: 69632, length: 4096 },
        excluded: null,
        condition: null,
      },
    ]);
    const pic = engine.prepare(
      buildModule({
        importGlobals: [{ module: 'env', name: 'g' }],
        memories: [{ min: 1 }],
        data: [{ offset: { global: 0 }, bytes: [1] }],
      }),
    );
    assert.equal(pic.memories[0]!.image, null, 'resolved at instantiation');
    assert.equal(pic.memories[0]!.excluded, null);
    assert.equal(pic.memories[0]!.condition, 'position-independent');
    pic.instantiate({ env: { g: 8192 } }).release();
    assert.equal(pic.memories[0]!.image, null, 'a base seen for the first time: V8 writes the data');
    pic.instantiate({ env: { g: 8192 } }).release();
    assert.deepEqual(pic.memories[0]!.image, { offset: 8192, length: 4096 });
    const limited = new Engine({ backend, imageSizeLimit: 4096 });
    const big = limited.prepare(buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: new Uint8Array(4097).fill(1) }] }));
    assert.equal(big.memories[0]!.excluded?.code, 'too-large');
    engine.close();
    limited.close();
  });

  test(`images are built lazily, at first instantiation (${backend})`, () => {
    const engine = new Engine({ backend });
    const p = engine.prepare(buildModule({ memories: [{ min: 1 }], data: [{ offset: 0, bytes: [1] }] }));
    assert.equal(engine.stats().imagesBuilt, 0);
    p.instantiate().release();
    assert.equal(engine.stats().imagesBuilt, 1);
    p.instantiate().release();
    assert.equal(engine.stats().imagesBuilt, 1);
    engine.close();
  });
}
