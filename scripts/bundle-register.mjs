#!/usr/bin/env node
// Bundles the register hook's entry (dist/register/index.js, as tsc built it)
// into that one file, in place, after each build.
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
// esbuild comes from esbuild-wasm, a devDependency: without it (an install
// without devDependencies) the entry stays unbundled, which works the same,
// a few milliseconds slower to load.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('../dist/register/index.js', import.meta.url));
const require = createRequire(import.meta.url);

let esbuild;
try {
  esbuild = require('esbuild-wasm');
} catch {
  console.warn('wasm-cow: esbuild-wasm not installed; dist/register/index.js stays unbundled (loads a few ms slower)');
  process.exit(0);
}

const source = readFileSync(entry, 'utf8');
if (source.startsWith('// wasm-cow/register, bundled')) process.exit(0); // already (tsc did not rebuild it)

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
const { writeFileSync } = await import('node:fs');
writeFileSync(entry, result.outputFiles[0].text);
