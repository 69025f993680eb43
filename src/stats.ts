/**
 * Why an image was not used where the engine had one to use, and V8 (or the
 * engine, writing exactly what V8 would) placed the data instead. Stable
 * strings: part of the public API.
 *
 *  - 'memfd': a memfd could not be made; the image is kept as bytes and
 *    copied in (counted once, when the image is built).
 *  - The others are counted once per instantiation (and memory) that could
 *    not use a conditional image: an imported memory's, or (for 'imports',
 *    'out-of-bounds', 'too-large', 'new-base') position-independent data's:
 *    'backend'         the copy backend cannot tell what the memory's pages hold;
 *    'async'           instantiateAsync(): other code could touch the memory meanwhile;
 *    'start-function'  the start function does more than fill memory, or its fill would trap;
 *    'imports'         the memory, or a global the segments' offsets need, is missing or not readable as one;
 *    'out-of-bounds'   a segment does not fit the memory (V8 traps, as natively);
 *    'too-large'       the segments span more than `imageSizeLimit`;
 *    'trap-risk'       another active data segment could trap, after this one's data would have been written;
 *    'aliased'         the same memory is imported twice;
 *    'unclassifiable'  the kernel could not tell what the pages hold (no PROCMAP_QUERY or PAGEMAP_SCAN);
 *    'non-zero'        no page the image has data for holds only zeros: nothing to map;
 *    'scattered'       the zero pages form too many separate runs to map;
 *    'resident'        the program already holds in memory a quarter or more
 *                      of the pages the image covers (zero-filled by calloc,
 *                      say): V8's copy onto them takes no page faults, which
 *                      is what mapping saves, so V8 writes the data (only
 *                      with nativeWhenFaster, the default);
 *    'mmap'            mapping failed; the engine wrote the segments' bytes;
 *    'mappings'        the memory already holds too many mappings (VMAs), or the
 *                      process nears vm.max_map_count (src/mappings.ts): the data
 *                      is written, not mapped;
 *    'new-base'        position-independent data resolved at a base (set of
 *                      global values) not seen before: no image is built for
 *                      it, V8 writes the data (the next time that base comes,
 *                      it gets one).
 *    (Unclassifiable, resident, non-zero, scattered, mappings are found before V8 runs,
 *    when V8 then writes the data; found only after V8, the engine writes
 *    exactly V8's bytes.)
 *  - 'register-*': the register hook left an instantiation to V8 (see
 *    docs/integrations/register.md); counted once per instantiation.
 *  - 'dropin-engine-error': the drop-in instantiate()'s prepared module
 *    failed before V8 ran (a memory or mapping could not be made): V8
 *    instantiated the kept module instead.
 */
export type FallbackReason =
  | 'memfd'
  | 'backend'
  | 'async'
  | 'start-function'
  | 'imports'
  | 'out-of-bounds'
  | 'too-large'
  | 'trap-risk'
  | 'aliased'
  | 'unclassifiable'
  | 'non-zero'
  | 'scattered'
  | 'resident'
  | 'mmap'
  | 'mappings'
  | 'new-base'
  | 'register-unknown-module'
  | 'register-unparsed'
  | 'register-no-image'
  | 'register-small-data'
  | 'register-rewrite-rejected'
  | 'register-engine-error'
  | 'register-stream-unread'
  | 'register-imported-memory-async'
  | 'dropin-engine-error';

import type { ReuseReason } from './reuse/plan.js';

export type { ReuseReason };

/** Why an instantiation ran as V8 would (see EngineStats.nativeInstantiations). Stable strings. */
export type NativeReason = 'small-data' | 'unusable-image';

/** Counters an engine keeps; `engine.stats()` returns a snapshot. */
export interface EngineStats {
  /** Instances created through the engine (leases and one-shot). */
  instantiations: number;
  /**
   * Of `instantiations`, those run as V8 would (the original module, in
   * memories V8 makes and fills), by reason. 'small-data': no idle memory
   * could be reused, the module's memories were not coming back to the pool,
   * and its data is too small for an image in a new memory to beat V8's copy
   * (see PreparedModule.newMemory). 'unusable-image': the module's
   * conditional images could not be used by its last 4 instantiations (for
   * example, the caller's memory already held data), so the check was
   * skipped and V8 applied the segments (every 64th checks again).
   */
  nativeInstantiations: Record<NativeReason, number>;
  /** Instantiations that reused a pooled memory. */
  pooledReuses: number;
  /** Pooled reuses that found the same image already in place (no system call). */
  fastPathHits: number;
  /**
   * Spare memories made in idle time to replace pooled memories retired at
   * release (they grew, or were handed out): new memories holding their
   * image, idle in the pool (counted in `memoriesCreated` too).
   */
  sparesMade: number;
  /** Of `pooledReuses`, those that took a spare (its first tenant). */
  sparesUsed: number;
  /** Images built (one per imaged memory of a prepared module, at first use). */
  imagesBuilt: number;
  /** Images kept as bytes because a memfd could not be made. */
  imageFallbacks: number;
  /** Bytes of image placed into memories (mapped, or copied on the copy backend). */
  bytesMapped: number;
  /** Memories reset and returned to the pool. */
  resets: number;
  /** Of `resets`, those queued to the background reset thread (the calling thread may have done some itself). */
  backgroundResets: number;
  /** Memories dropped: grew, failed a reset, over the idle bound, handed out, or at close. */
  retiredMemories: number;
  /**
   * Of `retiredMemories`, those not reused because their lease handed out
   * something that release() cannot revoke: the memory object, the instance,
   * a table or global that can hold its functions (see docs/guarantees.md).
   */
  retiredExposed: number;
  /** WebAssembly.Memory objects created. */
  memoriesCreated: number;
  /** Leases not yet released. */
  liveLeases: number;
  /**
   * Idle memories: in the pool (those whose reset is still running
   * included) and held by idle instances of modules prepared with
   * `{ reuse: true }`. At most `maxIdle` (engine-wide) once resets end.
   */
  idleMemories: number;
  /** Idle instances kept for reuse (modules prepared with `{ reuse: true }`); their memories are in `idleMemories`. */
  idleInstances: number;
  /** Fallbacks by reason (see FallbackReason); a reason that never happened is absent. */
  fallbacks: Partial<Record<FallbackReason, number>>;
  /** Instantiations served by a reused instance (modules prepared with `{ reuse: true }`). */
  instancesReused: number;
  /**
   * For modules prepared with `{ reuse: true }`: by reason (see ReuseReason
   * in docs/api.md), each instantiation of an ineligible module, each
   * instantiation that could not take an idle instance ('import-not-js',
   * 'imports-differ', 'imports-vary', 'start-trap'), and each instance dropped at release
   * ('exposed', 'grown', 'table-grown', 'nan-global', 'reset-failed',
   * 'pool-full'). A reason that never happened is absent.
   */
  reuseDeclined: Partial<Record<ReuseReason, number>>;
}

export type StatsCounters = Omit<EngineStats, 'liveLeases' | 'idleMemories' | 'idleInstances'>;

export function countFallback(counters: StatsCounters, reason: FallbackReason): void {
  counters.fallbacks[reason] = (counters.fallbacks[reason] ?? 0) + 1;
}

export function newCounters(): StatsCounters {
  return {
    instantiations: 0,
    nativeInstantiations: { 'small-data': 0, 'unusable-image': 0 },
    pooledReuses: 0,
    fastPathHits: 0,
    sparesMade: 0,
    sparesUsed: 0,
    imagesBuilt: 0,
    imageFallbacks: 0,
    bytesMapped: 0,
    resets: 0,
    backgroundResets: 0,
    retiredMemories: 0,
    retiredExposed: 0,
    memoriesCreated: 0,
    fallbacks: {},
    instancesReused: 0,
    reuseDeclined: {},
  };
}
