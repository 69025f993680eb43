/**
 * Go's own glue (esbuild-wasm's wasm_exec.js) set up as wasm_exec_node.js
 * does, with the program's stdout (fd 1) captured: for the tests and
 * benchmarks that run esbuild-wasm through it. Loading it defines
 * `globalThis.Go` (and `require`, `fs`, `path`, as the glue expects).
 */
import type { createRequire } from 'node:module';

export interface GoRuntime {
  argv: string[];
  env: Record<string, string>;
  exit: (code: number) => void;
  importObject: WebAssembly.Imports;
  run(instance: WebAssembly.Instance): Promise<void>;
}

export interface GoGlue {
  /** A new runtime for `esbuild <input> --minify`; `exit` is called with the exit code. */
  esbuild(input: string, exit: (code: number) => void): GoRuntime;
  /** What the programs wrote to stdout since the last call, as text (and forgets it). */
  takeOutput(): string;
}

/** Loads wasm_exec.js once (through `require`, resolved from the package root) with stdout captured. */
export function loadGoGlue(require: ReturnType<typeof createRequire>): GoGlue {
  const realFs = require('node:fs') as typeof import('node:fs');
  let out: Buffer[] = [];
  const fsShim = Object.create(realFs) as Record<string, unknown>;
  fsShim['writeSync'] = (fd: number, buf: Uint8Array, ...rest: unknown[]): number => {
    if (fd !== 1) return (realFs.writeSync as (...a: unknown[]) => number)(fd, buf, ...rest);
    out.push(Buffer.from(buf));
    return buf.length;
  };
  fsShim['write'] = (fd: number, buf: Uint8Array, offset: number, length: number, position: unknown, cb: (e: unknown, n?: number) => void): void => {
    if (fd !== 1) {
      (realFs.write as (...a: unknown[]) => void)(fd, buf, offset, length, position, cb);
      return;
    }
    out.push(Buffer.from(buf.subarray(offset, offset + length)));
    setImmediate(() => cb(null, length));
  };
  const g = globalThis as Record<string, unknown>;
  g['require'] = require;
  g['fs'] = fsShim;
  g['path'] = require('node:path');
  require('esbuild-wasm/wasm_exec.js');
  const Go = g['Go'] as new () => GoRuntime;
  const tmpdir = (require('node:os') as typeof import('node:os')).tmpdir();
  return {
    esbuild(input, exit) {
      const go = new Go();
      go.argv = ['esbuild', input, '--minify'];
      go.env = { TMPDIR: tmpdir };
      go.exit = exit;
      return go;
    },
    takeOutput() {
      const text = Buffer.concat(out).toString();
      out = [];
      return text;
    },
  };
}
