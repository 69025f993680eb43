/**
 * This thread's queue of background resets (native backend).
 *
 * The addon runs queued resets on one thread per Node.js thread and reports
 * each in a status cell: an Int32Array over a SharedArrayBuffer that we own
 * and read with Atomics (no call into the addon to learn that a reset is
 * done). A cell is ours while free, the addon's while pending:
 *
 *   free (0) --begin()--> pending (1) --reset thread--> done (2) | failed (-errno)
 *                         pending (1) --wait(), not started--> done here (3) | failed
 *   done | failed --poll()/wait()--> free
 *
 * One queue per thread (module state is per thread), shared by every engine
 * of that thread: the addon allows one status array per thread.
 */
import type { NativeBinding } from '../native/binding.js';

/** Resets that can be queued at once (the addon's ring holds 256). */
const CELLS = 256;
/** One cell per 64-byte line: a cell the reset thread writes shares no line with one JS writes. */
const STRIDE = 16;
const PENDING = 1;
const DONE = 2;
/** Done by resetWait on this thread: the reset thread had not started it. */
const DONE_HERE = 3;

/** A queued reset's outcome; 'done-here': wait() did it on this thread, the reset thread had not started it. */
export type QueuedOutcome = 'pending' | 'done' | 'done-here' | 'failed';

export class ResetQueue {
  readonly #binding: NativeBinding;
  readonly #status: Int32Array;
  /** Free cells, as a stack. */
  readonly #free: number[] = [];

  private constructor(binding: NativeBinding) {
    this.#binding = binding;
    this.#status = new Int32Array(new SharedArrayBuffer(CELLS * STRIDE * 4));
    binding.resetInit(this.#status);
    for (let i = CELLS - 1; i >= 0; i--) this.#free.push(i * STRIDE);
  }

  static #instance: ResetQueue | null | undefined;

  /** This thread's queue, or null when the addon cannot run one here. */
  static get(binding: NativeBinding): ResetQueue | null {
    if (ResetQueue.#instance !== undefined) return ResetQueue.#instance;
    try {
      ResetQueue.#instance = typeof SharedArrayBuffer === 'function' ? new ResetQueue(binding) : null;
    } catch {
      ResetQueue.#instance = null;
    }
    return ResetQueue.#instance;
  }

  /**
   * Queues a reset (arguments as binding.resetRange). Returns its cell;
   * 'grown' when the memory's byte length is not `length` (nothing queued);
   * null when it cannot be queued (do it inline). Throws what the addon
   * throws for bad arguments.
   */
  begin(memory: WebAssembly.Memory, length: number, fd: number, imageOffset: number, imageLength: number, keep: number): number | 'grown' | null {
    const cell = this.#free.pop();
    if (cell === undefined) return null;
    let r: number;
    try {
      r = this.#binding.resetBegin(memory, length, fd, imageOffset, imageLength, keep, cell);
    } catch (e) {
      this.#free.push(cell);
      throw e;
    }
    if (r === 0) return cell;
    this.#free.push(cell);
    return r === -2 ? 'grown' : null;
  }

  /** The reset's outcome; once not 'pending', the cell is free again. */
  poll(cell: number): QueuedOutcome {
    const s = Atomics.load(this.#status, cell);
    if (s === PENDING) return 'pending';
    return this.#settle(cell, s);
  }

  /** Waits for the reset to end (doing it here if it has not started); the cell is free again. */
  wait(cell: number): Exclude<QueuedOutcome, 'pending'> {
    let s = Atomics.load(this.#status, cell);
    if (s === PENDING) s = this.#binding.resetWait(cell);
    if (s === PENDING) throw new Error('wasm-cow internal error: waiting for a reset that was never queued');
    return this.#settle(cell, s);
  }

  /**
   * Lets go of what finished resets still hold: a job keeps its memory alive
   * and its image open until the addon reaps it, which otherwise happens
   * only in a later call that passes a memory.
   */
  reap(): void {
    this.#binding.resetReap();
  }

  #settle(cell: number, s: number): Exclude<QueuedOutcome, 'pending'> {
    Atomics.store(this.#status, cell, 0);
    this.#free.push(cell);
    return s === DONE ? 'done' : s === DONE_HERE ? 'done-here' : 'failed';
  }
}
