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
  /** Memories dropped: grew, failed a reset, over the idle bound, or at close. */
  retiredMemories: number;
  /** WebAssembly.Memory objects created. */
  memoriesCreated: number;
  /** Leases not yet released. */
  liveLeases: number;
  /** Idle memories in the pool. */
  idleMemories: number;
}

export type StatsCounters = Omit<EngineStats, 'liveLeases' | 'idleMemories'>;

export function newCounters(): StatsCounters {
  return {
    instantiations: 0,
    nativeInstantiations: { 'small-data': 0, 'unusable-image': 0 },
    pooledReuses: 0,
    fastPathHits: 0,
    imagesBuilt: 0,
    imageFallbacks: 0,
    bytesMapped: 0,
    resets: 0,
    backgroundResets: 0,
    retiredMemories: 0,
    memoriesCreated: 0,
  };
}
