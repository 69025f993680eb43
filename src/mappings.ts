/**
 * Bounds on the mappings (VMAs) the engine adds to caller memories.
 *
 * Each image placed into an imported memory splits the memory's mapping:
 * up to two more VMAs per run of pages mapped. Nothing else bounds how many
 * placements one memory receives (a loader placing position-independent
 * data at a new base each time), and past the kernel's vm.max_map_count
 * (65530 by default) every mmap and mprotect in the process fails: V8's
 * heap, malloc, the addon. Natively V8 writes the data and adds none.
 *
 *  - Per memory, decided from what the memory holds now: its mappings are
 *    counted (PROCMAP_QUERY, about 0.3 µs per mapping, the walk stopping at
 *    the cap) before each placement, and a placement that could take it past
 *    MAPPINGS_PER_MEMORY writes the data instead ('mappings').
 *  - Per process: the engine's placements never take the process past half
 *    of vm.max_map_count. The whole process's mappings are counted (read
 *    once per stretch of placements, not each time): a share of the headroom
 *    found is handed out to placements, and counted again when spent.
 */
import { readFileSync } from 'node:fs';
import type { Backend } from './backend/backend.js';

/** At most this many mappings in one memory after a placement of ours. */
export const MAPPINGS_PER_MEMORY = 64;
/** Mappings a placement of `runs` runs may add. */
export const mappingsFor = (runs: number): number => 2 * runs;

/** vm.max_map_count, read once (the kernel's default when it cannot be read). */
let maxMapCount: number | null = null;
function processCeiling(): number {
  if (maxMapCount === null) {
    try {
      const n = Number.parseInt(readFileSync('/proc/sys/vm/max_map_count', 'utf8'), 10);
      maxMapCount = Number.isSafeInteger(n) && n > 0 ? n : 65530;
    } catch {
      maxMapCount = 65530;
    }
  }
  return Math.floor(maxMapCount / 2);
}

/** Mappings placements may still add before the process is counted again. */
let allowance = 0;
/** After a refusal: placements refused before the process is counted again. */
let refusals = 0;
const RECOUNT_AFTER_REFUSALS = 256;

/**
 * Whether a placement may add `n` mappings to the process (taking them from
 * the allowance when so). Counts the process's mappings when the allowance
 * is spent: each thread takes an eighth of the headroom below the ceiling.
 */
export function reserveProcessMappings(backend: Backend, n: number): boolean {
  if (allowance >= n) {
    allowance -= n;
    return true;
  }
  if (refusals > 0) {
    refusals--;
    return false;
  }
  const ceiling = processCeiling();
  const total = backend.processMappings?.(ceiling + 1) ?? null;
  allowance = total === null ? 0 : Math.max(0, Math.floor((ceiling - total) / 8));
  if (allowance >= n) {
    allowance -= n;
    return true;
  }
  refusals = RECOUNT_AFTER_REFUSALS;
  return false;
}

/** @internal Tests: forget the allowance (the next placement counts the process). */
export function resetProcessMappings(): void {
  allowance = 0;
  refusals = 0;
}
