#!/usr/bin/env node
// Builds the native addon with node-gyp during `npm install`.
//
// The addon is optional: on a platform other than Linux, or when the build
// fails, the library still works on the portable copy backend, so this
// script never fails the install. It prints why the addon is missing, and
// `new Engine().backend` reports 'copy'. Set WASM_COW_REQUIRE_NATIVE=1 to
// make a failed build fail the install instead (CI does).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const required = process.env.WASM_COW_REQUIRE_NATIVE === '1';

function finish(ok, why) {
  if (ok) return;
  const msg = `wasm-cow: native addon not built (${why}); the portable 'copy' backend will be used.`;
  if (required) {
    console.error(`${msg}\nWASM_COW_REQUIRE_NATIVE=1 is set, so the install fails.`);
    process.exit(1);
  }
  console.warn(msg);
}

if (process.env.WASM_COW_SKIP_NATIVE === '1') {
  finish(false, 'WASM_COW_SKIP_NATIVE=1');
} else if (process.platform !== 'linux') {
  finish(false, `platform ${process.platform} is not Linux`);
} else {
  // npm puts its bundled node-gyp on PATH for lifecycle scripts; outside npm,
  // fall back to npm's copy through `npm exec`.
  let r = spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit' });
  if (r.error && r.error.code === 'ENOENT') {
    r = spawnSync('npm', ['exec', '--yes', '--', 'node-gyp', 'rebuild'], { stdio: 'inherit' });
  }
  finish(r.status === 0, r.error ? r.error.message : `node-gyp exited with ${r.status}`);
}

// The register hook's V8 code cache, made by this Node with the addon just
// built (an installed package's dist/ came bundled, without a cache). In a
// clone, dist/ is built after this (prepare), which makes the cache then.
if (existsSync(new URL('../dist/register/bundle.cjs', import.meta.url)) && existsSync(new URL('./register-cache.mjs', import.meta.url))) {
  spawnSync(process.execPath, [fileURLToPath(new URL('./register-cache.mjs', import.meta.url))], { stdio: 'inherit' });
}
