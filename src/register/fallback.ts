/** The register hook's reasons, counted in engine.stats().fallbacks (kept apart so that loading the hook loads nothing else). */
import type { FallbackReason } from '../stats.js';

/** Reasons counted in engine.stats().fallbacks. */
export const Fallback = {
  /** A WebAssembly.Module the hook did not see compiled (another thread's, or compiled before the hook). */
  unknownModule: 'register-unknown-module',
  /** wasm-cow's reader could not read a module V8 compiled. */
  unparsed: 'register-unparsed',
  /** The module has nothing to map (no memory it defines or data it can image): nothing to gain. */
  noImage: 'register-no-image',
  /**
   * The module's data is too small for an image in a new memory to beat
   * V8's copy (PreparedModule.newMemory 'adaptive'), and the hook's
   * instances are never pooled: nothing to gain.
   */
  smallData: 'register-small-data',
  /** V8 rejected the rewrite of a module it compiled. */
  rewriteRejected: 'register-rewrite-rejected',
  /** The engine failed before V8 was called (e.g. a memory could not be made): V8 did it instead. */
  engineError: 'register-engine-error',
  /** A Response whose bytes could not be read beside V8 (its body was used). */
  streamUnread: 'register-stream-unread',
  /**
   * An asynchronous instantiation of a module whose memories are all
   * imported: its data can be mapped only synchronously (conditional.ts),
   * so the rewrite would gain nothing.
   */
  importedMemoryAsync: 'register-imported-memory-async',
} as const satisfies Record<string, FallbackReason>;
