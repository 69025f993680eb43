/**
 * Instance reuse on a real module: sql.js's raw wasm with stub imports (as
 * the benchmarks run it), driven through its own exports (names from the
 * sql.js glue: P __wasm_call_ctors, Ia malloc, Ha sqlite3_open,
 * T sqlite3_prepare_v2, U sqlite3_step, Z sqlite3_column_text,
 * X sqlite3_finalize; O is the memory). Each tenant opens a database,
 * creates a table, inserts rows and queries it; a tenant on a reused
 * instance must start in the state of a fresh native instance (memory,
 * globals, table) and get the same query results.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Engine } from '../src/index.js';
import { unexposedInstance } from '../src/lease.js';
import { stubImportsFactory } from '../src/bench/compare.js';
import { parseModule } from '../src/binary/reader.js';
import { rewriteModule } from '../src/binary/rewriter.js';
import { internalExports, readInternalState } from '../src/reuse/internal.js';
import { readModuleInfo } from '../src/reuse/module-info.js';
import { BACKENDS } from './helpers/env.js';

const require = createRequire(import.meta.url);
const bytes = new Uint8Array(readFileSync(require.resolve('sql.js/dist/sql-wasm.wasm')));
type Fn = (...args: number[]) => number;

/** The original module with the private exports: a native reference whose globals and table can be read. */
function reference(): WebAssembly.Module {
  const parsed = parseModule(bytes);
  const extra = internalExports(parsed, readModuleInfo(bytes, parsed)!, false);
  return new WebAssembly.Module(rewriteModule(bytes, parsed, { importMemories: false, convert: new Set(), extraExports: extra }).bytes);
}

function state(instance: WebAssembly.Instance): { memory: Buffer; globals: unknown[]; table: unknown[] } {
  const s = readInternalState(instance);
  const table = [...s.tables.values()][0]!;
  return {
    memory: Buffer.from(new Uint8Array((instance.exports['O'] as WebAssembly.Memory).buffer)),
    globals: [...s.globals.entries()].map(([i, g]) => [i, g.value]),
    table: Array.from({ length: table.length }, (_, i) => (table.get(i) as { name?: string } | null)?.name ?? null),
  };
}

/** Runs tenant t's queries on an instance through its raw exports; the rows read back. */
function work(instance: WebAssembly.Instance, t: number): string[] {
  const x = instance.exports as Record<string, Fn>;
  const mem = () => new Uint8Array((instance.exports['O'] as WebAssembly.Memory).buffer);
  const cstr = (s: string): number => {
    const b = new TextEncoder().encode(`${s}\0`);
    const p = x['Ia']!(b.length);
    mem().set(b, p);
    return p;
  };
  const read = (p: number): string => {
    const m = mem();
    let e = p;
    while (m[e] !== 0) e++;
    return new TextDecoder().decode(m.subarray(p, e));
  };
  const i32 = (p: number): number => new DataView(mem().buffer).getInt32(p, true);
  x['P']!();
  const pp = x['Ia']!(8);
  assert.equal(x['Ha']!(cstr(':memory:'), pp), 0, 'sqlite3_open');
  const db = i32(pp);
  const rows: string[] = [];
  const run = (sql: string): void => {
    assert.equal(x['T']!(db, cstr(sql), -1, pp, 0), 0, `prepare ${sql}`);
    const stmt = i32(pp);
    while (x['U']!(stmt) === 100) rows.push(read(x['Z']!(stmt, 0)));
    x['X']!(stmt);
  };
  run('CREATE TABLE t(name TEXT, score INTEGER)');
  for (let k = 0; k < 5 + t; k++) run(`INSERT INTO t VALUES ('n${k % 3}', ${k * 7 + t})`);
  run("SELECT name || ':' || SUM(score) FROM t GROUP BY name ORDER BY name");
  run('SELECT sqlite_version()');
  return rows;
}

for (const backend of BACKENDS) {
  test(`sql.js raw module: reused instances equal native, state and query results (${backend})`, () => {
    const engine = new Engine({ backend, backgroundReset: false });
    try {
      const prepared = engine.prepare(bytes, { reuse: true });
      assert.deepEqual(prepared.reuse, { enabled: true, reason: null, detail: null });
      const stubs = stubImportsFactory(bytes);
      const imports = stubs();
      const ref = reference();
      for (let t = 0; t < 4; t++) {
        const lease = prepared.instantiate(imports);
        const native = new WebAssembly.Instance(ref, imports);
        const raw = unexposedInstance(lease);
        assert.deepEqual(state(raw), state(native), `tenant ${t}: state at start`);
        const rows = work(raw, t);
        assert.deepEqual(rows, work(native, t), `tenant ${t}: query results`);
        assert.ok(rows.some((r) => r.startsWith('n0:')), rows.join(','));
        lease.release();
      }
      assert.equal(engine.stats().instancesReused, 3);
    } finally {
      engine.close();
    }
  });
}
