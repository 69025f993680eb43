/**
 * When imaging cannot beat V8: the engine runs a module as V8 would.
 *
 * A pooled memory always wins: reusing one saves V8's allocation of a new
 * memory, which costs more than what the engine adds. A new memory is
 * different. Making it ourselves (`new WebAssembly.Memory`, then mapping
 * the image) costs a few microseconds more than V8 allocating it inside
 * `new WebAssembly.Instance`, and pays only through the copy V8 would have
 * done: a module with little data loses. Such an instantiation is worth
 * making only if the memory later comes back to the pool and is reused.
 *
 * So, per prepared module:
 *  - `freshPathWins` (a cost model, decided at prepare): whether mapping the
 *    image into a new memory beats V8's copy even with no reuse at all;
 *  - if not, `FreshChoice` watches what became of the memories the module
 *    made: while they come back to the pool, an instantiation that finds no
 *    idle memory makes one (an investment the next instantiation collects);
 *    once the last one made was retired after a single tenant (its memory
 *    reached the caller, it grew, the pool keeps no idle memories, ...),
 *    such instantiations run natively instead, and now and then one makes a
 *    memory again, to notice if that changes (every PROBE_EVERY-th, the
 *    interval doubling while the probes' memories are lost, up to PROBE_MAX).
 */

/**
 * The cost model's constants, in microseconds, measured with
 * `wasm-cow bench` style runs (native against a new-memory cycle, in
 * alternating blocks) on a 2-core AMD EPYC VM, Node 20, Linux 6.18:
 *  - what the engine's new-memory path adds to V8's own instantiation when
 *    there is no data at all (a JS-made memory, the slot and the lease):
 *    4-5 µs for memories of 2 to 4096 pages;
 *  - what V8's copy costs per host page it writes (the page fault on the new
 *    memory and the copy): 1.8 µs, from 16-128 KiB of data;
 *  - per active segment (bounds check and call): about 0.015 µs, from the
 *    100,000-segment benchmark;
 *  - what mapping an image into a caller's (imported) memory adds: reading
 *    what its pages hold before and after V8, counting its mappings, the
 *    mapping itself, the lease. Measured interleaved per instantiation
 *    (Intel Xeon VM, Node 20, Linux 6.18), the imaged path against the same
 *    rewritten module instantiated by V8 with no data: about 77 µs with one
 *    400 KiB segment, 90 µs with 4,000 segments over the same 400 KiB, 160 µs
 *    with 7,555 segments over 2.4 MiB (the per-segment part is about what
 *    copyPerSegmentUs saves). 80 µs. On real modules: tree-sitter-javascript
 *    (373 KiB, one segment) instantiated in 0.78 ms against V8's 1.01;
 *    pglite (2.4 MiB, 7,555 segments, 2,128 exports) in 8.2-8.6 ms against
 *    8.4-9.1, less than the model's 1.3 ms (its collections took longer);
 *    QuickJS (83 KiB) stays below the margin and keeps V8's copy. An earlier
 *    900 µs was set from measures in which the engine also allocated a
 *    buffer per check (external memory: V8's collections then fell inside
 *    the engine's path) and compared processes whose heaps differed in size
 *    (V8's collection heuristics then differed too).
 */
export const COST = {
  newMemoryOverheadUs: 5,
  /**
   * What a new memory adds per 64 KiB page of its initial size, counted up
   * to `sizedPagesMax` pages. The constant above was measured on memories
   * of trivial modules; on real ones the new-memory path lost more as the
   * memory grew. Interleaved A/B, native against a new memory per instance
   * (`maxIdle: 0`), 2-core Xeon VM shared with other jobs, Node 20, medians
   * of 5-9 rounds: modules with memories of 3-23 pages (resvg,
   * lightningcss, synthetic) saved about what the copy model says; oniguruma
   * (256 pages) saved less than it says (fresh/native 0.88-0.94 where it
   * predicts a 138 µs saving); sql.js (338 pages) lost (1.23: 30-110 µs
   * slower in most rounds, where it predicts a 37 µs win). A trivial module
   * in a 339-page memory still won (by about 13 µs of the 24 predicted); the
   * term makes it adaptive, which gives that up but never loses. The time went to V8 itself, not
   * to the mapping: the copy backend's new-memory path was as slow, and a
   * rewritten sql.js instantiated into a memory made just before took
   * 270-640 µs against 80 µs for a memory used before. 0.15 µs per page
   * separates the two real modules with room on both sides (sql.js needs
   * more than 0.05, oniguruma less than 0.25). Not measured beyond 339
   * pages: counted up to 1024 (64 MiB), so that modules with much data in a
   * huge memory (the sparse 512 MiB benchmark: 1.3 ms against V8's 2.4)
   * keep their image.
   */
  perMemoryPageUs: 0.15,
  sizedPagesMax: 1024,
  importedOverheadUs: 80,
  copyPerPageUs: 1.8,
  copyPerSegmentUs: 0.015,
  /** The saving must be at least this many times the overhead: a decision near break-even is left to V8. */
  margin: 2,
} as const;

/** What V8 would copy into a new memory at instantiation, for one module. */
export interface CopyWork {
  /** Distinct host pages the module's imaged active segments write. */
  readonly pages: number;
  /** Imaged active segments. */
  readonly segments: number;
  /** Initial size, in 64 KiB pages, of the memories the engine would make (0 when it makes none). */
  readonly memoryPages?: number;
}

export interface FreshEstimate {
  /** What mapping the image saves: V8's copy. */
  readonly savedUs: number;
  /** What making the memory ourselves adds. */
  readonly addedUs: number;
  /** Whether a new memory with the image mapped beats V8 with no reuse at all. */
  readonly wins: boolean;
}

/**
 * `mapped`: whether the backend maps images (native) rather than copying
 * them (copy: it saves nothing of V8's copy, it does one itself).
 * `imported`: the image would go into a caller's memory (no new memory is
 * made; the check and the mapping cost instead, see COST.importedOverheadUs).
 */
export function estimateFresh(work: CopyWork, mapped = true, imported = false): FreshEstimate {
  const savedUs = mapped ? COST.copyPerPageUs * work.pages + COST.copyPerSegmentUs * work.segments : 0;
  const sized = Math.min(work.memoryPages ?? 0, COST.sizedPagesMax);
  const addedUs = imported ? COST.importedOverheadUs : COST.newMemoryOverheadUs + COST.perMemoryPageUs * sized;
  return { savedUs, addedUs, wins: savedUs >= COST.margin * addedUs };
}

/**
 * Distinct pages of `pageSize` that the ranges [offset, offset + length)
 * cover (ranges of length 0 cover none).
 */
export function pagesCovered(ranges: readonly { readonly offset: number; readonly length: number }[], pageSize: number): number {
  const spans = ranges
    .filter((r) => r.length > 0)
    .map((r) => [Math.floor(r.offset / pageSize), Math.ceil((r.offset + r.length) / pageSize)] as const)
    .sort((a, b) => a[0] - b[0]);
  let pages = 0;
  let end = -Infinity;
  for (const [from, to] of spans) {
    if (to <= end) continue;
    pages += to - Math.max(from, end);
    end = to;
  }
  return pages;
}

/** What the policy needs to know of a memory the module made (a Slot). */
export interface MadeMemory {
  readonly state: 'clean' | 'leased' | 'resetting' | 'retired';
  /** Tenants it has served. */
  readonly uses: number;
}

/**
 * Conditional images (an imported memory's, or position-independent data)
 * are checked at each instantiation; when the check fails, V8 applies the
 * segments. A module whose last SKIP_AFTER checks all failed (a caller that
 * instantiates into a memory already holding data, say) stops checking:
 * the check costs a few microseconds that then only add to V8's own work.
 * Every PROBE_EVERY-th instantiation checks again.
 */
export const SKIP_AFTER = 4;

export class CheckStreak {
  #misses = 0;
  #skipped = 0;

  /** Whether this instantiation should skip the check (and let V8 apply the segments). */
  skip(): boolean {
    if (this.#misses < SKIP_AFTER) return false;
    return ++this.#skipped % PROBE_EVERY !== 0;
  }

  /** A check was made: whether its images could be used. */
  checked(used: boolean): void {
    this.#misses = used ? 0 : this.#misses + 1;
  }
}

/**
 * Every PROBE_EVERY-th instantiation that would run natively makes a memory
 * instead (CheckStreak: checks again). FreshChoice backs off: each probe
 * whose memory was lost again doubles its interval, up to PROBE_MAX (a
 * probe's memory costs tens of µs, which 1 in 64 spread over a small
 * module's native instantiations, about 13 µs, made about 0.5 µs each).
 */
export const PROBE_EVERY = 64;
export const PROBE_MAX = 4096;
/** Memories made by the module that the policy remembers. */
const REMEMBERED = 4;

/** What became of a memory the module made (undefined: collected, so it was dropped). */
export function fate(m: MadeMemory | undefined): 'returned' | 'lost' | 'pending' {
  if (m === undefined) return 'lost';
  if (m.uses > 1 || m.state === 'clean' || m.state === 'resetting') return 'returned';
  return m.state === 'retired' ? 'lost' : 'pending';
}

/**
 * The adaptive half of the policy, for a module whose new-memory path loses
 * to V8 (see the file comment). Deterministic: decisions follow only from
 * the memories reported to `made()` and the count of decisions.
 */
export class FreshChoice {
  /** Weakly: a retired memory must not be kept alive (with its pages) by the policy. */
  readonly #made: WeakRef<MadeMemory>[] = [];
  #nativeRuns = 0;
  /** Native runs between probes: PROBE_EVERY, doubled at each probe up to PROBE_MAX, back to PROBE_EVERY once a memory came back. */
  #interval = PROBE_EVERY;
  /**
   * The newest memory made was lost. 'lost' is final (a retired memory is
   * never used again, a collected one is gone), so until made() reports
   * another, it decides without being looked at again (a deref() is a call
   * into V8, about 50 ns, on every instantiation run as V8 would).
   */
  #newestLost = false;

  /**
   * Whether an instantiation that finds no idle memory should make one.
   * False: it runs natively.
   */
  mayCreate(): boolean {
    // The newest memory whose fate is known decides; none known: make one and see.
    for (let i = this.#newestLost ? -1 : this.#made.length - 1; i >= 0; i--) {
      const f = fate(this.#made[i]!.deref());
      if (f === 'pending') continue;
      if (f === 'returned') {
        this.#interval = PROBE_EVERY;
        this.#nativeRuns = 0;
        return true;
      }
      if (i === this.#made.length - 1) this.#newestLost = true;
      return this.#lostRun();
    }
    return this.#newestLost ? this.#lostRun() : true;
  }

  /** An instantiation while the memories are lost: native, but every so often a probe. */
  #lostRun(): boolean {
    if (++this.#nativeRuns < this.#interval) return false;
    this.#nativeRuns = 0;
    this.#interval = Math.min(2 * this.#interval, PROBE_MAX);
    return true;
  }

  /** The module made this memory (its first tenant is being served). */
  made(memory: MadeMemory): void {
    this.#newestLost = false;
    this.#made.push(new WeakRef(memory));
    if (this.#made.length > REMEMBERED) this.#made.shift();
  }
}
