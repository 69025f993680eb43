/**
 * The benchmark scenarios: synthetic modules of several data sizes and
 * layouts, and real modules from npm (devDependencies).
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildModule, stdFuncs, type DataSpec } from '../src/bench/builder.js';
import { stubImportsFactory, touchExportedMemory, type ImportsSource, type Touch } from '../src/bench/compare.js';

export interface Scenario {
  readonly name: string;
  readonly kind: 'synthetic' | 'real';
  /** Bytes of active data (what V8 copies per instance). */
  readonly dataBytes: number;
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Imports per instantiation: real modules get new stub memories each time, as their glue would make. */
  readonly imports: ImportsSource;
  readonly touch: Touch;
}

const MiB = 1024 * 1024;
const PAGE = 65536;

/**
 * Non-zero pseudo-random data (no zero pages to trim): xorshift32, a word at
 * a time, every byte's low bit set (a byte at a time took seconds for 256 MiB).
 */
function nonZero(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  const words = new Uint32Array(b.buffer, 0, n >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = (x | 0x01010101) >>> 0;
  }
  for (let i = words.length * 4; i < n; i++) b[i] = ((i * 131 + seed) & 0xfe) | 1;
  return b;
}

/** Writes one byte, into the data where there is data. */
const storeAt = (addr: number): Touch => (e) => (e['store8'] as (a: number, v: number) => void)(addr, 1);

export function synthetic(dataBytes: number): Scenario {
  const pages = Math.ceil(dataBytes / PAGE) + 2;
  const data: DataSpec[] = dataBytes ? [{ offset: PAGE, bytes: nonZero(dataBytes, 7) }] : [];
  return {
    name: `synthetic ${label(dataBytes)}`,
    kind: 'synthetic',
    dataBytes,
    bytes: buildModule({ memories: [{ min: pages, export: 'mem' }], funcs: stdFuncs, data }),
    imports: {},
    touch: storeAt(PAGE + 100),
  };
}

/** 4 KiB segments every 1 MiB over 512 MiB. */
export function sparse(): Scenario {
  const data: DataSpec[] = [];
  for (let off = 0; off < 512 * MiB; off += MiB) data.push({ offset: off, bytes: nonZero(4096, off / MiB + 1) });
  return {
    name: 'sparse: 512 x 4 KiB over 512 MiB',
    kind: 'synthetic',
    dataBytes: 512 * 4096,
    bytes: buildModule({ memories: [{ min: (512 * MiB) / PAGE + 1, export: 'mem' }], funcs: stdFuncs, data }),
    imports: {},
    touch: storeAt(100),
  };
}

/** 100,000 segments of 8 bytes. */
export function tinySegments(): Scenario {
  const data: DataSpec[] = [];
  for (let i = 0; i < 100_000; i++) data.push({ offset: i * 16, bytes: [1, 2, 3, 4, 5, 6, 7, (i & 0x7f) + 1] });
  return {
    name: '100,000 segments of 8 B',
    kind: 'synthetic',
    dataBytes: 800_000,
    bytes: buildModule({ memories: [{ min: 26, export: 'mem' }], funcs: stdFuncs, data }),
    imports: {},
    touch: storeAt(100),
  };
}

const REAL: Record<string, string> = {
  'sql.js': 'sql.js/dist/sql-wasm.wasm',
  'quickjs (jitl release-sync)': '@jitl/quickjs-wasmfile-release-sync/dist/emscripten-module.wasm',
  'vscode-oniguruma': 'vscode-oniguruma/release/onig.wasm',
  '@resvg/resvg-wasm': '@resvg/resvg-wasm/index_bg.wasm',
  'lightningcss-wasm': 'lightningcss-wasm/lightningcss_node.wasm',
  '@electric-sql/pglite': '@electric-sql/pglite/dist/pglite.wasm',
};

/** Real modules from node_modules, with stub imports; missing ones are skipped. */
export function realModules(): Scenario[] {
  // out/benchmarks/ -> the repository's node_modules (devDependencies).
  const root = fileURLToPath(new URL('../../node_modules/', import.meta.url));
  const out: Scenario[] = [];
  for (const [name, path] of Object.entries(REAL)) {
    const file = join(root, path);
    if (!existsSync(file)) continue;
    const bytes = new Uint8Array(readFileSync(file));
    out.push({
      name,
      kind: 'real',
      dataBytes: activeDataBytes(bytes),
      bytes,
      imports: stubImportsFactory(bytes),
      touch: touchExportedMemory,
    });
  }
  return out;
}

import { parseModule } from '../src/binary/reader.js';
function activeDataBytes(bytes: Uint8Array): number {
  return parseModule(bytes)
    .data.filter((d) => d.mode === 'active')
    .reduce((n, d) => n + (d.dataEnd - d.dataStart), 0);
}

export function label(bytes: number): string {
  if (bytes === 0) return '0 B';
  if (bytes >= MiB) return `${+(bytes / MiB).toFixed(1)} MiB`;
  return `${+(bytes / 1024).toFixed(1)} KiB`;
}
