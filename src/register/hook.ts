/**
 * The register hook: `WebAssembly.Module`, `Instance`, `compile`,
 * `instantiate`, `compileStreaming` and `instantiateStreaming` replaced by
 * proxies of the originals that route instantiation through an Engine.
 *
 * What the program holds is always what V8 would have given it:
 *
 *  - Every WebAssembly.Module the program gets is genuine, compiled by V8
 *    from the program's own bytes, so `WebAssembly.Module.imports/exports/
 *    customSections`, `instanceof`, structured clone (postMessage to a
 *    worker) and compile errors are V8's. The hook keeps, per module, a
 *    link to its content's entry in a ContentCache (a WeakMap), and the
 *    entry keeps a copy of the bytes.
 *  - `new WebAssembly.Instance(module, imports)` of such a module, once its
 *    content is prepared, instantiates the prepared rewrite instead:
 *    Reflect.construct(Instance, [rewrite, imports + our memories],
 *    newTarget). The result is a genuine WebAssembly.Instance made by V8,
 *    with the original's exports (names, kinds, function indices and
 *    arities are unchanged by the rewrite), whose memories are fresh,
 *    unpooled and hold the image mapped copy-on-write; they live and die
 *    with the instance. Link errors, traps and TypeErrors are V8's own,
 *    with V8's messages for the API the program called.
 *  - Anything else (a module the hook did not see compiled: from another
 *    thread, or compiled before the hook; bytes it could not read; a
 *    module it cannot rewrite) goes to V8 untouched, and the reason is
 *    counted in engine.stats().fallbacks.
 *
 * When a content is prepared (the policy):
 *  - 'lazy' (default): instantiations of a content run natively (on the
 *    original module) until the time spent in them reaches what its first
 *    compile took, about what preparing it costs (the ski-rental rule: a
 *    program never pays more than twice what it would natively for its
 *    instantiations, and a program that instantiates a module a few times
 *    pays only a copy of its bytes). Then the hook prepares it in the
 *    background: the rewrite is planned on a later turn of the event loop
 *    and compiled by V8 asynchronously, off the main thread; instantiations
 *    after it is ready go through it. A loop that never yields to the event
 *    loop stays native. Bytes seen for the first time (through
 *    `WebAssembly.instantiate(bytes)`, `WebAssembly.compile(bytes)` or
 *    `new WebAssembly.Module(bytes)`) are not even kept (only their fingerprint, and for bytes mostly of code
 *    V8's module of them: code-share.ts): glue that instantiates once per
 *    process pays nothing. At their second sight they are kept as the
 *    drop-in keeps them (dropin.ts): bytes mostly of code are compiled with
 *    `new WebAssembly.Module(bytes)`, which V8 serves from its cache of
 *    native modules while the held module lives, and copied right after
 *    (together well under V8's asynchronous compile; the module is linked
 *    to the kept content); other bytes go to V8 and are copied after the
 *    call returned, and compiled again from the copy (that call's module
 *    stays V8's). So a module that came from a first sight (or from a
 *    deferred copy) is instantiated by V8 only. A synchronous second sight
 *    (`new WebAssembly.Module`) is compiled by V8, from its cache when the
 *    first sight's module is held, and copied within the call. A program
 *    that compiles a module once and instantiates it many times gains under
 *    'eager' (or through the library's own API), not under 'lazy': a copy
 *    at the first sight would make every program that instantiates once
 *    slower than native (about 0.6 ms per MiB of bytes). A Response
 *    given to `compileStreaming`/`instantiateStreaming` is left to V8 alone
 *    at the first sight of its URL, and read beside V8 from the second on.
 *  - 'eager': the first instantiation prepares the content (synchronously
 *    for `new WebAssembly.Instance`, with V8's asynchronous compile for the
 *    promise APIs) and goes through it. This compiles every module twice.
 *  Under either policy, a module whose only images are for memories it
 *  imports (which only `new WebAssembly.Instance` can take) has its rewrite
 *  compiled only once a synchronous instantiation of it came: until then
 *  its preparation stops at the plan (ContentState 'imported').
 *
 * The hook's own calls into the engine set `depth`, so that anything the
 * engine compiles or instantiates meanwhile (its rewrites) passes straight
 * to V8. Things the proxies cannot make identical: `Function.prototype.
 * toString` of the patched functions ("function () { [native code] }",
 * without the name), and stack traces through code of a prepared instance
 * (V8 names the rewrite's script by the rewrite's bytes).
 */
import { afterCompile, laterTurn } from '../later-turn.js';
import { bufferView } from '../buffer-source.js';
import { CODE_SHARE, codeShare, memoryShape } from '../code-share.js';
import type { EngineCore } from '../core.js';
import type { FallbackReason } from '../stats.js';
import type { Imports, PreparedModule, newMemoryWins, planModule } from '../prepared.js';
import { type ContentCache, type ContentEntry, fingerprint } from './cache.js';
import { Fallback } from './fallback.js';
import type { Natives, Router } from './install.js';

export type PreparePolicy = 'lazy' | 'eager';

/**
 * What the hook needs of the library (the engine, the planner and the
 * prepared module). This module imports none of it: what a content's first
 * native instantiations need is here, so that a program that never gets to
 * preparing a module never loads the library (tens of milliseconds, more on
 * a busy host) on its instantiation's path.
 */
export interface Library {
  readonly core: EngineCore;
  readonly planModule: typeof planModule;
  readonly newMemoryWins: typeof newMemoryWins;
  readonly PreparedModule: typeof PreparedModule;
}

/** The library, loaded on first `load()`; `peek()` tells whether it is. */
export interface LibrarySource {
  peek(): Library | null;
  load(): Library;
}

/** What the hook did, for its own stats(). */
export interface RegisterStats {
  /** Contents (distinct module bytes) in the cache. */
  modules: number;
  /** Prepared forms made. */
  preparations: number;
  /** Preparations still running in the background. */
  pending: number;
  /** Instantiations through a prepared module (fresh memories, image mapped). */
  preparedInstantiations: number;
  /** Instantiations left to V8 on the original module because its content was not prepared yet (policy, not a fallback). */
  nativeInstantiations: number;
  /** Modules of a first sight (bytes mostly of code, not kept) held now, so that V8 compiles their bytes again from its cache. */
  heldModules: number;
  /**
   * compile(bytes) and instantiate(bytes) calls compiled with `new
   * WebAssembly.Module(bytes)` from V8's cache (bytes mostly of code): second
   * sights while the first sight's module was held (copied at the call), and
   * calls on kept bytes.
   */
  cachedCompiles: number;
  /** Second sights left to V8 (bytes mostly of data), the bytes copied and compiled again after the call returned. */
  deferredCopies: number;
  /** Deferred copies dropped: the program's bytes had changed (or been detached) by then, or V8 rejected the copy. */
  deferredDropped: number;
}

/**
 * Bytes seen once (compile(bytes), instantiate(bytes), new WebAssembly.Module(bytes)), and not
 * kept: their fingerprint, and for bytes mostly of code the module V8
 * compiled from them (never taken for the bytes: V8 compares them).
 */
interface Sight {
  readonly key: string;
  readonly length: number;
  /** The first sight's module, held (bytes mostly of code), or null. */
  module: WebAssembly.Module | null;
  /** What the first sight took (ms, V8's compile of the bytes): the content's price, once kept. */
  took: number;
}

/** Sights remembered, and modules of them held (by count and by the bytes they were compiled from); oldest go first. */
export const SIGHT_LIMITS = { sights: 1024, held: 16, heldBytes: 256 * 1024 * 1024 } as const;

/** Node's own clock, taken when the hook loads (a program's fake timers may replace process.hrtime; see later-turn.ts). */
const hrtime = process.hrtime.bigint;

export { Fallback } from './fallback.js';

interface ContentState {
  /** Instantiations of the content so far. */
  uses: number;
  /**
   * What the hook did with the content so far:
   *  - 'new': nothing (lazy: its native instantiations are timed into
   *    `spent`). -> 'preparing': eager, at its first instantiation; lazy, at
   *    the first one once `spent` >= `price`.
   *  - 'preparing': being planned and compiled (eager, synchronous: within
   *    the instantiation that asked; otherwise in the background, on a later
   *    turn, with V8's asynchronous compile: instantiations meanwhile are
   *    V8's). -> 'ready' (entry.prepared set), 'unusable' (with `reason`),
   *    or 'imported'.
   *  - 'imported': no synchronous instantiation came yet (`syncAsked`),
   *    which alone can take images into memories the module imports, and
   *    the module has no others: it defines no memory and has data (section
   *    headers: stopped before the plan, the library not loaded; with no
   *    data, and so with no memory at all, it is 'unusable',
   *    'register-no-image'), or its plan has images only for imported
   *    memories (stopped before the compile; the plan is not kept: it holds
   *    the parsed module). So a module only ever instantiated
   *    asynchronously (pglite) never plans nor compiles a rewrite; its
   *    instantiations fall back ('register-imported-memory-async').
   *    -> 'preparing' at the first synchronous instantiation, which plans
   *    (again) and compiles (eager: within it; lazy: in the background,
   *    from it, that one being V8's).
   *  - 'ready': instantiations go through entry.prepared (asynchronous ones
   *    of a content that defines no memory fall back, as for 'imported').
   *  - 'unusable': every instantiation falls back with `reason`.
   * 'ready' and 'unusable' are final. An entry evicted from the
   * ContentCache keeps its state for the modules linked to it; the same
   * bytes compiled again get a new entry, in 'new'.
   */
  status: 'new' | 'preparing' | 'imported' | 'ready' | 'unusable';
  /**
   * Whether a synchronous instantiation of the content came (`new
   * WebAssembly.Instance`): the only kind that can take an image into an
   * imported memory. A preparation stops at 'imported' only while none did
   * (one that came while a preparation was pending counts too).
   */
  syncAsked: boolean;
  /** When unusable: the fallback reason. */
  reason: FallbackReason | null;
  /** Whether the rewrite moves memories the module defines (else all are imported). */
  definesMemories: boolean;
  /** What the content's first compile took (ms): about what preparing it costs. */
  price: number;
  /** Time spent since in native instantiations of it (ms): what preparing could have saved. */
  spent: number;
}

/** Milliseconds, monotonic (process.hrtime: loads nothing, where performance.now() would load perf_hooks on a first call). */
const performance = { now: (): number => Number(hrtime()) / 1e6 };

const isObject = (v: unknown): v is object => (typeof v === 'object' && v !== null) || typeof v === 'function';

const copyOf = (b: Uint8Array): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
};

export type { Natives } from './install.js';

/**
 * What the hook reads of a Response, through Response.prototype's own
 * accessors and methods: never through getters a subclass (or the object)
 * may define, which Node's streaming callback calls once and the program
 * may count.
 */
interface ResponseOwn {
  url(r: Response): string;
  ok(r: Response): boolean;
  bodyUsed(r: Response): boolean;
  contentType(r: Response): string | null;
  clone(r: Response): Response;
}
let responseOwnCache: ResponseOwn | null = null;
const responseOwn = (): ResponseOwn => {
  if (responseOwnCache) return responseOwnCache;
  const proto = Response.prototype;
  const get = (name: string) => Object.getOwnPropertyDescriptor(proto, name)!.get!;
  const url = get('url');
  const ok = get('ok');
  const bodyUsed = get('bodyUsed');
  const headers = get('headers');
  const headersGet = Headers.prototype.get;
  const clone = proto.clone;
  return (responseOwnCache = {
    url: (r) => url.call(r) as string,
    ok: (r) => ok.call(r) as boolean,
    bodyUsed: (r) => bodyUsed.call(r) as boolean,
    contentType: (r) => headersGet.call(headers.call(r) as Headers, 'Content-Type'),
    clone: (r) => clone.call(r),
  });
};

export class RegisterHook {
  readonly policy: PreparePolicy;
  readonly cache: ContentCache;
  readonly #library: LibrarySource;
  /** Fallbacks counted before the library was loaded: added to engine.stats() once it is. */
  readonly #unflushed = new Map<FallbackReason, number>();
  /** Every module handed out that was compiled from bytes the hook saw: its content. */
  readonly #modules = new WeakMap<object, ContentEntry>();
  readonly #states = new WeakMap<ContentEntry, ContentState>();
  readonly #stats = { preparations: 0, preparedInstantiations: 0, nativeInstantiations: 0, cachedCompiles: 0, deferredCopies: 0, deferredDropped: 0 };
  readonly #pending = new Set<Promise<void>>();
  /** Bytes seen once (compile, instantiate or new WebAssembly.Module, from bytes), and not kept, by fingerprint (bounded; oldest first). */
  readonly #seen = new Map<string, Sight>();
  /** Modules held by sights now, and the bytes they were compiled from. */
  #held = 0;
  #heldBytes = 0;
  /** Modules V8 compiled from bytes the hook did not keep (first sights, deferred copies): instantiated by V8, not a fallback. */
  readonly #unkept = new WeakSet<object>();
  /** >0 while the hook itself calls into the engine: then everything goes to V8 as is. */
  #depth = 0;
  /** The originals, as found before the globals were replaced (install.ts). */
  readonly #natives: Natives;

  constructor(library: LibrarySource, cache: ContentCache, policy: PreparePolicy, natives: Natives) {
    this.#library = library;
    this.cache = cache;
    this.policy = policy;
    this.#natives = natives;
  }

  /** The library (loading it), with fallbacks counted before added to its engine's stats. */
  #lib(): Library {
    const lib = this.#library.load();
    this.flushFallbacks();
    return lib;
  }

  /** Counts a fallback in the engine's stats (later, if the library is not loaded yet). */
  #fallback(reason: FallbackReason): void {
    const lib = this.#library.peek();
    if (lib) lib.core.fallback(reason);
    else this.#unflushed.set(reason, (this.#unflushed.get(reason) ?? 0) + 1);
  }

  /** Adds the fallbacks counted before the library was loaded to its engine's stats (once it is). */
  flushFallbacks(): void {
    const lib = this.#library.peek();
    if (!lib || this.#unflushed.size === 0) return;
    for (const [reason, n] of this.#unflushed) for (let i = 0; i < n; i++) lib.core.fallback(reason);
    this.#unflushed.clear();
  }

  stats(): RegisterStats {
    return { modules: this.cache.size, pending: this.#pending.size, heldModules: this.#held, ...this.#stats };
  }

  /** Resolves when no preparation (or deferred copy) is running in the background. */
  async settled(): Promise<void> {
    // Turns of the event loop while waiting: a deferred copy waits for an
    // unref'd immediate (a program that is done never waits for it), these
    // keep the process alive.
    while (this.#pending.size > 0) await Promise.race([Promise.allSettled([...this.#pending]), afterCompile()]);
  }

  /** What the proxies of install.ts call. */
  readonly router: Router = {
    passthrough: () => this.#depth > 0,
    newModule: (args, newTarget) => this.#newModule(args, newTarget),
    newInstance: (args, newTarget) => this.#newInstance(args, newTarget),
    compile: (args) => this.#compile(args),
    instantiate: (args) => this.#instantiate(args),
    compileStreaming: (args) => this.#compileStreaming(args),
    instantiateStreaming: (args) => this.#instantiateStreaming(args),
  };

  // ---- modules ----

  #newModule(args: unknown[], newTarget: Function): WebAssembly.Module {
    const n = this.#natives;
    if (this.#depth > 0) return Reflect.construct(n.Module, args, newTarget) as WebAssembly.Module;
    const source = bufferView(args[0]);
    if (source?.shared) {
      // Another thread may write the bytes: compile our copy, so that what
      // V8 compiled and what we keep are the same bytes.
      const own = copyOf(source.bytes);
      const t = performance.now();
      const module = Reflect.construct(n.Module, [own, ...args.slice(1)], newTarget) as WebAssembly.Module;
      this.#adopt(module, own, true, performance.now() - t);
      return module;
    }
    if (!source) return Reflect.construct(n.Module, args, newTarget) as WebAssembly.Module;
    const key = fingerprint(source.bytes);
    if (this.policy === 'lazy' && this.cache.get(source.bytes, key) === null) {
      const { sight, first } = this.#sight(key, source.bytes.length);
      if (first) {
        // First sight: V8's alone, nothing copied, as for compile(bytes)
        // and instantiate(bytes). A copy would cost the call about 0.6 ms
        // per MiB of bytes (page faults; 10-12 ms for @swc/wasm's 17 MiB,
        // a fifth of its compile), wasted on glue that compiles once and
        // instantiates once. The module stays V8's, and so do its
        // instances; the bytes are kept from their second sight on.
        const code = codeShare(source.bytes) >= CODE_SHARE;
        const t = performance.now();
        const module = Reflect.construct(n.Module, args, newTarget) as WebAssembly.Module;
        this.#sighted(sight, module, code, performance.now() - t);
        return module;
      }
      // Second sight: kept from now on. V8 compiles the bytes from its
      // cache while the first sight's module (held in `sight`) lives. The
      // content's price is the first sight's full compile (this one, from
      // the cache, took a third of it).
      const t = performance.now();
      const module = Reflect.construct(n.Module, args, newTarget) as WebAssembly.Module;
      const took = performance.now() - t;
      this.#adoptCompiled(module, args, newTarget, source.bytes, key, Number.isFinite(sight.took) ? sight.took : took);
      return module;
    }
    const t = performance.now();
    const module = Reflect.construct(n.Module, args, newTarget) as WebAssembly.Module;
    this.#adoptCompiled(module, args, newTarget, source.bytes, key, performance.now() - t);
    return module;
  }

  /**
   * Keeps the bytes V8 compiled `module` from at `new WebAssembly.Module`
   * (`bytes`, of fingerprint `key`, as read before the call). V8 reads
   * new.target's prototype before it reads the bytes: a new.target other
   * than WebAssembly.Module itself (a Proxy, say) may run the program's code
   * there, which may change the bytes, or shrink a resizable buffer under
   * them. The bytes are then read again, as V8 read them (no code of the
   * program ran since).
   */
  #adoptCompiled(module: WebAssembly.Module, args: unknown[], newTarget: Function, bytes: Uint8Array, key: string, took: number): void {
    if (newTarget !== this.#natives.Module) {
      const now = bufferView(args[0]);
      if (now === null || now.shared) {
        this.#unkept.add(module);
        return;
      }
      bytes = now.bytes;
      key = fingerprint(bytes);
    }
    this.#adopt(module, bytes, false, took, key);
  }

  #compile(args: unknown[]): Promise<WebAssembly.Module> {
    const n = this.#natives;
    const source = bufferView(args[0]);
    if (!source) return Reflect.apply(n.compile, undefined, args) as Promise<WebAssembly.Module>;
    const key = fingerprint(source.bytes);
    const entry = this.cache.get(source.bytes, key);
    if (!entry && this.policy === 'lazy' && !source.shared) {
      // First sight: V8's alone, nothing copied. Second: as the drop-in does.
      const native = () => Reflect.apply(n.compile, undefined, args) as Promise<WebAssembly.Module>;
      const { sight, first } = this.#sight(key, source.bytes.length);
      if (first) return this.#firstSight(sight, source.bytes, native(), (m) => m);
      if (sight.module !== null && args.length <= 1) {
        const kept = this.#compileFromCache(sight, source.bytes);
        // V8's own rejection (with compile's message) if it rejects the bytes.
        if (kept === null) return native();
        return afterCompile().then(() => kept.module);
      }
      return this.#deferCopy(sight, source.bytes, native(), (m) => m);
    }
    // Known bytes mostly of code: V8 compiles them again from its cache.
    const cached = entry && !source.shared && args.length <= 1 ? this.#fromCache(source.bytes) : null;
    if (cached !== null) {
      this.#modules.set(cached, entry!);
      return afterCompile().then(() => cached);
    }
    // V8 takes the bytes at the call; we take ours before anything else can run.
    let own: Uint8Array<ArrayBuffer> | null = source.shared && !entry ? copyOf(source.bytes) : null;
    const input = source.shared ? (entry?.bytes ?? own) : args[0];
    const t = performance.now();
    const compiled = Reflect.apply(n.compile, undefined, [input, ...args.slice(1)]) as Promise<WebAssembly.Module>;
    if (!entry) own ??= copyOf(source.bytes);
    return compiled.then((module) => {
      if (entry) this.#modules.set(module, entry);
      else this.#adopt(module, own!, true, performance.now() - t, key);
      return module;
    });
  }

  /**
   * Links a module V8 compiled from `bytes` (in `took` ms) to their entry
   * (made if new; `owned`: the bytes are ours to keep).
   */
  #adopt(module: WebAssembly.Module, bytes: Uint8Array, owned: boolean, took: number, key: string = fingerprint(bytes)): ContentEntry {
    let entry = this.cache.get(bytes, key);
    if (entry === null) {
      entry = this.cache.add(owned ? (bytes as Uint8Array<ArrayBuffer>) : copyOf(bytes), module, key);
      // Kept now: a sight of these bytes (and the module it holds) is done with.
      const sight = this.#seen.get(key);
      if (sight) this.#forget(sight);
    }
    this.#modules.set(module, entry);
    const s = this.#stateOf(entry);
    if (s.price === Infinity) s.price = took;
    return entry;
  }

  // ---- instances ----

  #newInstance(args: unknown[], newTarget: Function): WebAssembly.Instance {
    const n = this.#natives;
    // V8's own (no closure made for it: this runs at every instantiation).
    if (this.#depth > 0) return Reflect.construct(n.Instance, args, newTarget) as WebAssembly.Instance;
    const [module, imports] = args;
    const entry = isObject(module) ? this.#modules.get(module) : undefined;
    if (!entry) {
      if (this.#unkept.has(module as object)) this.#stats.nativeInstantiations++;
      else this.#countUnknown(module);
      return Reflect.construct(n.Instance, args, newTarget) as WebAssembly.Instance;
    }
    if (imports !== undefined && !isObject(imports)) return Reflect.construct(n.Instance, args, newTarget) as WebAssembly.Instance; // V8's TypeError
    const prepared = this.#preparedNow(entry);
    if (!prepared) {
      // Timed only while the lazy policy is still deciding (nothing to time
      // once the content is unusable or being prepared).
      const s = this.#stateOf(entry);
      if (s.status !== 'new') return Reflect.construct(n.Instance, args, newTarget) as WebAssembly.Instance;
      const t = performance.now();
      const instance = Reflect.construct(n.Instance, args, newTarget) as WebAssembly.Instance;
      s.spent += performance.now() - t;
      return instance;
    }
    let called = false;
    this.#depth++;
    try {
      const instance = prepared.instantiateUnpooledSync(imports as Imports | undefined, (rewrite, io) => {
        called = true;
        // The start function may call the program, which may compile and
        // instantiate: that is the program's, not ours.
        this.#depth--;
        try {
          return Reflect.construct(n.Instance, [rewrite, io], newTarget) as WebAssembly.Instance;
        } finally {
          this.#depth++;
        }
      });
      this.#stats.preparedInstantiations++;
      return instance;
    } catch (e) {
      // V8's own error (link, trap, start function): the program's to see.
      if (called) throw e;
    } finally {
      this.#depth--;
    }
    // The engine failed before V8 ran (nothing of the program's ran either).
    this.#fallback(Fallback.engineError);
    return Reflect.construct(n.Instance, args, newTarget) as WebAssembly.Instance;
  }

  #instantiate(args: unknown[]): Promise<unknown> {
    const n = this.#natives;
    const native = () => Reflect.apply(n.instantiate, undefined, args) as Promise<unknown>;
    const [source, imports] = args;
    if (imports !== undefined && !isObject(imports)) return native(); // V8's TypeError
    const entry = isObject(source) ? this.#modules.get(source) : undefined;
    if (entry) return this.#instantiateModule(entry, source as WebAssembly.Module, imports as Imports | undefined);
    const view = bufferView(source);
    if (!view) {
      if (isObject(source) && this.#unkept.has(source)) this.#stats.nativeInstantiations++;
      else this.#countUnknown(source);
      return native();
    }
    const key = fingerprint(view.bytes);
    const known = this.cache.get(view.bytes, key);
    if (known === null) {
      if (this.policy === 'lazy' && !view.shared) {
        const instantiate = () => n.instantiate(source as BufferSource, imports as Imports | undefined);
        const { sight, first } = this.#sight(key, view.bytes.length);
        if (first) {
          // First sight of these bytes: V8 does it all, and nothing is
          // copied (a copy costs about 0.7 ms per MiB here, page faults:
          // 15-25% of V8's call, wasted on glue that instantiates once per
          // process). The module is V8's alone; its later instantiations
          // stay V8's.
          this.#nativeUse(null);
          return this.#firstSight(sight, view.bytes, instantiate(), (r) => r.module);
        }
        if (sight.module !== null && args.length <= 2) {
          // Second sight, bytes mostly of code: compiled from V8's cache and
          // copied at the call; the module is linked to its kept content.
          const kept = this.#compileFromCache(sight, view.bytes);
          if (kept === null) {
            this.#nativeUse(null);
            return instantiate(); // V8's own rejection, with instantiate's message
          }
          const { entry, module } = kept;
          // V8 reads the imports after its asynchronous compile: so does this.
          return afterCompile().then(() => {
            if (entry !== null) return this.#withModule(entry, module, imports as Imports | undefined);
            this.#nativeUse(null);
            return n.instantiate(module, imports as Imports | undefined).then((instance) => ({ module, instance }));
          });
        }
        // Second sight, bytes mostly of data: V8's, copied after the call.
        this.#nativeUse(null);
        return this.#deferCopy(sight, view.bytes, instantiate(), (r) => r.module);
      }
      const own = copyOf(view.bytes);
      const t = performance.now();
      const compiled = n.compile((view.shared ? own : source) as BufferSource);
      return compiled.then(
        (module) => this.#withModule(this.#adopt(module, own, true, performance.now() - t, key), module, imports as Imports | undefined),
        // V8's own rejection, with the message WebAssembly.instantiate gives.
        () => n.instantiate(own, imports as Imports | undefined),
      );
    }
    // Known bytes: V8 compiles them again (a new Module, as natively), from
    // its cache for bytes mostly of code (the entry holds the original).
    const cached = !view.shared && args.length <= 2 ? this.#fromCache(view.bytes) : null;
    if (cached !== null) {
      this.#modules.set(cached, known);
      return afterCompile().then(() => this.#withModule(known, cached, imports as Imports | undefined));
    }
    const compiled = n.compile((view.shared ? known.bytes : source) as BufferSource);
    return compiled.then((module) => {
      this.#modules.set(module, known);
      return this.#withModule(known, module, imports as Imports | undefined);
    });
  }

  async #withModule(entry: ContentEntry, module: WebAssembly.Module, imports: Imports | undefined): Promise<WebAssembly.WebAssemblyInstantiatedSource> {
    // From bytes: V8 reads the imports only after its asynchronous compile,
    // so an eager preparation may be awaited here too.
    const prepared = await this.#preparedAsync(entry);
    const instance = await this.#instantiateWith(entry, module, imports, prepared);
    return { module, instance };
  }

  /**
   * `WebAssembly.instantiate(module, imports)`: V8 reads the imports,
   * instantiates and runs the start function within the call, and returns
   * a promise of the result; so does this, whatever the policy.
   */
  #instantiateModule(entry: ContentEntry, module: WebAssembly.Module, imports: Imports | undefined): Promise<WebAssembly.Instance> {
    return this.#instantiateWith(entry, module, imports, this.#preparedNow(entry, true));
  }

  /** Instantiates `module` (or `prepared`, when given) within the call, as V8 does; the promise settles later. */
  #instantiateWith(
    entry: ContentEntry,
    module: WebAssembly.Module,
    imports: Imports | undefined,
    prepared: PreparedModule | null,
  ): Promise<WebAssembly.Instance> {
    const n = this.#natives;
    if (!prepared) {
      // V8 instantiates a Module within the call: time the call itself
      // (while the lazy policy is still deciding).
      const s = this.#stateOf(entry);
      if (s.status !== 'new') return n.instantiate(module, imports);
      const t = performance.now();
      const instance = n.instantiate(module, imports);
      s.spent += performance.now() - t;
      return instance;
    }
    let called = false;
    let running: Promise<WebAssembly.Instance>;
    this.#depth++;
    try {
      running = prepared.instantiateUnpooled(imports, (rewrite, io) => {
        called = true;
        // The start function runs within this call and may call the
        // program, which may compile and instantiate: that is the program's.
        this.#depth--;
        try {
          return n.instantiate(rewrite, io);
        } finally {
          this.#depth++;
        }
      });
    } finally {
      this.#depth--;
    }
    if (called) {
      // V8's own outcome (link errors, traps, start function): the program's to see.
      return running.then((instance) => {
        this.#stats.preparedInstantiations++;
        return instance;
      });
    }
    // The engine failed before V8 ran (nothing of the program's ran either):
    // V8 does it, still within the call.
    running.catch(() => {});
    this.#fallback(Fallback.engineError);
    return n.instantiate(module, imports);
  }

  // ---- streaming ----

  #compileStreaming(args: unknown[]): Promise<WebAssembly.Module> {
    const n = this.#natives;
    const native = (a: unknown[]) => Reflect.apply(n.compileStreaming!, undefined, a) as Promise<WebAssembly.Module>;
    return Promise.resolve(args[0]).then(
      (response) => {
        if (this.#firstStreamSight(response)) {
          // V8's alone (the body is not read twice); the module stays V8's.
          return native([response, ...args.slice(1)]).then((module) => {
            this.#unkept.add(module);
            return module;
          });
        }
        const tee = this.#tee(response);
        const t = performance.now();
        const compiled = native([response, ...args.slice(1)]);
        if (!tee) return compiled;
        return compiled.then(async (module) => {
          const took = performance.now() - t;
          const bytes = await tee;
          if (bytes) this.#adopt(module, bytes, true, took);
          return module;
        });
      },
      // V8's rejection with the program's reason; the source is not resolved twice (a thenable's then() runs once, as natively).
      (reason: unknown) => native([Promise.reject(reason), ...args.slice(1)]),
    );
  }

  #instantiateStreaming(args: unknown[]): Promise<unknown> {
    const n = this.#natives;
    const native = (a: unknown[]) => Reflect.apply(n.instantiateStreaming!, undefined, a) as Promise<WebAssembly.WebAssemblyInstantiatedSource>;
    const imports = args[1];
    if (imports !== undefined && !isObject(imports)) return native(args);
    return Promise.resolve(args[0]).then(
      async (response) => {
        const rest = args.slice(1);
        if (this.#firstStreamSight(response)) {
          // V8's alone (the body is not read twice); the module stays V8's.
          this.#nativeUse(null);
          const r = await native([response, ...rest]);
          this.#unkept.add(r.module);
          return r;
        }
        const tee = this.#tee(response);
        const bytes = tee ? await tee : null;
        const known = bytes ? this.cache.get(bytes) : null;
        if (!known || !n.compileStreaming) {
          const t = performance.now();
          const r = await native([response, ...rest]);
          if (bytes) this.#nativeUse(this.#adopt(r.module, bytes, true, performance.now() - t));
          return r;
        }
        // Known bytes: V8 checks the response and compiles it again (it
        // cannot fail: V8 compiled these bytes before), then the module is
        // instantiated as WebAssembly.instantiate(module) would be (V8's
        // link errors read "WebAssembly.instantiate()" in both).
        const module = await n.compileStreaming(response as Response);
        this.#modules.set(module, known);
        return this.#withModule(known, module, imports as Imports | undefined);
      },
      // V8's rejection with the program's reason; the source is not resolved twice (a thenable's then() runs once, as natively).
      (reason: unknown) => native([Promise.reject(reason), ...args.slice(1)]),
    );
  }

  /**
   * Lazy policy: whether this is the first sight of a Response from its URL
   * (noting it). Its body is then left to V8 alone: reading it beside V8
   * (a clone, its chunks joined into one buffer) costs what a copy of the
   * bytes does. From the URL's second sight on, the body is read beside V8
   * and kept as before (the bytes read, not the URL, say what the content
   * is: the URL only decides when to start reading). A Response without a
   * URL (made by the program) is read at every sight.
   */
  #firstStreamSight(response: unknown): boolean {
    if (this.policy !== 'lazy' || typeof Response === 'undefined' || !(response instanceof Response)) return false;
    let url: string;
    try {
      url = responseOwn().url(response);
    } catch {
      return false;
    }
    if (url === '') return false;
    const key = `url:${url}`;
    if (this.#seenUrls.has(key)) return false;
    this.#seenUrls.add(key);
    if (this.#seenUrls.size > SIGHT_LIMITS.sights) this.#seenUrls.delete(this.#seenUrls.values().next().value as string);
    return true;
  }

  /** URLs of Responses seen once (lazy policy), oldest first. */
  readonly #seenUrls = new Set<string>();

  /** The bytes of a Response, read beside V8's own reading; null when that cannot be done. */
  #tee(response: unknown): Promise<Uint8Array<ArrayBuffer> | null> | null {
    if (typeof Response === 'undefined' || !(response instanceof Response)) return null; // V8 (Node) says what is wrong
    try {
      const own = responseOwn();
      // A Response Node rejects on its headers is V8's alone: V8 rejects it
      // at once, where reading its body beside would wait for the body's end
      // (forever, for a body that never ends).
      if (own.contentType(response) !== 'application/wasm' || !own.ok(response)) return null;
      if (own.bodyUsed(response)) throw new Error('body used');
      return own
        .clone(response)
        .arrayBuffer()
        .then(
          (b) => new Uint8Array(b),
          () => null,
        );
    } catch {
      this.#fallback(Fallback.streamUnread);
      return null;
    }
  }

  // ---- preparation ----

  #stateOf(entry: ContentEntry): ContentState {
    let s = this.#states.get(entry);
    if (!s) this.#states.set(entry, (s = { uses: 0, status: entry.prepared ? 'ready' : 'new', syncAsked: false, reason: null, definesMemories: true, price: Infinity, spent: 0 }));
    return s;
  }

  #nativeUse(entry: ContentEntry | null): void {
    if (entry) this.#stateOf(entry).uses++;
    this.#stats.nativeInstantiations++;
  }

  /**
   * The prepared module to instantiate through now, or null for V8 on the
   * original. Counts the use. Eager: prepares synchronously (V8 instantiates
   * a Module within the call, also for the promise API). `promise`: for
   * WebAssembly.instantiate, which V8 settles later (imported memories
   * cannot take their image then).
   */
  #preparedNow(entry: ContentEntry, promise = false): PreparedModule | null {
    const s = this.#stateOf(entry);
    s.uses++;
    if (!promise) s.syncAsked = true;
    if (s.status === 'new') {
      if (this.policy === 'eager') this.#prepareSync(entry, s);
      else if (s.spent >= s.price) this.#prepareInBackground(entry, s);
    }
    if (promise && (s.status === 'imported' || (s.status === 'ready' && !s.definesMemories))) {
      this.#fallback(Fallback.importedMemoryAsync);
      return null;
    }
    if (s.status === 'imported') {
      // The first synchronous instantiation: the first that can take images.
      if (this.policy === 'eager') this.#prepareSync(entry, s);
      else this.#prepareInBackground(entry, s);
    }
    return this.#use(entry, s);
  }

  async #preparedAsync(entry: ContentEntry): Promise<PreparedModule | null> {
    const s = this.#stateOf(entry);
    s.uses++;
    if (s.status === 'new') {
      if (this.policy === 'eager') await this.#prepareAsync(entry, s);
      else if (s.spent >= s.price) this.#prepareInBackground(entry, s);
    }
    if (s.status === 'imported' || (s.status === 'ready' && !s.definesMemories)) {
      this.#fallback(Fallback.importedMemoryAsync);
      return null;
    }
    return this.#use(entry, s);
  }

  #use(entry: ContentEntry, s: ContentState): PreparedModule | null {
    if (s.status === 'ready') return entry.prepared;
    if (s.status === 'unusable') this.#fallback(s.reason!);
    else this.#stats.nativeInstantiations++;
    return null;
  }

  #prepareInBackground(entry: ContentEntry, s: ContentState): void {
    s.status = 'preparing';
    // On a later turn: never on the instantiation's own path.
    const job = new Promise<void>((resolve) => laterTurn(resolve))
      .then(() => this.#prepareAsync(entry, s))
      .finally(() => this.#pending.delete(job));
    this.#pending.add(job);
  }

  #prepareSync(entry: ContentEntry, s: ContentState): void {
    this.#prepare(entry, s, (bytes) => new this.#natives.Module(bytes));
  }

  async #prepareAsync(entry: ContentEntry, s: ContentState): Promise<void> {
    let compiled: Promise<WebAssembly.Module> | null = null;
    this.#prepare(entry, s, (bytes) => {
      compiled = this.#natives.compile(bytes);
      return null;
    });
    if (compiled === null) return;
    let module: WebAssembly.Module;
    try {
      module = await compiled;
    } catch {
      this.#unusable(s, Fallback.rewriteRejected);
      return;
    }
    this.#finish(entry, s, module);
  }

  /**
   * Plans the rewrite of the entry's bytes and compiles it with `compile`
   * (which may return null and finish later through #finish). When all of
   * its images are for imported memories and no synchronous instantiation
   * came yet (`s.syncAsked`, read now: also one that came while this
   * preparation waited for its turn), it stops at the plan: status
   * 'imported'.
   */
  #prepare(entry: ContentEntry, s: ContentState, compile: (bytes: Uint8Array<ArrayBuffer>) => WebAssembly.Module | null): void {
    s.status = 'preparing';
    const shape = memoryShape(entry.bytes);
    if (shape !== null && !shape.definesMemory) {
      // Nothing of its own to map: not even planned (nor the library
      // loaded) for nothing, nor until a synchronous instantiation asks for
      // images in memories it imports (planning pglite's 7,555 segments
      // takes about 25 ms cold).
      s.definesMemories = false;
      if (!shape.hasData) return this.#unusable(s, Fallback.noImage);
      if (!s.syncAsked) {
        s.status = 'imported';
        return;
      }
    }
    this.#depth++;
    try {
      const lib = this.#lib();
      const plan = lib.planModule(lib.core, entry.bytes);
      if (plan.parsed === null) return this.#unusable(s, Fallback.unparsed);
      if (plan.rewritten === null) return this.#unusable(s, Fallback.noImage);
      s.definesMemories = plan.rewritten.memoryModule !== null;
      // Too little data for an image in a new memory to beat V8's copy: the
      // hook's instantiations are one-shots (the program holds its
      // instances, nothing comes back to a pool), each of which would run
      // as V8 would (PreparedModule.newMemory 'adaptive'): no compile.
      if (plan.fresh !== null && !lib.newMemoryWins(lib.core, plan)) return this.#unusable(s, Fallback.smallData);
      if (!s.definesMemories && !s.syncAsked) {
        s.status = 'imported';
        return;
      }
      let module: WebAssembly.Module | null;
      try {
        module = compile(plan.rewritten.bytes);
      } catch {
        return this.#unusable(s, Fallback.rewriteRejected);
      }
      this.#plans.set(entry, plan);
      if (module) this.#finish(entry, s, module);
    } catch {
      this.#unusable(s, Fallback.engineError);
    } finally {
      this.#depth--;
    }
  }

  readonly #plans = new WeakMap<ContentEntry, ReturnType<Library['planModule']>>();

  #finish(entry: ContentEntry, s: ContentState, module: WebAssembly.Module): void {
    const plan = this.#plans.get(entry)!;
    this.#plans.delete(entry);
    this.#depth++;
    try {
      const lib = this.#lib();
      const prepared = new lib.PreparedModule(lib.core, entry.bytes, {
        plan,
        compiled: { bytes: plan.rewritten!.bytes, module },
        originalValid: true,
        // V8's module of these very bytes: an instantiation run as V8 would,
        // or a conditional image's fallback that is the original as is,
        // uses it instead of compiling the bytes again.
        original: entry.original,
      });
      if (!prepared.rewritten) return this.#unusable(s, Fallback.rewriteRejected);
      entry.prepared = prepared;
      s.status = 'ready';
      this.#stats.preparations++;
    } catch {
      this.#unusable(s, Fallback.engineError);
    } finally {
      this.#depth--;
    }
  }

  #unusable(s: ContentState, reason: FallbackReason): void {
    s.status = 'unusable';
    s.reason = reason;
  }

  // ---- first and second sights (lazy policy, bytes not kept yet) ----

  /**
   * The sight of bytes of this fingerprint (length and sampled bytes):
   * `first` when they were not seen before (then noted), else their first
   * sight's record (then forgotten: the bytes are kept from now on, or
   * copied after the call). A collision only makes other bytes kept one
   * sight early (and compiled in full by `new WebAssembly.Module`, which
   * compares the bytes: V8's module of them either way).
   */
  #sight(key: string, length: number): { sight: Sight; first: boolean } {
    const seen = this.#seen.get(key);
    if (seen) {
      // The second sight: forgotten (the content is kept from now on, or
      // its copy is), with the module it held for the caller.
      const sight = { ...seen };
      this.#forget(seen);
      return { sight, first: false };
    }
    const sight: Sight = { key, length, module: null, took: Infinity };
    this.#seen.set(key, sight);
    while (this.#seen.size > SIGHT_LIMITS.sights) this.#forget(this.#seen.values().next().value as Sight);
    return { sight, first: true };
  }

  /** Forgets a sight (and the module it held). */
  #forget(sight: Sight): void {
    if (this.#seen.get(sight.key) === sight) this.#seen.delete(sight.key);
    if (sight.module !== null) {
      sight.module = null;
      this.#held--;
      this.#heldBytes -= sight.length;
    }
  }

  /**
   * A first sight: what V8 gives, with its module marked as V8's (`moduleOf`
   * finds it in the result) and, for bytes mostly of code, held (at no
   * cost: the program has it too) so that V8 compiles the bytes again from
   * its cache at their second sight.
   */
  #firstSight<T>(sight: Sight, bytes: Uint8Array, result: Promise<T>, moduleOf: (r: T) => WebAssembly.Module): Promise<T> {
    const code = codeShare(bytes) >= CODE_SHARE;
    const t = performance.now();
    return result.then((r) => {
      this.#sighted(sight, moduleOf(r), code, performance.now() - t);
      return r;
    });
  }

  /**
   * What a first sight gave: V8's `module` (of bytes mostly of `code` or
   * not), compiled in `took` ms. The module is marked as V8's; for bytes
   * mostly of code it is held (bounded by SIGHT_LIMITS).
   */
  #sighted(sight: Sight, module: WebAssembly.Module, code: boolean, took: number): void {
    this.#unkept.add(module);
    sight.took = took;
    if (code && this.#seen.get(sight.key) === sight && sight.module === null) {
      sight.module = module;
      this.#held++;
      this.#heldBytes += sight.length;
      for (const s of this.#seen.values()) {
        if (this.#held <= SIGHT_LIMITS.held && this.#heldBytes <= SIGHT_LIMITS.heldBytes) break;
        if (s.module !== null) this.#forget(s);
      }
    }
  }

  /**
   * A second sight while the first one's module is held: `new
   * WebAssembly.Module(bytes)`, which V8 serves from its cache of native
   * modules when the bytes equal that module's (and compiles in full
   * otherwise: V8's either way), then a copy of the bytes with no
   * JavaScript between, so that the kept copy is what V8 compiled. Null
   * when V8 rejects the bytes (the caller asks V8 again, for its message).
   */
  #compileFromCache(sight: Sight, bytes: Uint8Array): { entry: ContentEntry | null; module: WebAssembly.Module } | null {
    let module: WebAssembly.Module;
    try {
      module = new this.#natives.Module(bytes as Uint8Array<ArrayBuffer>); // not shared: #instantiate and #compile leave that to the copying path
    } catch {
      return null;
    }
    let own: Uint8Array<ArrayBuffer> | null = null;
    try {
      own = copyOf(bytes);
    } catch {
      // No memory for a copy: nothing is kept, the module is V8's.
    }
    if (own === null) {
      this.#unkept.add(module);
      return { entry: null, module };
    }
    this.#stats.cachedCompiles++;
    return { entry: this.#adopt(module, own, true, sight.took, sight.key), module };
  }

  /**
   * Known bytes (kept, so V8's module of them lives) mostly of code,
   * compiled again with `new WebAssembly.Module(bytes)`: from V8's cache of
   * native modules (a fraction of its asynchronous compile, which never
   * uses the cache). Null for other bytes, or when V8 rejects them (the
   * caller then asks V8 as the program did, for its own outcome).
   */
  #fromCache(bytes: Uint8Array): WebAssembly.Module | null {
    if (codeShare(bytes) < CODE_SHARE) return null;
    try {
      const module = new this.#natives.Module(bytes as Uint8Array<ArrayBuffer>);
      this.#stats.cachedCompiles++;
      return module;
    } catch {
      return null;
    }
  }

  /**
   * A second sight of bytes whose first module is not held (mostly data):
   * V8's call, and the bytes copied after it returned, on a later turn of
   * the event loop. The program may have changed them by then, so the kept
   * module is compiled again from the copy (asynchronously: off the main
   * thread), never taken from this call: that one stays V8's.
   */
  #deferCopy<T>(sight: Sight, bytes: Uint8Array, result: Promise<T>, moduleOf: (r: T) => WebAssembly.Module): Promise<T> {
    const n = this.#natives;
    const t = performance.now();
    return result.then((r) => {
      this.#unkept.add(moduleOf(r));
      const took = performance.now() - t;
      this.#stats.deferredCopies++;
      const job = new Promise<void>((resolve) => laterTurn(resolve).unref())
        .then(async () => {
          // A detached buffer reads as empty; changed bytes are another module's.
          if (bytes.length !== sight.length || fingerprint(bytes) !== sight.key) throw new Error('changed');
          if (this.cache.get(bytes, sight.key) !== null) return; // kept meanwhile
          const own = copyOf(bytes);
          const module = await n.compile(own); // what the copy holds, whatever the program did
          this.#adopt(module, own, true, Math.min(took, sight.took), sight.key);
        })
        .catch(() => {
          this.#stats.deferredDropped++;
          // Seen still: the next sight of these bytes is a second one again.
          if (!this.#seen.has(sight.key)) this.#seen.set(sight.key, { key: sight.key, length: sight.length, module: null, took: sight.took });
        })
        .finally(() => this.#pending.delete(job));
      this.#pending.add(job);
      return r;
    });
  }

  #countUnknown(value: unknown): void {
    if (!isObject(value)) return;
    try {
      this.#natives.Module.exports(value as WebAssembly.Module);
    } catch {
      return; // not a module: V8 says what it is
    }
    this.#fallback(Fallback.unknownModule);
  }
}
