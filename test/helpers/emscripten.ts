/** Loaders for the Emscripten-built npm packages used in the end-to-end tests. */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL('../../../node_modules/', import.meta.url));

export const SQL_WASM = new Uint8Array(readFileSync(`${root}sql.js/dist/sql-wasm.wasm`));
export const QUICKJS_WASM = new Uint8Array(
  readFileSync(`${root}@jitl/quickjs-wasmfile-release-sync/dist/emscripten-module.wasm`),
);

export interface SqlJsStatic {
  Database: new () => {
    run(sql: string, params?: unknown[]): void;
    exec(sql: string): { columns: string[]; values: unknown[][] }[];
    close(): void;
  };
}
type InitSqlJs = (config?: Record<string, unknown>) => Promise<SqlJsStatic>;

const sqlGlueFile = `${root}sql.js/dist/sql-wasm.js`;
const sqlGlue = readFileSync(sqlGlueFile, 'utf8');

/**
 * A fresh `initSqlJs`: sql.js caches its module in a module-level variable,
 * so each call evaluates the glue anew to get a new Emscripten instance.
 */
export function freshInitSqlJs(): InitSqlJs {
  const module = { exports: {} as unknown };
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const factory = new Function('module', 'exports', 'require', '__filename', '__dirname', sqlGlue);
  factory(module, module.exports, createRequire(sqlGlueFile), sqlGlueFile, dirname(sqlGlueFile));
  return module.exports as InitSqlJs;
}

export { require };
