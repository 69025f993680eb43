/**
 * A module for the instance-reuse tests: an imported function and global,
 * a memory with data (active and passive), mutable globals of four types
 * (one funcref), two tables (one mutated by code, one a template), a start
 * function that reads memory, calls the import and changes a global and a
 * table, and exports that change every part of that state, grow, trap.
 */
import { parseModule } from '../../src/binary/reader.js';
import { rewriteModule } from '../../src/binary/rewriter.js';
import { internalExports, readInternalState } from '../../src/reuse/internal.js';
import { readModuleInfo } from '../../src/reuse/module-info.js';
import { I32, I64, pseudoRandomBytes, rng, sleb, uleb } from './wasm.js';
import { buildRaw, F64, FUNCREF } from './raw-wasm.js';

const i32c = (v: number): number[] => [0x41, ...sleb(v)];
const lg = (i: number): number[] => [0x20, ...uleb(i)];

export const T = { v: 0, i_i: 1, ii_v: 2, v_i: 3, l_v: 4, d_v: 5 } as const;

/** The module, with data chosen by `seed`. Function indices: import f is 0; exports are listed in EXPORTS. */
export function reuseModule(seed: number): Uint8Array<ArrayBuffer> {
  const r = rng(seed);
  const data: number[][] = [];
  for (let k = 0; k < 3; k++) {
    const off = Math.floor(r() * 60000) + 16;
    const bytes = [...pseudoRandomBytes(1 + Math.floor(r() * 3000), seed * 7 + k)];
    data.push([0x00, ...i32c(off), 0x0b, ...uleb(bytes.length), ...bytes]);
  }
  data.push([0x01, ...uleb(8), 9, 8, 7, 6, 5, 4, 3, 2]); // passive, read by minit
  const funcs = [
    // 1 start: mem[0] = f(mem[0]); g1 += 7; table0[1] = ref.func 7
    { type: T.v, body: [...i32c(0), ...i32c(0), 0x2d, 0, 0, 0x10, 0, 0x3a, 0, 0, 0x23, 1, ...i32c(7), 0x6a, 0x24, 1, ...i32c(1), 0xd2, 7, 0x26, 0] },
    { type: T.ii_v, body: [...lg(0), ...lg(1), 0x3a, 0, 0] }, // 2 store(a, v)
    { type: T.i_i, body: [...lg(0), 0x2d, 0, 0] }, // 3 load(a)
    { type: T.i_i, body: [...lg(0), 0x24, 1, ...i32c(0)] }, // 4 setg32(v)
    { type: T.v_i, body: i32c(101) }, // 5 one
    { type: T.v_i, body: i32c(202) }, // 6 two
    { type: T.v_i, body: i32c(303) }, // 7 three
    { type: T.l_v, body: [...lg(0), 0x24, 2] }, // 8 setg64(v)
    { type: T.d_v, body: [...lg(0), 0x24, 3] }, // 9 setgf(v)
    { type: T.ii_v, body: [...lg(0), ...lg(1), 0x25, 1, 0x26, 0] }, // 10 tset(i, j): table0[i] = table1[j]
    { type: T.i_i, body: [0xd0, FUNCREF, ...lg(0), 0xfc, 15, 0] }, // 11 tgrow(n)
    { type: T.i_i, body: [...lg(0), 0x40, 0] }, // 12 mgrow(n)
    { type: T.v, body: [0x00] }, // 13 trap
    { type: T.i_i, body: [...lg(0), 0x11, T.v_i, 0] }, // 14 callt(i)
    { type: T.i_i, body: [...lg(0), 0x25, 1, 0x24, 4, ...i32c(0)] }, // 15 setfr(j): g4 = table1[j]
    { type: T.i_i, body: [...lg(0), 0x10, 0] }, // 16 callf(x)
    { type: T.ii_v, body: [...lg(0), 0xd2, 7, ...lg(1), 0xfc, 17, 0] }, // 17 tfill(i, n)
    { type: T.i_i, body: [...lg(0), ...i32c(0), ...i32c(8), 0xfc, 8, 3, 0, ...i32c(0)] }, // 18 minit(dest)
  ];
  const names = ['store', 'load', 'setg32', 'one', 'two', 'three', 'setg64', 'setgf', 'tset', 'tgrow', 'mgrow', 'trap', 'callt', 'setfr', 'callf', 'tfill', 'minit'];
  return buildRaw({
    types: [
      { params: [], results: [] },
      { params: [I32], results: [I32] },
      { params: [I32, I32], results: [] },
      { params: [], results: [I32] },
      { params: [I64], results: [] },
      { params: [F64], results: [] },
    ],
    imports: [
      { module: 'env', name: 'f', desc: [0x00, T.i_i] },
      { module: 'env', name: 'k', desc: [0x03, I32, 0] },
    ],
    funcs,
    tables: [
      [FUNCREF, 0x01, 4, 8],
      [FUNCREF, 0x00, 3],
    ],
    memories: [[0x01, 1, 3]],
    globals: [
      { type: [I32], mutable: true, init: [0x23, 0] }, // 1 = k
      { type: [I64], mutable: true, init: [0x42, ...sleb(BigInt(Math.floor(r() * 1e9)) * 1000n)] }, // 2
      { type: [F64], mutable: true, init: [0x44, ...new Uint8Array(new Float64Array([r() * 100]).buffer)] }, // 3
      { type: [FUNCREF], mutable: true, init: [0xd2, 6] }, // 4
      { type: [I32], mutable: false, init: i32c(9) }, // 5
      { type: [I32], mutable: true, init: i32c(-3) }, // 6: never set by code
    ],
    exports: [
      ...names.map((name, i) => ({ name, kind: 0, index: i + 2 })),
      { name: 'mem', kind: 2, index: 0 },
      { name: 'tab', kind: 1, index: 0 },
      { name: 'g6', kind: 3, index: 6 },
    ],
    start: 1,
    elems: [
      [0x00, ...i32c(0), 0x0b, ...uleb(2), 5, 6], // table 0: [one, two, null, null]
      [0x02, 1, ...i32c(0), 0x0b, 0x00, ...uleb(3), 5, 6, 7], // table 1: [one, two, three]
    ],
    dataCount: data.length,
    data,
  });
}

/** The module with the engine's private exports and its start section kept: a native reference whose state can be read. */
export function referenceModule(bytes: Uint8Array): WebAssembly.Module {
  const parsed = parseModule(bytes);
  const info = readModuleInfo(bytes, parsed)!;
  return new WebAssembly.Module(rewriteModule(bytes, parsed, { importMemories: false, convert: new Set(), extraExports: internalExports(parsed, info, false) }).bytes);
}

const describe = (v: unknown): unknown => (typeof v === 'function' ? `func ${v.name}` : v);

/** Everything an instance holds that reuse must restore, comparable with deepEqual. */
export function stateOf(instance: WebAssembly.Instance): { memory: Buffer; globals: unknown[]; tables: unknown[][] } {
  const s = readInternalState(instance);
  const mem = instance.exports['mem'] as WebAssembly.Memory;
  return {
    memory: Buffer.from(new Uint8Array(mem.buffer)),
    globals: [...s.globals.entries()].map(([i, g]) => [i, describe(g.value)]),
    tables: [...s.tables.entries()].map(([i, t]) => [i, ...Array.from({ length: t.length }, (_, k) => describe(t.get(k)))]),
  };
}
