/**
 * Loads the native addon (build/Release/wasm_cow.node) if it was built and
 * can run here. Everything about it that TypeScript sees is typed below;
 * the addon validates its own arguments again (it trusts nothing).
 */
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface NativeBinding {
  /** Host page size in bytes. */
  readonly pageSize: number;
  /** Whether setFault works (WASM_COW_FAULT_INJECTION=1 at load). */
  readonly faultInjection: boolean;
  /**
   * Returns the fd of a sealed memfd holding `bytes`: an open image of the
   * very same bytes if there is one in the process (made by any thread;
   * the same fd then comes back), else a new one. Either way this thread
   * holds the image once more: only a thread holding it can map, restore
   * from or close it, and the addon drops this thread's holds when its
   * environment ends. The image closes with its last hold (and once no
   * queued reset names it).
   */
  createImage(bytes: Uint8Array): number;
  /** Drops one of this thread's holds on image `fd` (from createImage; any other fd throws). */
  closeImage(fd: number): void;
  /** Maps the first `length` bytes of image `fd` copy-on-write at `offset` of `memory`. */
  mapImage(memory: WebAssembly.Memory, fd: number, offset: number, length: number): void;
  /** Maps fresh anonymous zero pages over a range of `memory`. */
  mapZero(memory: WebAssembly.Memory, offset: number, length: number): void;
  /** madvise(MADV_DONTNEED) over a range of `memory`. */
  discard(memory: WebAssembly.Memory, offset: number, length: number): void;
  /**
   * Restores [0, length) of `memory` to the image `fd` (-1: none) at
   * [imageOffset, +imageLength) and zero elsewhere: by hand when the tenant
   * dirtied at most `keep` bytes (returns the bytes restored, which stay
   * resident), else with madvise (returns -1). Returns -2, touching nothing,
   * when the memory's byte length is not `length` (it grew).
   */
  resetRange(memory: WebAssembly.Memory, length: number, fd: number, imageOffset: number, imageLength: number, keep: number): number;
  /**
   * Gives this thread's reset queue its status cells (an Int32Array over a
   * SharedArrayBuffer). Once per thread, before resetBegin.
   */
  resetInit(status: Int32Array): void;
  /**
   * Queues what resetRange does, for this thread's reset thread. Returns 0
   * when queued (status[cell] is 1 until done: 2 done, -errno failed); -2
   * when the memory's byte length is not `length` (nothing queued); -3 when
   * it cannot be queued now and -4 when this memory never can be (use
   * resetRange).
   */
  resetBegin(
    memory: WebAssembly.Memory,
    length: number,
    fd: number,
    imageOffset: number,
    imageLength: number,
    keep: number,
    cell: number,
  ): number;
  /** Waits until status[cell] is no longer pending; returns it. */
  resetWait(cell: number): number;
  /**
   * Lets go of what this thread's finished queued resets still hold (their
   * memory references and image pins); nothing before resetInit.
   */
  resetReap(): void;
  /**
   * 0 when no page of the range holds anything (never written, or only read);
   * > 0 when some does; -1 when unknown. Pages of a file mapping do not count.
   */
  touchedPages(memory: WebAssembly.Memory, offset: number, length: number): number;
  /**
   * What the range's pages hold now: out[i] = 0 when page i holds only zero
   * bytes (an anonymous page with no frame, or one whose bytes are all zero),
   * 1 otherwise (any page of a file mapping, ours or anyone's, counts as 1).
   * Returns the number of 1s, or -1 when the kernel cannot tell (no
   * PROCMAP_QUERY or PAGEMAP_SCAN): then no page may be taken as zero.
   * `out` must hold length / pageSize bytes.
   */
  nonZeroPages(memory: WebAssembly.Memory, offset: number, length: number, out: Uint8Array): number;
  /**
   * Maps image `fd`'s bytes [fileOffset, +length) copy-on-write at `offset`
   * of `memory`. When the mmap fails it throws an error whose `zeroed` is
   * true when the range holds fresh zero pages again, false when it was left
   * inaccessible.
   */
  mapImageAt(memory: WebAssembly.Memory, fd: number, offset: number, length: number, fileOffset: number): void;
  /**
   * Pages of the range holding an anonymous frame of their own (written, or
   * zero-filled by the program), found without reading them (PAGEMAP_SCAN);
   * neither the shared zero page nor file pages count. -1 when unknown.
   */
  presentPages(memory: WebAssembly.Memory, offset: number, length: number): number;
  /** Mappings (VMAs) covering the memory's bytes now, counted up to `limit`; -1 when unknown. */
  mappingCount(memory: WebAssembly.Memory, limit: number): number;
  /** Mappings (VMAs) of the whole process now, counted up to `limit`; -1 when unknown. */
  processMappings(limit: number): number;
  /** Pages in the range that are present or swapped out. */
  residentPages(memory: WebAssembly.Memory, offset: number, length: number): number;
  /** Images (distinct memfds) open, process-wide. */
  openImages(): number;
  /** Test-only: make `step` fail once after `skip` passes; null disarms. */
  setFault(step: FaultStep | null, skip?: number): void;
}

/** 'publish' is no failure: the next queued reset's done tag lags its status by 2 ms (a race, widened). */
export type FaultStep = 'memfd_create' | 'ftruncate' | 'write' | 'seal' | 'mmap' | 'madvise' | 'pagemap_scan' | 'restore' | 'publish';

export type BindingLoad = { binding: NativeBinding; error: null } | { binding: null; error: string };

let cached: BindingLoad | undefined;

/** Where the addon may be: src/native/ or dist/native/ (or out/src/native/ in development) are two or three levels below the package. */
function candidates(): string[] {
  // import.meta.dirname: Node 20.11+ (and the register bundle's __dirname), no URL to make and parse.
  const here = (import.meta as { dirname?: string }).dirname ?? dirname(fileURLToPath(import.meta.url));
  return [join(here, '..', '..', 'build', 'Release', 'wasm_cow.node'), join(here, '..', '..', '..', 'build', 'Release', 'wasm_cow.node')];
}

/**
 * Why the addon cannot be loaded in this thread, without loading it, or
 * null when it may be (already loaded, or a built file is there; loading
 * it can still fail: loadBinding() says so then). The register hook asks
 * this at a program's start, and loads the addon (0.4-0.6 ms here) only when
 * it first prepares a module.
 */
export function bindingUnavailable(): string | null {
  if (cached) return cached.error;
  const shared = (globalThis as Record<symbol, BindingLoad | undefined>)[SHARED];
  if (shared !== undefined) return shared.error;
  if (process.platform !== 'linux') return `platform ${process.platform} is not Linux`;
  if (process.env['WASM_COW_DISABLE_NATIVE'] === '1') return 'WASM_COW_DISABLE_NATIVE=1';
  // Node refuses every addon (ERR_DLOPEN_DISABLED) under --no-addons, and
  // under the permission model without --allow-addons: known now, without
  // loading it (the options, from the command line or NODE_OPTIONS).
  let options: unknown[] = [];
  try {
    options = [...process.execArgv, ...(process.env['NODE_OPTIONS'] ?? '').split(/\s+/)];
  } catch {
    // process.execArgv replaced by the program (not iterable): the addon's load will tell.
  }
  if (options.includes('--no-addons')) return 'Node runs with --no-addons';
  if ((process as { permission?: unknown }).permission !== undefined && !options.includes('--allow-addons')) {
    return 'the permission model forbids addons (no --allow-addons)';
  }
  const paths = candidates();
  return paths.some((path) => existsSync(path)) ? null : `addon not built (no ${paths.join(' or ')})`;
}

/**
 * Where a thread's loaded addon is kept, for every copy of this code in it
 * (the library's, and the register hook's bundle, which loads first): one
 * load per thread, as require()'s cache would give.
 */
const SHARED = Symbol.for('wasm-cow.binding');

/**
 * The addon, or why it is unavailable. Loaded once per thread, with
 * process.dlopen (what require() does for a .node file, without building a
 * require function and resolving the path first: 0.25 against 0.9 ms at a
 * hooked program's start).
 */
export function loadBinding(): BindingLoad {
  if (cached) return cached;
  const shared = (globalThis as Record<symbol, BindingLoad | undefined>)[SHARED];
  if (shared !== undefined) return (cached = shared);
  if (process.platform !== 'linux') {
    cached = { binding: null, error: `platform ${process.platform} is not Linux` };
    return cached;
  }
  if (process.env['WASM_COW_DISABLE_NATIVE'] === '1') {
    cached = { binding: null, error: 'WASM_COW_DISABLE_NATIVE=1' };
    return cached;
  }
  const errors: string[] = [];
  for (const path of candidates()) {
    try {
      const module = { exports: {} };
      process.dlopen(module, path);
      cached = { binding: module.exports as NativeBinding, error: null };
      try {
        Object.defineProperty(globalThis, SHARED, { value: cached, enumerable: false, configurable: false, writable: false });
      } catch {
        // A frozen global object: each copy of this code loads its own.
      }
      return cached;
    } catch (e) {
      errors.push((e as Error).message.split('\n')[0] ?? String(e));
    }
  }
  cached = { binding: null, error: `addon not built or not loadable (${errors.join('; ')})` };
  return cached;
}
