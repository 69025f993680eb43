/**
 * Spare memories: replacements for pooled memories that were retired,
 * made in idle time.
 *
 * A pooled memory that grew cannot be reused: a memory cannot shrink, and
 * `memory.size` at the start of an instance must be the declared initial
 * size (esbuild grows from 95 to 140 pages on every run). Neither can one
 * that its tenant was handed (its memory object, its instance, or the
 * memory export of `lease.exports`, which Go's and Emscripten's glue always
 * read). Without spares, the next instantiation of that module makes a new
 * memory, on its own critical path.
 *
 * So when the pool retires a memory at release, it asks for a spare: a
 * new, clean memory of the same size holding the same image, exactly what
 * the next tenant would otherwise have made itself. The spare is made in a
 * later turn of the event loop (setImmediate, unref'd: it never keeps a
 * process alive), and it waits in the pool as an idle memory, so that the
 * next tenant takes it as it takes any pooled memory (no system call).
 * Nothing about the contents changes: a spare is a memory nobody has used.
 * One-shot instantiations (the register hook's, the drop-in's: their
 * memories live and die with the instance) take idle memories too, and from
 * a module's second one on each asks for a spare for the next
 * (EngineCore.fresh).
 *
 * Bounds (the stock is a cache, never a leak):
 *  - one spare is asked for per memory retired or one-shot instantiation,
 *    never more;
 *  - none is made while the pool already holds SPARES_PER_KEY idle memories
 *    (spares or not) of that size and image; spares count as idle memories
 *    against `maxIdle`, and past it the least recently used idle memory or
 *    instance is dropped for the new spare, as at release (refusing at the
 *    bound let spares of modules no longer used hold the pool for good);
 *  - at most `maxIdle` requests wait, and SPARES_PER_TURN are made per turn
 *    of the event loop (the rest in the next), so a burst of releases does
 *    not hold the thread for long;
 *  - a request whose image was disposed is dropped, and so are all those
 *    waiting when the pool is cleared (engine.close(): releases then ask
 *    for none).
 * A tight synchronous loop gives the event loop no turn: no spare is made
 * and each instantiation makes its memory itself, as before.
 */
import type { MemoryImage } from './image/image.js';
import type { SlotRequest } from './pool.js';

/** Idle memories of one size and image above which no spare is made for them. */
export const SPARES_PER_KEY = 4;
/** Spares made per turn of the event loop. */
export const SPARES_PER_TURN = 8;

export interface SpareRequest extends SlotRequest {
  readonly key: string;
}

/**
 * The spares asked for and not yet made, and the turn that makes them.
 * `make` is called in that turn for each request still wanted, oldest
 * first; it decides (by the pool's bounds) whether to make the spare.
 */
export class SpareQueue {
  readonly #make: (request: SpareRequest) => void;
  readonly #limit: () => number;
  #wanted: SpareRequest[] = [];
  #scheduled = false;

  constructor(make: (request: SpareRequest) => void, limit: () => number) {
    this.#make = make;
    this.#limit = limit;
  }

  /** Asks for one spare like `request`, made in a later turn. */
  want(request: SpareRequest): void {
    if (this.#wanted.length >= this.#limit()) return;
    this.#wanted.push(request);
    this.#schedule();
  }

  /** Forgets the requests for a disposed image. */
  drop(image: MemoryImage): void {
    if (this.#wanted.some((r) => r.image === image)) this.#wanted = this.#wanted.filter((r) => r.image !== image);
  }

  /** Forgets every request (the pool was cleared; at engine.close() releases then ask for none). */
  clear(): void {
    this.#wanted = [];
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#run(SPARES_PER_TURN);
      if (this.#wanted.length > 0) this.#schedule();
    }).unref();
  }

  #run(budget: number): void {
    const batch = this.#wanted.splice(0, Math.min(budget, this.#wanted.length));
    for (const r of batch) {
      if (r.image?.disposed === true) continue;
      this.#make(r);
    }
  }
}
