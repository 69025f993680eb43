/**
 * Real Emscripten dynamic linking (web-tree-sitter and the tree-sitter
 * JavaScript grammar from npm), natively and through the engine:
 *
 *  - the main module, tree-sitter.wasm, imports its memory, places its data
 *    at `__memory_base`, and has a start function that zeroes its .bss
 *    (memory.fill at __memory_base + constants): it goes through the
 *    Emscripten adapter;
 *  - the grammar is a side module: web-tree-sitter's loader calloc()s room
 *    for its data in the shared memory (zero-filled, so the pages are
 *    present), and instantiates it with Proxy imports (`env`, `GOT.mem`,
 *    `GOT.func`). The loader calls WebAssembly.instantiate; here that call is
 *    routed to the engine, as an integration would.
 *
 * The parse trees must equal native ones, and both modules must get their
 * images (no fallback counted).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Engine, emscriptenAdapter, type Lease } from '../src/index.js';

const root = fileURLToPath(new URL('../../node_modules/', import.meta.url));
const MAIN = new Uint8Array(readFileSync(`${root}web-tree-sitter/web-tree-sitter.wasm`));
const GRAMMAR = new Uint8Array(readFileSync(`${root}tree-sitter-javascript/tree-sitter-javascript.wasm`));
const SOURCES = [
  'function f(a, b) { return a + b * 2; }\nconst x = [1, 2, 3].map((y) => f(y, y));\n',
  'class A extends B { #p = 1; static { this.q = `t${1}`; } async *g() { yield* await h?.(); } }\n',
  'let { a, ...rest } = obj; label: for (const k of xs) if (k) continue label; else break;\n',
];

interface TreeSitter {
  Parser: { init(options?: object): Promise<void>; new (): { setLanguage(l: unknown): void; parse(s: string): { rootNode: { toString(): string } } } };
  Language: { load(bytes: Uint8Array): Promise<unknown> };
}

/** A fresh copy of web-tree-sitter (its Emscripten module is per import). */
async function freshTreeSitter(tag: string): Promise<TreeSitter> {
  return (await import(`${root}web-tree-sitter/web-tree-sitter.js?${tag}`)) as TreeSitter;
}

async function parseAll(ts: TreeSitter): Promise<string[]> {
  const language = await ts.Language.load(GRAMMAR);
  const parser = new ts.Parser();
  parser.setLanguage(language);
  return SOURCES.map((s) => parser.parse(s).rootNode.toString());
}

test('web-tree-sitter and a grammar side module through the engine: imaged, parse trees equal native', async () => {
  const native = await parseAll(await (async () => {
    const ts = await freshTreeSitter('native');
    await ts.Parser.init();
    return ts;
  })());
  assert.match(native[0]!, /^\(program \(function_declaration/);

  // nativeWhenFaster: false: the main module's imported data is small enough that the
  // engine would otherwise leave it to V8; this test is about imaging it exactly.
  const engine = new Engine({ backend: 'native', nativeWhenFaster: false });
  const main = engine.prepare(MAIN);
  const grammar = engine.prepare(GRAMMAR);
  const leases: Lease[] = [];
  const real = WebAssembly.instantiate;
  try {
    for (let run = 0; run < 3; run++) {
      const ts = await freshTreeSitter(`engine-${run}`);
      const adapter = emscriptenAdapter(main);
      await ts.Parser.init({ instantiateWasm: adapter.instantiateWasm });
      const mappedBefore = engine.stats().bytesMapped;
      // The dynamic loader instantiates the side module with WebAssembly.instantiate(bytes, imports).
      WebAssembly.instantiate = (async (bytes: unknown, imports?: WebAssembly.Imports) => {
        if (bytes instanceof Uint8Array && Buffer.compare(bytes, GRAMMAR) === 0) {
          const lease = grammar.instantiate(imports);
          leases.push(lease);
          return { module: grammar.module, instance: lease.instance };
        }
        return real(bytes as BufferSource, imports);
      }) as typeof WebAssembly.instantiate;
      const got = await parseAll(ts);
      WebAssembly.instantiate = real;
      assert.deepEqual(got, native, `run ${run}`);
      const g = grammar.memories[0]!;
      assert.ok(g.image && g.image.length > 0, 'the grammar’s image was mapped into the calloc-ed room');
      assert.ok(engine.stats().bytesMapped - mappedBefore >= g.image.length - 2 * 4096, 'all but its edge pages');
      assert.ok(main.memories[0]!.image, 'the main module’s image too (its start function only zeroes .bss)');
      if (adapter.lease) leases.push(adapter.lease);
    }
  } finally {
    WebAssembly.instantiate = real;
  }
  assert.deepEqual(engine.stats().fallbacks, {});
  for (const l of leases) l.release();
  engine.close();
});
