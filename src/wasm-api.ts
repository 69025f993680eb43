/**
 * The WebAssembly functions as they were before anything replaced them.
 * wasm-cow compiles and instantiates its own rewrites through these, never
 * through the globals, which the register hook (src/register/) replaces: a
 * rewrite must not be taken for a program's module. The hook may be
 * installed before this module loads (it loads the library at first use):
 * it leaves the originals under Symbol.for('wasm-cow.natives').
 */
const stashed = (globalThis as Record<symbol, typeof WebAssembly | undefined>)[Symbol.for('wasm-cow.natives')];
const W = stashed ?? WebAssembly;

export const wasm = {
  Module: W.Module,
  Instance: W.Instance,
  compile: W.compile,
  instantiate: W.instantiate,
  validate: W.validate,
} as const;
