#!/usr/bin/env node
// Bundles the register hook (dist/register/index.js and the modules it
// imports, as tsc built them) into one CommonJS file,
// dist/register/bundle.cjs, and replaces the two entries of
// wasm-cow/register by loaders of it: dist/register/index.js (the "import"
// condition) and dist/register/index.cjs (the "require" condition:
// `node --require wasm-cow/register app.cjs`).
//
// `node --import wasm-cow/register` loads the entry and what it imports
// before the program starts: 7 small ES modules unbundled, about 7 ms of CPU
// (resolving, reading, compiling and linking each), against about 2 ms for
// one file of the same code. The bundle holds the same code: esbuild only
// joins the modules (no minifying, no downleveling); `./load.js` (the
// library, loaded at first preparation) and `node:` modules stay imports.
// The addon is found from the bundle as from dist/native/ (both are two
// directories below the package root).
//
// The bundle is CommonJS so that programs that are CommonJS themselves can
// load it without the ESM loader: Node's `--import` of any ES module costs a CommonJS
// program's cold start 4-10 ms (the ESM loader starts for it), `--require`
// of a CommonJS file nothing of the kind. Its one ESM-only construct,
// import.meta.url (where binding.ts looks for the addon, and where the
// library, dist/register/load.js, is required from), becomes the file URL
// of bundle.cjs, which sits beside index.js. The library stays ESM, loaded
// with require() when first needed. Both entries
// install through one global (Symbol.for('wasm-cow.register')): whichever
// loads second finds the first's registration and installs nothing.
//
// Both entries are small loaders (scripts/register-loader.mjs) of the one
// CommonJS bundle, dist/register/bundle.cjs: they compile it with vm.Script
// and a V8 code cache, dist/register/bundle.cjs.v8cache (with its check
// file, bundle.cjs.v8cache.check), which
// scripts/register-cache.mjs makes after bundling (and again at npm install)
// with this machine's Node, after running the hook's first-instantiation
// paths, so that V8 neither compiles the bundle's top level nor, at the
// program's first instantiation, the hook's functions. The cache is paired
// with its exact source (a header and a copy of the source, compared byte
// for byte before V8 sees it); missing, foreign, stale or rejected, it is
// not used and the bundle compiles as it would without it. The ES module
// entry is index.js: it loads the same bundle (Node's require cache holds
// it once for both entries) and re-exports its names.
//
// esbuild comes from esbuild-wasm, a devDependency: without it (an install
// without devDependencies) the ESM entry stays unbundled, which works the
// same, a few milliseconds slower to load, and index.cjs is one line that
// require()s it (Node 20.19+ loads ES modules with require()).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cjsEntry, esmEntry } from './register-loader.mjs';

const entry = fileURLToPath(new URL('../dist/register/index.js', import.meta.url));
const cjs = fileURLToPath(new URL('../dist/register/index.cjs', import.meta.url));
const bundle = fileURLToPath(new URL('../dist/register/bundle.cjs', import.meta.url));
const require = createRequire(import.meta.url);

const CJS_BANNER = '// wasm-cow/register (the hook, for both entries), bundled from the modules tsc built (scripts/bundle-register.mjs)';
const LOADER = "// wasm-cow/register for import: loads bundle.cjs";

const source = readFileSync(entry, 'utf8');
const tscBuilt = !source.startsWith(LOADER);

let esbuild;
try {
  esbuild = require('esbuild-wasm');
} catch {
  console.warn('wasm-cow: esbuild-wasm not installed; dist/register/index.js stays unbundled (loads a few ms slower)');
  if (tscBuilt) {
    // The entries tsc built load no bundle: an old one (and its cache) would only mislead.
    rmSync(bundle, { force: true });
    rmSync(`${bundle}.v8cache`, { force: true });
    rmSync(`${bundle}.v8cache.check`, { force: true });
  }
  writeFileSync(
    cjs,
    `'use strict';\n// wasm-cow/register for require(): esbuild-wasm was not installed to bundle it (scripts/bundle-register.mjs),\n` +
      `// so this loads the ES module entry beside it (Node 20.19+ loads ES modules with require()).\n` +
      `module.exports = require('./index.js');\n`,
  );
  process.exit(0);
}

if (tscBuilt) {
  // tsc rebuilt the entry: bundle it (CommonJS, for both entries), then
  // replace it by its loader.
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    write: false,
    outfile: bundle,
    external: ['./load.js'],
    // import.meta.url made when first read (pathToFileURL costs about 0.1 ms
    // cold; only the library's loading reads it), import.meta.dirname is
    // __dirname.
    define: { 'import.meta.url': '__wasmCow.url', 'import.meta.dirname': '__dirname' },
    // 'use strict' first: after the const below, esbuild's own would be no directive (sloppy mode).
    banner: {
      js:
        `'use strict';\n${CJS_BANNER}\n` +
        `const __wasmCow = { get url() { const url = require('node:url').pathToFileURL(__filename).href; Object.defineProperty(this, 'url', { value: url }); return url; } };`,
    },
    metafile: true,
    logLevel: 'warning',
  });
  const text = result.outputFiles[0].text;
  if (/\bimport\.meta\b/.test(text.replace(/\/\/.*$/gm, ''))) throw new Error('dist/register/bundle.cjs still uses import.meta');
  if (/\bimport\s*\(/.test(text.replace(/\/\/.*$/gm, ''))) throw new Error('dist/register/bundle.cjs uses import(), which vm.Script cannot run');
  // The entry's export names, from an ES module bundle of it (esbuild's metafile lists them).
  const esm = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    write: false,
    outfile: entry,
    external: ['./load.js'],
    metafile: true,
    logLevel: 'warning',
  });
  const names = Object.values(esm.metafile.outputs).find((o) => o.entryPoint !== undefined).exports;
  if (names.length === 0) throw new Error('the register entry exports nothing?');
  writeFileSync(bundle, text);
  writeFileSync(cjs, cjsEntry());
  writeFileSync(entry, esmEntry(names));
}

// The code cache, made by this Node (a failure leaves none, and says so).
const made = spawnSync(process.execPath, [fileURLToPath(new URL('./register-cache.mjs', import.meta.url))], { stdio: 'inherit' });
if (made.status !== 0) console.warn(`wasm-cow: scripts/register-cache.mjs exited with ${made.status}`);
