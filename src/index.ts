/**
 * wasm-cow: copy-on-write heap images for WebAssembly in Node.js.
 *
 *   const engine = new Engine();
 *   const prepared = engine.prepare(bytes);
 *   using lease = prepared.instantiate(imports);
 *   lease.exports.run();
 */
import { bufferView } from './buffer-source.js';
import { DropInCache, type DropInCounts, prepareInBackground } from './dropin.js';
import { Engine } from './engine.js';
import { wasm } from './wasm-api.js';
import type { Imports } from './prepared.js';

export { Engine, type EngineOptions, type PrepareOptions } from './engine.js';
export { SnapshotError, type SnapshotRefusal } from './snapshot/errors.js';
export { PreparedModule, type MemoryInfo, type Imports, type NewMemoryPolicy } from './prepared.js';
export { Lease } from './lease.js';
export { EmscriptenAdapter, emscriptenAdapter, type ReceiveInstance } from './integrations/emscripten.js';
export type { EngineStats, FallbackReason, NativeReason, ReuseReason } from './stats.js';
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
  ImageFdReplacedError,
  type WasmCowErrorCode,
} from './errors.js';

let defaultEngine: Engine | null = null;

/**
 * The engine behind `instantiate()` and the register hook: backend 'auto',
 * no instance limit; `nativeWhenFaster: false` when the environment has
 * WASM_COW_NATIVE_WHEN_FASTER=0 when it is made (to exercise the imaging
 * paths through the hook, whatever they cost).
 */
export function getDefaultEngine(): Engine {
  defaultEngine ??= new Engine({ maxInstances: Infinity, nativeWhenFaster: process.env['WASM_COW_NATIVE_WHEN_FASTER'] !== '0' });
  return defaultEngine;
}

const dropIn = new DropInCache(getDefaultEngine, prepareInBackground);

/** @internal Resolves once the drop-in `instantiate()` prepares nothing in the background (for tests and benchmarks). */
export function dropInSettled(): Promise<void> {
  return dropIn.settled();
}

/** @internal What the drop-in's second calls did (for benchmarks). */
export function dropInCounts(): Readonly<DropInCounts> {
  return { ...dropIn.counts };
}

/**
 * Drop-in for `WebAssembly.instantiate(bytes, imports)`: same result shape,
 * and `result.module` is the caller's module as V8 compiled it. The first
 * call on some bytes is `WebAssembly.instantiate` itself; the second keeps a
 * copy of the bytes and a module V8 compiled from them, in a bounded cache
 * (for bytes mostly of code, compiled from V8's cache of native modules and
 * copied within the call; for others, natively, then copied and compiled
 * again after the call); later calls on the same bytes (recognised byte for
 * byte) compile nothing, and once the module is prepared (off the calls'
 * path) instantiate it with its data mapped copy-on-write where that beats
 * V8's copy. See src/dropin.ts. Memories are not pooled (they live and die
 * with the instance); to instantiate one module many times, use
 * Engine.prepare() once and PreparedModule.instantiate() with release().
 * Given a WebAssembly.Module, this is WebAssembly.instantiate itself.
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
  // Not bytes as V8 reads them (a Module, or what V8 rejects): V8's own call.
  // A brand check, not `instanceof`, which would run a Proxy's
  // getPrototypeOf trap on the source or its prototype chain (V8 runs none).
  if (bufferView(source) === null) return wasm.instantiate(source as WebAssembly.Module, imports);
  return dropIn.instantiate(source as BufferSource, imports);
}
