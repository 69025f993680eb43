/**
 * wasm-cow: copy-on-write heap images for WebAssembly in Node.js.
 *
 *   const engine = new Engine();
 *   const prepared = engine.prepare(bytes);
 *   using lease = prepared.instantiate(imports);
 *   lease.exports.run();
 */
import { Engine } from './engine.js';
import type { Imports } from './prepared.js';

export { Engine, type EngineOptions } from './engine.js';
export { PreparedModule, type MemoryInfo, type Imports, type NewMemoryPolicy } from './prepared.js';
export { Lease } from './lease.js';
export { EmscriptenAdapter, emscriptenAdapter, type ReceiveInstance } from './integrations/emscripten.js';
export type { EngineStats, NativeReason } from './stats.js';
export type { BackendKind } from './backend/backend.js';
export type { ExclusionCode, MemoryCondition } from './image/analyze.js';
export {
  WasmCowError,
  WasmFormatError,
  PoolExhaustedError,
  ReleasedInstanceError,
  EngineClosedError,
  InvalidArgumentError,
  BackendUnavailableError,
  NativeError,
  type WasmCowErrorCode,
} from './errors.js';

let defaultEngine: Engine | null = null;

/** The engine behind `instantiate()`: backend 'auto', no instance limit. */
export function getDefaultEngine(): Engine {
  defaultEngine ??= new Engine({ maxInstances: Infinity });
  return defaultEngine;
}

/**
 * Drop-in for `WebAssembly.instantiate(bytes, imports)`: same result shape,
 * with the module's data mapped copy-on-write instead of copied. The
 * memories are not pooled (they live and die with the instance); to
 * instantiate one module many times, use Engine.prepare() once and
 * PreparedModule.instantiate() with release().
 *
 * `module` in the result is the compiled rewrite, whose memories are
 * imported from wasm-cow: instantiate it again through wasm-cow, not with
 * WebAssembly.instantiate. Given a WebAssembly.Module (no bytes to
 * analyse), this is WebAssembly.instantiate itself.
 */
export async function instantiate(
  source: BufferSource,
  imports?: Imports,
): Promise<WebAssembly.WebAssemblyInstantiatedSource>;
export async function instantiate(source: WebAssembly.Module, imports?: Imports): Promise<WebAssembly.Instance>;
export async function instantiate(
  source: BufferSource | WebAssembly.Module,
  imports?: Imports,
): Promise<WebAssembly.WebAssemblyInstantiatedSource | WebAssembly.Instance> {
  if (source instanceof WebAssembly.Module) return WebAssembly.instantiate(source, imports);
  const prepared = getDefaultEngine().prepare(source);
  const instance = await prepared.instantiateUnpooled(imports);
  return { module: prepared.module, instance };
}
