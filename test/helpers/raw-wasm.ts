/**
 * A raw module builder for tests that need sections the spec builder
 * (src/bench/builder.ts) does not make: tables, element segments, globals
 * of any type, tags, arbitrary function bodies.
 */
import { str, uleb } from './wasm.js';

export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;
export const FUNCREF = 0x70;
export const EXTERNREF = 0x6f;

export function vec(items: readonly number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

export function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

export interface RawFunc {
  type: number;
  locals?: [number, number][];
  body: number[]; // without the final end
}

export interface RawModule {
  types?: { params: number[]; results: number[] }[];
  imports?: { module: string; name: string; desc: number[] }[];
  funcs?: RawFunc[];
  tables?: number[][]; // table type bytes (elemtype + limits), or with 0x40 0x00 prefix
  memories?: number[][]; // limits
  tags?: number[]; // type indices
  globals?: { type: number[]; mutable: boolean; init: number[] }[]; // init without end
  exports?: { name: string; kind: number; index: number }[];
  start?: number;
  elems?: number[][]; // raw element segment entries
  dataCount?: number;
  data?: number[][]; // raw data segment entries
}

export function buildRaw(m: RawModule): Uint8Array<ArrayBuffer> {
  const out: number[] = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0];
  if (m.types) out.push(...section(1, vec(m.types.map((t) => [0x60, ...uleb(t.params.length), ...t.params, ...uleb(t.results.length), ...t.results]))));
  if (m.imports) out.push(...section(2, vec(m.imports.map((i) => [...str(i.module), ...str(i.name), ...i.desc]))));
  if (m.funcs) out.push(...section(3, vec(m.funcs.map((f) => uleb(f.type)))));
  if (m.tables) out.push(...section(4, vec(m.tables)));
  if (m.memories) out.push(...section(5, vec(m.memories)));
  if (m.tags) out.push(...section(13, vec(m.tags.map((t) => [0, ...uleb(t)]))));
  if (m.globals) out.push(...section(6, vec(m.globals.map((g) => [...g.type, g.mutable ? 1 : 0, ...g.init, 0x0b]))));
  if (m.exports) out.push(...section(7, vec(m.exports.map((e) => [...str(e.name), e.kind, ...uleb(e.index)]))));
  if (m.start !== undefined) out.push(...section(8, uleb(m.start)));
  if (m.elems) out.push(...section(9, vec(m.elems)));
  if (m.dataCount !== undefined) out.push(...section(12, uleb(m.dataCount)));
  if (m.funcs) {
    out.push(
      ...section(
        10,
        vec(
          m.funcs.map((f) => {
            const locals = f.locals ?? [];
            const body = [...uleb(locals.length), ...locals.flatMap(([n, t]) => [...uleb(n), t]), ...f.body, 0x0b];
            return [...uleb(body.length), ...body];
          }),
        ),
      ),
    );
  }
  if (m.data) out.push(...section(11, vec(m.data)));
  return new Uint8Array(out);
}
