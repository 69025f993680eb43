/**
 * The WebAssembly functions as they were when wasm-cow was loaded. wasm-cow
 * compiles and instantiates its own rewrites through these, never through
 * the globals, which the register hook (src/register/) replaces: a rewrite
 * must not be taken for a program's module.
 */
export const wasm = {
  Module: WebAssembly.Module,
  Instance: WebAssembly.Instance,
  compile: WebAssembly.compile,
  instantiate: WebAssembly.instantiate,
  validate: WebAssembly.validate,
} as const;
