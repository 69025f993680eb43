/**
 * Error classes. Every error wasm-cow throws on its own account carries a
 * stable `code` (never changes between versions) and a message that says
 * what to do. Errors from WebAssembly itself (CompileError, LinkError,
 * RuntimeError, RangeError for memory allocation) pass through unchanged, so
 * that code written against native instantiation keeps working.
 */

export type WasmCowErrorCode =
  | 'ERR_WASM_COW_FORMAT'
  | 'ERR_WASM_COW_POOL_EXHAUSTED'
  | 'ERR_WASM_COW_RELEASED'
  | 'ERR_WASM_COW_ENGINE_CLOSED'
  | 'ERR_WASM_COW_INVALID_ARGUMENT'
  | 'ERR_WASM_COW_BACKEND_UNAVAILABLE'
  | 'ERR_WASM_COW_NATIVE'
  | 'ERR_WASM_COW_IMAGE_FD_REPLACED'
  | 'ERR_WASM_COW_SNAPSHOT';

/** Base class of the errors wasm-cow throws that are not WebAssembly's own. */
export class WasmCowError extends Error {
  readonly code: WasmCowErrorCode;
  constructor(code: WasmCowErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
  override get name(): string {
    return this.constructor.name;
  }
}

/**
 * The module's bytes are not a well-formed WebAssembly binary. It extends
 * `WebAssembly.CompileError`, so `instanceof WebAssembly.CompileError` holds
 * as it would for native compilation. `offset` is the byte offset in the
 * input where decoding failed.
 */
export class WasmFormatError extends WebAssembly.CompileError {
  readonly code = 'ERR_WASM_COW_FORMAT' as const;
  readonly offset: number;
  constructor(message: string, offset: number, options?: { cause?: unknown }) {
    super(`${message} at byte offset ${offset}`);
    if (options && 'cause' in options) Object.defineProperty(this, 'cause', { value: options.cause, configurable: true, writable: true });
    this.offset = offset;
  }
  override get name(): string {
    return 'WasmFormatError';
  }
}

/** `maxInstances` leases are live; release one or raise the limit. */
export class PoolExhaustedError extends WasmCowError {
  readonly maxInstances: number;
  constructor(maxInstances: number) {
    super(
      'ERR_WASM_COW_POOL_EXHAUSTED',
      `wasm-cow: ${maxInstances} instances are live, the engine's maxInstances. ` +
        'Release a lease (lease.release()) before instantiating again, or create the Engine with a larger maxInstances.',
    );
    this.maxInstances = maxInstances;
  }
}

/** The lease was released: its instance and memories now belong to the pool. */
export class ReleasedInstanceError extends WasmCowError {
  constructor(what: string) {
    super(
      'ERR_WASM_COW_RELEASED',
      `wasm-cow: ${what} after lease.release(). A released instance's memory is reset and reused by the ` +
        'next instance; instantiate again to get a new one.',
    );
  }
}

/** The engine was closed. */
export class EngineClosedError extends WasmCowError {
  constructor(what: string) {
    super('ERR_WASM_COW_ENGINE_CLOSED', `wasm-cow: ${what} after engine.close(); create a new Engine.`);
  }
}

/** A caller passed an argument of the wrong type or range. */
export class InvalidArgumentError extends WasmCowError {
  constructor(message: string) {
    super('ERR_WASM_COW_INVALID_ARGUMENT', `wasm-cow: ${message}`);
  }
}

/** `backend: 'native'` was asked for but the addon cannot be used here. */
export class BackendUnavailableError extends WasmCowError {
  constructor(reason: string) {
    super(
      'ERR_WASM_COW_BACKEND_UNAVAILABLE',
      `wasm-cow: the native backend is unavailable (${reason}). Use backend: 'auto' or 'copy', ` +
        "or rebuild the addon on Linux with `npm rebuild wasm-cow`.",
    );
  }
}

/** A system call in the native layer failed (errno in `errno`, name in `syscall`). */
export class NativeError extends WasmCowError {
  readonly syscall: string | undefined;
  readonly errno: number | undefined;
  readonly sysCode: string | undefined;
  constructor(action: string, cause: unknown) {
    const c = cause as { syscall?: unknown; errno?: unknown; code?: unknown; message?: unknown } | null;
    const detail = c && typeof c.message === 'string' ? c.message : String(cause);
    super('ERR_WASM_COW_NATIVE', `wasm-cow: ${action} failed: ${detail}`, { cause });
    this.syscall = c && typeof c.syscall === 'string' ? c.syscall : undefined;
    this.errno = c && typeof c.errno === 'number' ? c.errno : undefined;
    this.sysCode = c && typeof c.code === 'string' ? c.code : undefined;
  }
}

/**
 * An image's memfd was closed by other code in this process (a double
 * close elsewhere), so its fd number no longer names the image: it may name
 * another file now. wasm-cow refused to map it (nothing was mapped into the
 * memory) and will never close that number. Prepare the module again to get
 * a new image.
 */
export class ImageFdReplacedError extends WasmCowError {
  /** The fd number the image had. */
  readonly fd: number;
  constructor(action: string, fd: number, options?: { cause?: unknown }) {
    super(
      'ERR_WASM_COW_IMAGE_FD_REPLACED',
      `wasm-cow: ${action} refused: the image's file descriptor ${fd} was closed or replaced by other code in this ` +
        'process, so it no longer names the image. Nothing was mapped from it, and wasm-cow will not close it. ' +
        'Find the code that closes a descriptor it does not own, and prepare the module again.',
      options,
    );
    this.fd = fd;
  }
}

/** The error for a failed native call: ImageFdReplacedError when the addon says the image's fd is not its own any more. */
export function nativeFailure(action: string, cause: unknown, fd: number): WasmCowError {
  const code = (cause as { code?: unknown } | null)?.code;
  return code === 'ERR_WASM_COW_IMAGE_FD_REPLACED' ? new ImageFdReplacedError(action, fd, { cause }) : new NativeError(action, cause);
}
