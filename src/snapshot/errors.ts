/**
 * Why a lease cannot be snapshotted. One class, SnapshotError (code
 * 'ERR_WASM_COW_SNAPSHOT'), with a stable `reason` and a message that says
 * what to do. Nothing is built when it is thrown; the lease is untouched.
 */
import { WasmCowError } from '../errors.js';

/**
 * Stable strings: part of the public API.
 *  - 'not-enabled'       the module was not prepared with `{ snapshots: true }` (the
 *                        engine then keeps neither its bytes nor a way to read its
 *                        non-exported globals);
 *  - 'released'          the lease was released;
 *  - 'foreign-lease'     the lease is not an instance of this prepared module;
 *  - 'in-call'           a call into the instance is running (its frames' state is not in memory);
 *  - 'unparsed'          the module could not be read (it runs as is), or its code could not
 *                        be scanned and it has tables or passive segments;
 *  - 'imported-memory'   a memory is imported: it is the host's, not the instance's;
 *  - 'shared-memory'     a memory is shared: other threads may change it while it is read;
 *  - 'memory64'          a 64-bit memory (not supported);
 *  - 'unreachable'       the engine cannot read a memory or a mutable global: not exported,
 *                        and the instance is of the original module (the cost model ran it
 *                        as V8 would, or V8 rejected the rewrite);
 *  - 'reference-global'  a mutable global holds a non-null reference: it cannot be written as a constant;
 *  - 'unreadable-global' a mutable global's value cannot be read exactly (v128, a typed
 *                        reference, a NaN whose bits JS does not show);
 *  - 'mutable-table'     the module's code can change a table (table.set, .grow, .fill,
 *                        .copy, .init), so the element segments may no longer describe it;
 *  - 'reachable-table'   an exported table was reachable by JS (which can change it);
 *  - 'dropped-segments'  the code can drop segments (data.drop, elem.drop): whether one
 *                        was dropped is not visible;
 *  - 'reserved-name'     the module exports a name that starts with the engine's private
 *                        prefix ("\u0000wasm-cow:"), which the engine uses to read globals;
 *  - 'rewrite-rejected'  V8 rejected the snapshot's module (a wasm-cow bug: please report it).
 */
export type SnapshotRefusal =
  | 'not-enabled'
  | 'released'
  | 'foreign-lease'
  | 'in-call'
  | 'unparsed'
  | 'imported-memory'
  | 'shared-memory'
  | 'memory64'
  | 'unreachable'
  | 'reference-global'
  | 'unreadable-global'
  | 'mutable-table'
  | 'reachable-table'
  | 'dropped-segments'
  | 'reserved-name'
  | 'rewrite-rejected';

/** prepared.snapshot(lease) cannot capture this lease's state exactly; `reason` says why. */
export class SnapshotError extends WasmCowError {
  readonly reason: SnapshotRefusal;
  constructor(reason: SnapshotRefusal, message: string, options?: { cause?: unknown }) {
    super('ERR_WASM_COW_SNAPSHOT', `wasm-cow: cannot snapshot this lease (${reason}): ${message}`, options);
    this.reason = reason;
  }
}
