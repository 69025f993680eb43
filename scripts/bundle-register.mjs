#!/usr/bin/env node
// Bundles the register hook's entry (dist/register/index.js, as tsc built it)
// into that one file, in place, after each build; and writes its CommonJS
// twin, dist/register/index.cjs (the "require" condition of
// wasm-cow/register: `node --require wasm-cow/register app.cjs`).
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
// The CommonJS bundle is the same code again, for programs that are
// CommonJS themselves: Node's `--import` of any ES module costs a CommonJS
// program's cold start 4-10 ms (the ESM loader starts for it), `--require`
// of a CommonJS file nothing of the kind. Its one ESM-only construct,
// import.meta.url (where binding.ts looks for the addon, and where the
// library, dist/register/load.js, is required from), becomes the file URL
// of index.cjs, which sits beside index.js. The library stays ESM, loaded
// with require() when first needed, as from the ESM entry. Both entries
// install through one global (Symbol.for('wasm-cow.register')): whichever
// loads second finds the first's registration and installs nothing.
//
// esbuild comes from esbuild-wasm, a devDependency: without it (an install
// without devDependencies) the ESM entry stays unbundled, which works the
// same, a few milliseconds slower to load, and index.cjs is one line that
// require()s it (Node 20.19+ loads ES modules with require()).
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/register/index.js', import.meta.url));
const cjs = fileURLToPath(new URL('../dist/register/index.cjs', import.meta.url));
const require = createRequire(import.meta.url);

const CJS_BANNER = '// wasm-cow/register for require(), bundled from the modules tsc built (scripts/bundle-register.mjs)';

let esbuild;
try {
  esbuild = require('esbuild-wasm');
} catch {
  console.warn('wasm-cow: esbuild-wasm not installed; dist/register/index.js stays unbundled (loads a few ms slower)');
  writeFileSync(
    cjs,
    `'use strict';\n// wasm-cow/register for require(): esbuild-wasm was not installed to bundle it (scripts/bundle-register.mjs),\n` +
      `// so this loads the ES module entry beside it (Node 20.19+ loads ES modules with require()).\n` +
      `module.exports = require('./index.js');\n`,
  );
  process.exit(0);
}

const source = readFileSync(entry, 'utf8');
if (!source.startsWith('// wasm-cow/register, bundled')) {
  // tsc rebuilt it: bundle it in place.
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    write: false,
    outfile: entry,
    external: ['./load.js'],
    banner: { js: '// wasm-cow/register, bundled from the modules tsc built (scripts/bundle-register.mjs)' },
    logLevel: 'warning',
  });
  writeFileSync(entry, result.outputFiles[0].text);
}

// The CommonJS twin, from the (bundled) ESM entry.
const result = await esbuild.build({
  entryPoints: [entry],
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  write: false,
  outfile: cjs,
  external: ['./load.js'],
  define: { 'import.meta.url': '__wasmCowUrl' },
  // 'use strict' first: after the const below, esbuild's own would be no directive (sloppy mode).
  banner: { js: `'use strict';\n${CJS_BANNER}\nconst __wasmCowUrl = require('node:url').pathToFileURL(__filename).href;` },
  logLevel: 'warning',
});
const text = result.outputFiles[0].text;
if (/\bimport\.meta\b/.test(text.replace(/\/\/.*$/gm, ''))) throw new Error('dist/register/index.cjs still uses import.meta');
writeFileSync(cjs, text);
