/**
 * The data section reader's fast loop (readPlainData: `00 41 n.. 0b len..`)
 * and its per-entry path (anything else) together give each segment's
 * fields exactly, whatever the mix and the LEB encodings (padded, up to 5
 * bytes), and the rewriter's data section from the columns keeps and empties
 * exactly the entries asked. Truncated sections throw WasmFormatError.
 * Images and the cost model's page count made from the columns equal those
 * made from the segment objects.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { parseModule } from '../src/binary/reader.js';
import { rewriteModule } from '../src/binary/rewriter.js';
import { DataTable, IndexSet, OFFSET_I32 } from '../src/binary/data-table.js';
import { WasmFormatError } from '../src/index.js';
import { analyzeMemories, coveredPages } from '../src/image/analyze.js';
import { flattenImage, flattenPlan } from '../src/image/flatten.js';
import { pagesCovered } from '../src/policy.js';
import { buildModule } from './helpers/wasm.js';

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/** A deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Unsigned LEB128 of v, padded to `width` bytes (at least the minimum). */
function ulebPadded(v: number, width: number): number[] {
  const out: number[] = [];
  let x = v;
  do {
    out.push(x % 128);
    x = Math.floor(x / 128);
  } while (x !== 0);
  while (out.length < width) out.push(0);
  for (let i = 0; i < out.length - 1; i++) out[i]! |= 0x80;
  return out;
}

/** Signed LEB128 (32-bit) of v, padded to `width` bytes. */
function slebPadded(v: number, width: number): number[] {
  const out: number[] = [];
  let x = v | 0;
  for (;;) {
    const b = x & 0x7f;
    x >>= 7;
    if ((x === 0 && (b & 0x40) === 0) || (x === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      break;
    }
    out.push(b);
  }
  const pad = v < 0 ? 0x7f : 0x00;
  while (out.length < width) out.push(pad);
  for (let i = 0; i < out.length - 1; i++) out[i]! |= 0x80;
  return out;
}

type Expected = { mode: 'active' | 'passive'; memory: number; offset: { type: string; constant: bigint; global: number | null; dynamic: boolean } | null; len: number; entry: number[] };

function randomEntry(r: () => number): Expected {
  const len = r() < 0.1 ? Math.floor(r() * 300) : Math.floor(r() * 6);
  const lenBytes = ulebPadded(len, 1 + Math.floor(r() * 5));
  const data = Array.from({ length: len }, () => Math.floor(r() * 256));
  const pick = r();
  if (pick < 0.1) return { mode: 'passive', memory: 0, offset: null, len, entry: [0x01, ...lenBytes, ...data] };
  const v = r() < 0.3 ? Math.floor(r() * 2 ** 32) - 2 ** 31 : Math.floor(r() * 70000);
  const minWidth = slebPadded(v, 1).length;
  const width = minWidth + Math.floor(r() * (6 - minWidth));
  let expr = [0x41, ...slebPadded(v, width), 0x0b];
  let offset = { type: 'i32', constant: BigInt(v >>> 0), global: null as number | null, dynamic: false };
  if (r() < 0.1) {
    // global.get 0; i32.const v; i32.add
    expr = [0x23, 0x00, 0x41, ...slebPadded(v, width), 0x6a, 0x0b];
    offset = { type: 'other', constant: BigInt(v >>> 0), global: 0, dynamic: false };
  }
  const flags = pick < 0.25 ? ulebPadded(2, 1 + Math.floor(r() * 2)) : ulebPadded(0, 1 + Math.floor(r() * 2));
  const memory = flags[0] === 0x02 || flags[0] === 0x82 ? Math.floor(r() * 3) : 0;
  const head = flags[0]! & 0x02 ? [...flags, ...ulebPadded(memory, 1)] : flags;
  return { mode: 'active', memory, offset, len, entry: [...head, ...expr, ...lenBytes, ...data] };
}

function dataModule(entries: readonly Expected[], count = entries.length): Uint8Array {
  const content = [...ulebPadded(count, 1), ...entries.flatMap((e) => e.entry)];
  return new Uint8Array([...HEADER, 0x0b, ...ulebPadded(content.length, 1), ...content]);
}

test('data segments of every encoding, mixed, read field for field', () => {
  const r = rng(7);
  for (let round = 0; round < 300; round++) {
    const entries = Array.from({ length: Math.floor(r() * 40) }, () => randomEntry(r));
    const bytes = dataModule(entries);
    const parsed = parseModule(bytes);
    assert.equal(parsed.dataTable.length, entries.length);
    const base = bytes.length - entries.reduce((n, e) => n + e.entry.length, 0);
    let at = base;
    entries.forEach((e, i) => {
      const got = parsed.data[i]!;
      assert.deepEqual(
        got,
        { index: i, mode: e.mode, memory: e.memory, offset: e.offset, dataStart: at + e.entry.length - e.len, dataEnd: at + e.entry.length, start: at, end: at + e.entry.length },
        `round ${round}, entry ${i}: ${e.entry.slice(0, 12).map((b) => b.toString(16)).join(' ')}`,
      );
      at += e.entry.length;
    });

    // The rewriter's data section from the columns: the converted entries empty and passive, the others verbatim.
    const convert = new IndexSet(entries.length);
    entries.forEach((e, i) => {
      if (e.mode === 'active' && r() < 0.5) convert.add(i);
    });
    const out = rewriteModule(bytes, parsed, { importMemories: false, convert }).bytes;
    if (convert.size === 0) assert.deepEqual(out, bytes);
    else {
      const content = [...ulebPadded(entries.length, 1), ...entries.flatMap((e, i) => (convert.has(i) ? [0x01, 0x00] : e.entry))];
      assert.deepEqual([...out], [...HEADER, 0x0b, ...ulebPadded(content.length, 1), ...content]);
    }
  }
});

test('a data section cut anywhere, or with more entries counted than it holds, throws WasmFormatError', () => {
  const r = rng(11);
  for (let round = 0; round < 40; round++) {
    const entries = Array.from({ length: 1 + Math.floor(r() * 6) }, () => randomEntry(r));
    const whole = [...ulebPadded(entries.length, 1), ...entries.flatMap((e) => e.entry)];
    for (let cut = 1; cut < whole.length; cut++) {
      const content = whole.slice(0, cut);
      const bytes = new Uint8Array([...HEADER, 0x0b, ...ulebPadded(content.length, 1), ...content]);
      // A cut between entries leaves a valid section of fewer entries only if the count says so: here it never does.
      assert.throws(() => parseModule(bytes), WasmFormatError, `round ${round}, cut at ${cut}`);
    }
    assert.throws(() => parseModule(dataModule(entries, entries.length + 1)), WasmFormatError);
  }
});

test('DataTable grows past its first capacity; IndexSet counts each index once', () => {
  const t = new DataTable(1);
  for (let i = 0; i < 5; i++) assert.equal(t.push(i === 3, i, i === 3 ? 0 : OFFSET_I32, 100 * i, 10 * i, 10 * i + 2, 10 * i + 2 + i), i);
  assert.equal(t.length, 5);
  assert.ok(t.capacity >= 5);
  assert.deepEqual(t.segment(4), { index: 4, mode: 'active', memory: 4, offset: { type: 'i32', constant: 400n, global: null, dynamic: false }, dataStart: 42, dataEnd: 46, start: 40, end: 46 });
  assert.deepEqual(t.segment(3), { index: 3, mode: 'passive', memory: 3, offset: null, dataStart: 32, dataEnd: 35, start: 30, end: 35 });
  const s = new IndexSet(4);
  s.add(2);
  s.addAll([2, 3, 0, 3]);
  assert.equal(s.size, 3);
  assert.deepEqual([0, 1, 2, 3].map((i) => s.has(i)), [true, false, true, true]);
  assert.throws(() => s.add(4), RangeError);
});

test('images and the cost model from the columns equal those from the segment objects', () => {
  const r = rng(23);
  const PAGE = 4096;
  for (let round = 0; round < 200; round++) {
    const memories = 1 + Math.floor(r() * 2);
    const data = Array.from({ length: Math.floor(r() * 30) }, () => {
      const len = r() < 0.2 ? 0 : Math.floor(r() * 9000);
      const at = Math.floor(r() * 3 * 65536 - len);
      const offset = Math.max(0, at);
      const bytes = Array.from({ length: len }, () => (r() < 0.3 ? 0 : 1 + Math.floor(r() * 255)));
      // Some offsets through the general evaluator (i32.const 0; i32.const n; i32.add).
      const expr = r() < 0.2 ? { expr: [0x41, 0x00, 0x41, ...slebPadded(offset, 5), 0x6a] } : offset;
      return { offset: expr, bytes, memory: Math.floor(r() * memories), passive: r() < 0.05 };
    });
    const bytes = buildModule({ memories: Array.from({ length: memories }, () => ({ min: 4 })), data });
    const parsed = parseModule(bytes);
    const plans = analyzeMemories(parsed, { sizeLimit: 1 << 30, pageSize: PAGE, mapImported: true });
    const fixed = plans.filter((p) => p.excluded === null && p.condition === null);
    assert.equal(fixed.length, memories, `round ${round}: every memory imaged`);
    for (const p of fixed) {
      const a = flattenPlan(bytes, p, PAGE);
      const b = flattenImage(bytes, p.segments, PAGE);
      assert.deepEqual([a.offset, a.length, [...a.bytes]], [b.offset, b.length, [...b.bytes]], `round ${round}, memory ${p.index}`);
    }
    const ranges = fixed.flatMap((p) => p.segments.map((s) => ({ offset: s.offset, length: s.dataEnd - s.dataStart })));
    assert.equal(coveredPages(fixed, PAGE), pagesCovered(ranges, PAGE), `round ${round}`);
  }
});
