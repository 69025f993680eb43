// sql.js through wasm-cow: many short-lived databases, each on its own
// Emscripten instance, instantiated from one prepared module.
//   node examples/sqljs.mjs
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Engine, emscriptenAdapter } from 'wasm-cow';

const require = createRequire(import.meta.url);
const wasm = readFileSync(require.resolve('sql.js/dist/sql-wasm.wasm'));
const glueFile = require.resolve('sql.js/dist/sql-wasm.js');
const glue = readFileSync(glueFile, 'utf8');

// sql.js caches its module in a module-level variable; evaluate the glue
// afresh for each independent instance.
function freshInitSqlJs() {
  const module = { exports: {} };
  new Function('module', 'exports', 'require', '__filename', '__dirname', glue)(module, module.exports, require, glueFile, dirname(glueFile));
  return module.exports;
}

const engine = new Engine();
const prepared = engine.prepare(wasm);
console.log('backend:', engine.backend, '| memory:', JSON.stringify(prepared.memories[0]));

for (let i = 0; i < 5; i++) {
  const adapter = emscriptenAdapter(prepared);
  const SQL = await freshInitSqlJs()({ instantiateWasm: adapter.instantiateWasm });
  const db = new SQL.Database();
  db.run('CREATE TABLE kv (k TEXT, v INTEGER)');
  db.run('INSERT INTO kv VALUES (?, ?), (?, ?)', ['a', i, 'b', i * 10]);
  console.log(`request ${i}:`, JSON.stringify(db.exec('SELECT k, v FROM kv ORDER BY k')[0].values));
  db.close();
  adapter.release(); // the memory is reset and pooled for the next request
}
console.log('stats:', engine.stats());
engine.close();
