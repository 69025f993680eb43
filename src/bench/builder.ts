/**
 * A tiny WebAssembly binary builder: enough to make modules with memories,
 * data segments (active, passive, at constant or global offsets), globals,
 * imports and a few standard functions. Used by the tests, the benchmarks
 * and `wasm-cow demo` (which generates its example modules with it).
 */
import { concat, sleb as slebOf } from '../binary/writer.js';

export const I32 = 0x7f;
export const I64 = 0x7e;

export function uleb(value: number | bigint): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return out;
}

export function sleb(value: number | bigint): number[] {
  return slebOf(BigInt(value));
}

export function str(s: string): number[] {
  const b = new TextEncoder().encode(s);
  return [...uleb(b.length), ...b];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/** out.push(...items) without the argument-count limit. */
function append(out: number[], items: ArrayLike<number>): void {
  for (let i = 0; i < items.length; i++) out.push(items[i]!);
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

export interface Limits {
  min: number;
  max?: number;
  shared?: boolean;
}

function limits(l: Limits): number[] {
  const flags = (l.max !== undefined ? 1 : 0) | (l.shared ? 2 : 0);
  return [flags, ...uleb(l.min), ...(l.max !== undefined ? uleb(l.max) : [])];
}

export type Offset = number | { global: number; add?: number } | { expr: number[] };

export interface DataSpec {
  offset?: Offset;
  /** Memory index (default 0). */
  memory?: number;
  passive?: boolean;
  bytes: Uint8Array | number[];
}

export interface FuncSpec {
  export?: string;
  params?: number[];
  results?: number[];
  locals?: number[];
  body: number[];
}

export interface ModuleSpec {
  /** Imported functions: module, name, params, results. */
  importFuncs?: { module: string; name: string; params?: number[]; results?: number[] }[];
  importMemory?: { module: string; name: string } & Limits;
  importGlobals?: { module: string; name: string; type?: number; mutable?: boolean }[];
  /** Imported tables (after the memory import): element type byte (default 0x70 funcref) and limits. */
  importTables?: ({ module: string; name: string; element?: number } & Limits)[];
  memories?: (Limits & { export?: string })[];
  globals?: { type: number; mutable?: boolean; init: number[]; export?: string }[];
  funcs?: FuncSpec[];
  data?: DataSpec[];
  dataCount?: boolean;
  /** Index of the start function (in the function index space). */
  start?: number;
  /** Extra raw sections appended at the end (e.g. custom sections). */
  custom?: { name: string; bytes: number[] }[];
}

export function offsetExpr(o: Offset): number[] {
  if (typeof o === 'number') return [0x41, ...sleb(o | 0), 0x0b];
  if ('expr' in o) return [...o.expr, 0x0b];
  const base = [0x23, ...uleb(o.global)];
  return o.add ? [...base, 0x41, ...sleb(o.add), 0x6a, 0x0b] : [...base, 0x0b];
}

export function buildModule(spec: ModuleSpec): Uint8Array<ArrayBuffer> {
  const types: number[][] = [];
  const typeIndex = (params: number[] = [], results: number[] = []): number => {
    const t = [0x60, ...uleb(params.length), ...params, ...uleb(results.length), ...results];
    const key = t.join(',');
    const i = types.findIndex((x) => x.join(',') === key);
    if (i >= 0) return i;
    types.push(t);
    return types.length - 1;
  };

  const imports: number[][] = [];
  for (const f of spec.importFuncs ?? []) {
    imports.push([...str(f.module), ...str(f.name), 0x00, ...uleb(typeIndex(f.params, f.results))]);
  }
  if (spec.importMemory) {
    const m = spec.importMemory;
    imports.push([...str(m.module), ...str(m.name), 0x02, ...limits(m)]);
  }
  for (const g of spec.importGlobals ?? []) {
    imports.push([...str(g.module), ...str(g.name), 0x03, g.type ?? I32, g.mutable ? 1 : 0]);
  }
  for (const t of spec.importTables ?? []) {
    imports.push([...str(t.module), ...str(t.name), 0x01, t.element ?? 0x70, ...limits(t)]);
  }
  const funcTypes = (spec.funcs ?? []).map((f) => typeIndex(f.params, f.results));
  const nImportedFuncs = spec.importFuncs?.length ?? 0;

  const exports: number[][] = [];
  (spec.funcs ?? []).forEach((f, i) => {
    if (f.export) exports.push([...str(f.export), 0x00, ...uleb(nImportedFuncs + i)]);
  });
  const nImportedMems = spec.importMemory ? 1 : 0;
  (spec.memories ?? []).forEach((m, i) => {
    if (m.export) exports.push([...str(m.export), 0x02, ...uleb(nImportedMems + i)]);
  });
  const nImportedGlobals = spec.importGlobals?.length ?? 0;
  (spec.globals ?? []).forEach((g, i) => {
    if (g.export) exports.push([...str(g.export), 0x03, ...uleb(nImportedGlobals + i)]);
  });

  const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  append(out, section(1, vec(types)));
  if (imports.length) append(out, section(2, vec(imports)));
  if (funcTypes.length) append(out, section(3, vec(funcTypes.map((t) => uleb(t)))));
  if (spec.memories?.length) append(out, section(5, vec(spec.memories.map(limits))));
  if (spec.globals?.length) {
    append(out, section(6, vec(spec.globals.map((g) => [g.type, g.mutable ? 1 : 0, ...g.init, 0x0b]))));
  }
  if (exports.length) append(out, section(7, vec(exports)));
  if (spec.start !== undefined) append(out, section(8, uleb(spec.start)));
  const data = spec.data ?? [];
  if (spec.dataCount) append(out, section(12, uleb(data.length)));
  if (spec.funcs?.length) {
    const bodies = spec.funcs.map((f) => {
      const locals = f.locals?.length ? [1, ...uleb(f.locals.length), f.locals[0]!] : [0];
      const body = [...locals, ...f.body, 0x0b];
      return [...uleb(body.length), ...body];
    });
    append(out, section(10, vec(bodies)));
  }
  // The data section is assembled from typed-array chunks: segments can be
  // hundreds of MiB, too large for a number[].
  let dataSection: Uint8Array[] = [];
  if (data.length) {
    const body: Uint8Array[] = [new Uint8Array(uleb(data.length))];
    for (const d of data) {
      const head = d.passive
        ? [0x01]
        : d.memory
          ? [0x02, ...uleb(d.memory), ...offsetExpr(d.offset ?? 0)]
          : [0x00, ...offsetExpr(d.offset ?? 0)];
      body.push(new Uint8Array([...head, ...uleb(d.bytes.length)]));
      body.push(d.bytes instanceof Uint8Array ? d.bytes : new Uint8Array(d.bytes));
    }
    const size = body.reduce((n, c) => n + c.length, 0);
    dataSection = [new Uint8Array([11, ...uleb(size)]), ...body];
  }
  const custom: number[] = [];
  for (const c of spec.custom ?? []) append(custom, section(0, [...str(c.name), ...c.bytes]));
  return concat([out, ...dataSection, custom]);
}

/** Standard exported functions over memory 0. */
export const stdFuncs: FuncSpec[] = [
  // load8(addr) -> i32
  { export: 'load8', params: [I32], results: [I32], body: [0x20, 0, 0x2d, 0x00, 0x00] },
  // store8(addr, value)
  { export: 'store8', params: [I32, I32], body: [0x20, 0, 0x20, 1, 0x3a, 0x00, 0x00] },
  // size() -> pages
  { export: 'size', results: [I32], body: [0x3f, 0x00] },
  // grow(pages) -> old size or -1
  { export: 'grow', params: [I32], results: [I32], body: [0x20, 0, 0x40, 0x00] },
  // load32(addr) -> i32
  { export: 'load32', params: [I32], results: [I32], body: [0x20, 0, 0x28, 0x02, 0x00] },
];

/** init(segment, dest, src, len) as memory.init of a fixed segment index. */
export function initFunc(segment: number, name = `init${segment}`): FuncSpec {
  return {
    export: name,
    params: [I32, I32, I32],
    body: [0x20, 0, 0x20, 1, 0x20, 2, 0xfc, 0x08, ...uleb(segment), 0x00],
  };
}

export function dropFunc(segment: number, name = `drop${segment}`): FuncSpec {
  return { export: name, body: [0xfc, 0x09, ...uleb(segment)] };
}

/** Deterministic pseudo-random bytes. */
export function pseudoRandomBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** A seeded PRNG (xorshift32) returning floats in [0, 1). */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}
