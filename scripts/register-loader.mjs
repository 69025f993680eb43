// The two entries of wasm-cow/register, as scripts/bundle-register.mjs
// writes them beside the bundle (dist/register/bundle.cjs): index.cjs for
// require(), index.js for import. Both hold loadBundle() below (its text,
// through Function.prototype.toString), so both compile the bundle the same
// way and one code cache (bundle.cjs.v8cache and its check file,
// bundle.cjs.v8cache.check, made by scripts/register-cache.mjs) serves both.
//
// loadBundle() compiles the bundle with vm.Script, offering V8 the code cache
// when the cache is paired with this exact source: the cache file's header
// names the format, V8's version, the wrapper and the source's length, and the
// source itself follows it, compared byte for byte with bundle.cjs (V8's own
// check of a cache compares the source's length only: a cache of another
// bundle of the same length would run that bundle's bytecode). V8's data
// follows, in base64, and a second copy of it is the whole of the check file:
// the data is used only when the two copies are equal (V8 release builds do
// not checksum a cache: a byte flipped on disk would be run). The second copy
// has a file of its own so that neither file, read as one string, exceeds
// V8's 128 KiB limit for its regular heap (a larger string goes to its
// large-object space, about 0.2 ms slower to make). Anything else
// (no cache, no check file, another source, another V8, a truncated file, V8 rejecting it)
// compiles the source as without a cache: never an error, never a write.
// Each entry runs the bundle as its own module (a program that loads both
// runs it twice, as it ran the two bundles before: the second run finds the
// first's registration, Symbol.for('wasm-cow.register'), and installs
// nothing). The bundle requires node: modules only (its library, load.js,
// comes from its own createRequire): the ES module entry gives it
// process.getBuiltinModule where Node has it (20.16+), since createRequire()
// in a program that is all ES modules costs about a millisecond cold.
// A program run with options that may be V8's (not in NODE_OPTION below)
// skips the cache: V8 would reject it. How it went is under Symbol.for('wasm-cow.register.codeCache')
// on globalThis (non-enumerable; a diagnostic for tests and benchmarks).

export function loadBundle(dir, require, module, foreign, note) {
  const file = dir + '/bundle.cjs';
  const { readFileSync } = require('node:fs');
  const PREFIX = '(function (exports, require, module, __filename, __dirname) { ';
  const SUFFIX = '\n})';
  const make = globalThis[Symbol.for('wasm-cow.register.makeCodeCache')];
  // A policy manifest (--experimental-policy) checks the integrity of what
  // Node's loaders load, not what node:fs reads: under one, the bundle is
  // require()d (its cache, never checked, never read), from either entry.
  if (foreign === 'policy' && typeof require.resolve !== 'function') require = require('node:module').createRequire(file);
  if (foreign && make === undefined && typeof require.resolve === 'function') {
    // Node's own loader, as for a plain CommonJS file (see foreignOptions).
    module.exports = require(file);
    note('flags', file);
    return module.exports;
  }
  // The source and the cache are read as text (Node's one-call UTF-8 read:
  // a Buffer read is a few hundred microseconds slower cold). The cache file
  // is text too: a JSON header line, the source it was made from, and V8's
  // data in base64; its check file, the same base64 again.
  const source = readFileSync(file, 'utf8');
  let state = foreign ? 'flags' : 'missing';
  let cachedData;
  if (make === undefined && !foreign) {
    try {
      const cache = readFileSync(file + '.v8cache', 'utf8');
      state = 'mismatch';
      const nl = cache.indexOf('\n');
      const h = nl > 0 && nl < 4096 ? JSON.parse(cache.slice(0, nl)) : null;
      const start = nl + 1;
      const data = h !== null && typeof h === 'object' && Number.isSafeInteger(h.data) && h.data > 0 ? h.data : 0;
      const at = start + source.length;
      if (
        data > 0 && h.format === 'wasm-cow-code-cache/3' && h.v8 === process.versions.v8 && h.prefix === PREFIX && h.suffix === SUFFIX &&
        h.source === source.length && cache.length === at + 4 * Math.ceil(data / 3) &&
        cache.slice(start, at) === source
      ) {
        // V8's data is there twice, the second copy in the check file: V8
        // release builds do not checksum a code cache, and a byte changed on
        // disk would run wrong bytecode or crash the process. The two copies
        // compared as strings (one native comparison, no hash) catch any
        // difference between them; a missing check file throws ('mismatch').
        const copy = cache.slice(at);
        if (readFileSync(file + '.v8cache.check', 'utf8') === copy) {
          // base64Write (Buffer's own decoder) into a plain Uint8Array: Buffer.from() is slower cold.
          const bytes = new Uint8Array(data);
          if (Buffer.prototype.base64Write.call(bytes, copy, 0, data) === data) cachedData = bytes;
        }
      }
    } catch {
      // No cache (state 'missing'), or not one of ours ('mismatch').
    }
  }
  const { Script } = require('node:vm');
  const script = new Script(PREFIX + source + SUFFIX, { filename: file, cachedData });
  if (cachedData !== undefined) state = script.cachedDataRejected === true ? 'rejected' : 'used';
  if (make !== undefined) {
    make.script = script;
    make.header = { format: 'wasm-cow-code-cache/3', v8: process.versions.v8, prefix: PREFIX, suffix: SUFFIX, source: source.length };
    make.source = source;
    state = 'making';
  }
  script.runInThisContext().call(module.exports, module.exports, require, module, file, dir);
  note(state, file);
  return module.exports;
}

/** Records how the bundle was loaded (the first load in a thread), under Symbol.for('wasm-cow.register.codeCache'). */
export function note(state, file) {
  const KEY = Symbol.for('wasm-cow.register.codeCache');
  if (!Object.prototype.hasOwnProperty.call(globalThis, KEY) && Object.isExtensible(globalThis)) {
    Object.defineProperty(globalThis, KEY, { value: Object.freeze({ state, file }), enumerable: false, configurable: false, writable: false });
  }
}

/**
 * Whether the program runs with an option that may be a V8 flag. V8 rejects
 * a code cache made under other flags (its check hashes them), after the
 * loader has read and decoded it for nothing, and under such flags Node's
 * cache of its own modules goes unused too (node:vm then costs a compile):
 * such a program reads no cache ('flags'): index.cjs loads bundle.cjs
 * through require(), as Node loads any file; index.js compiles it without a
 * cache (require() there would cost createRequire(), and import() a
 * top-level await, which require() of the entry cannot take). Options are Node's own when
 * their names are in NODE_OPTION (command line and NODE_OPTIONS); any
 * other (say --max-old-space-size, --expose-gc, --stack-size) is taken as
 * possibly V8's. 'policy' (truthy) under a policy manifest: the bundle is then
 * require()d by both entries, so that the manifest's integrity applies to it.
 */
export function foreignOptions() {
  const NODE_OPTION =
    /^(?:-[rCep]|--(?:import|require|loader|experimental-loader|enable-source-maps|no-warnings|no-deprecation|trace-warnings|trace-deprecation|trace-uncaught|trace-exit|pending-deprecation|throw-deprecation|inspect|inspect-brk|inspect-port|inspect-wait|debug-port|env-file|conditions|input-type|test|test-[a-z-]+|watch|watch-path|watch-preserve-output|title|preserve-symlinks|preserve-symlinks-main|unhandled-rejections|disable-warning|eval|print|check|interactive|no-addons|no-global-search-paths|dns-result-order|report-[a-z-]+|diagnostic-dir|heapsnapshot-signal|icu-data-dir|redirect-warnings|frozen-intrinsics|use-openssl-ca|use-bundled-ca|openssl-[a-z-]+|experimental-(?!wasm-)[a-z-]+|no-experimental-[a-z-]+))$/;
  try {
    const options = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
    if (options.some((o) => typeof o === 'string' && /^--(?:experimental-policy|policy-integrity)(?:=|$)/.test(o))) return 'policy';
    return options.some((o) => typeof o !== 'string' || (o.startsWith('-') && !NODE_OPTION.test(o.split('=')[0])));
  } catch {
    // A program that replaced process.execArgv by something else (loading the hook itself, after its start): no cache.
    return true;
  }
}

const NOTE = 'loads bundle.cjs (the hook, bundled by scripts/bundle-register.mjs) through its V8 code cache, bundle.cjs.v8cache (checked against bundle.cjs.v8cache.check), when that is paired with it';

/** dist/register/index.cjs */
export function cjsEntry() {
  return (
    `'use strict';\n// wasm-cow/register for require(): ${NOTE}.\n` +
    `(${loadBundle.toString()})(__dirname, require, module, (${foreignOptions.toString()})(), ${note.toString()});\n`
  );
}

/**
 * dist/register/index.js, with the bundle's export names. An ES module
 * can require nothing synchronously without node:module, whose loading
 * (with the ESM loader's modules it brings) costs a hooked start about
 * 1.3 ms, and a static import of node:fs or node:timers evaluates their
 * lazy parts (streams, timers/promises): the bundle gets its node: modules
 * from process.getBuiltinModule (Node 20.16+), and only an older Node
 * imports node:module, awaited (the entry is an async module for it: only
 * index.cjs, which never loads it, is for require()).
 */
export function esmEntry(names) {
  for (const n of names) if (!/^[A-Za-z_$][\w$]*$/.test(n) || n === 'default') throw new Error(`unexpected export name ${n}`);
  return (
    `// wasm-cow/register for import: ${NOTE}.\n` +
    `// The bundle requires only node: modules (its library, load.js, from its own createRequire).\n` +
    `const require = process.getBuiltinModule ?? (await import('node:module')).createRequire(import.meta.url);\n` +
    `const m = (${loadBundle.toString()})(import.meta.dirname ?? require('node:path').dirname(require('node:url').fileURLToPath(import.meta.url)), require, { exports: {} }, (${foreignOptions.toString()})(), ${note.toString()});\n` +
    `export const { ${names.join(', ')} } = m;\n`
  );
}
