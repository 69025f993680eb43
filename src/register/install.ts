/**
 * The register hook's proxies of the WebAssembly globals. Cheap to load and
 * to install (it imports nothing): the proxies ask `router()` for the hook
 * at their first call, which loads the engine then, and go to V8 untouched
 * while `router()` returns null.
 */

export interface Natives {
  readonly Module: typeof WebAssembly.Module;
  readonly Instance: typeof WebAssembly.Instance;
  readonly compile: typeof WebAssembly.compile;
  readonly instantiate: typeof WebAssembly.instantiate;
  readonly compileStreaming: typeof WebAssembly.compileStreaming | undefined;
  readonly instantiateStreaming: typeof WebAssembly.instantiateStreaming | undefined;
  readonly validate: typeof WebAssembly.validate;
}

/** What the proxies route to (RegisterHook.router). */
export interface Router {
  /** True while the hook itself calls V8: the call goes to V8 as is. */
  passthrough(): boolean;
  newModule(args: unknown[], newTarget: Function): WebAssembly.Module;
  newInstance(args: unknown[], newTarget: Function): WebAssembly.Instance;
  compile(args: unknown[]): unknown;
  instantiate(args: unknown[]): unknown;
  compileStreaming(args: unknown[]): unknown;
  instantiateStreaming(args: unknown[]): unknown;
}

/** Where the originals are kept for this thread, for wasm-cow's own calls (wasm-api.ts), whenever it loads. */
export const NATIVES = Symbol.for('wasm-cow.natives');

type AnyFunction = (...args: unknown[]) => unknown;

/** This thread's originals: as stashed by an earlier install, else the globals as they are now. */
export function nativesOf(ns: typeof WebAssembly = WebAssembly): Natives {
  const stashed = (globalThis as { [NATIVES]?: Natives })[NATIVES];
  if (stashed) return stashed;
  return {
    Module: ns.Module,
    Instance: ns.Instance,
    compile: ns.compile,
    instantiate: ns.instantiate,
    compileStreaming: ns.compileStreaming,
    instantiateStreaming: ns.instantiateStreaming,
    validate: ns.validate,
  };
}

/**
 * Why installProxies() could not replace every global it replaces (a frozen
 * WebAssembly, or --frozen-intrinsics, or a lockdown), or null when it can.
 * Checked before anything is replaced: a hook is installed whole or not at all.
 */
export function cannotInstall(ns: typeof WebAssembly, natives: Natives): string | null {
  const targets: [object, PropertyKey, string][] = [
    [globalThis, NATIVES, 'globalThis'],
    [natives.Module.prototype, 'constructor', 'WebAssembly.Module.prototype'],
    [natives.Instance.prototype, 'constructor', 'WebAssembly.Instance.prototype'],
  ];
  const keys = ['Module', 'Instance', 'compile', 'instantiate'];
  if (natives.compileStreaming) keys.push('compileStreaming');
  if (natives.instantiateStreaming) keys.push('instantiateStreaming');
  for (const key of keys) targets.push([ns, key, 'WebAssembly']);
  for (const [obj, key, name] of targets) {
    const d = Object.getOwnPropertyDescriptor(obj, key);
    if (d ? !d.configurable : !Object.isExtensible(obj)) return `${name}.${String(key)} cannot be redefined`;
  }
  return null;
}

/**
 * Replaces the globals of `ns` with proxies of `natives` that call
 * `router()` (null: V8 as is). Returns a function that puts them back.
 */
export function installProxies(ns: typeof WebAssembly, natives: Natives, router: () => Router | null): () => void {
  Object.defineProperty(globalThis, NATIVES, { value: natives, enumerable: false, configurable: true, writable: false });
  const routed = (): Router | null => {
    const r = router();
    return r === null || r.passthrough() ? null : r;
  };
  const ModuleProxy: typeof WebAssembly.Module = new Proxy(natives.Module, {
    construct: (target, args, newTarget) => {
      const nt = newTarget === ModuleProxy ? target : newTarget;
      const r = routed();
      return r ? r.newModule(args, nt) : (Reflect.construct(target, args, nt) as WebAssembly.Module);
    },
  });
  const InstanceProxy: typeof WebAssembly.Instance = new Proxy(natives.Instance, {
    construct: (target, args, newTarget) => {
      const nt = newTarget === InstanceProxy ? target : newTarget;
      const r = routed();
      return r ? r.newInstance(args, nt) : (Reflect.construct(target, args, nt) as WebAssembly.Instance);
    },
  });
  const apply = <F extends AnyFunction>(fn: F, handler: (r: Router, args: unknown[]) => unknown): F =>
    new Proxy(fn, {
      apply: (target, self, args: unknown[]) => {
        const r = routed();
        return r ? handler(r, args) : Reflect.apply(target, self, args);
      },
    });

  const replaced: [object, PropertyKey, PropertyDescriptor | undefined][] = [];
  const replace = (obj: object, key: PropertyKey, value: unknown): void => {
    const old = Object.getOwnPropertyDescriptor(obj, key);
    replaced.push([obj, key, old]);
    Object.defineProperty(obj, key, { value, writable: old?.writable ?? true, enumerable: old?.enumerable ?? false, configurable: true });
  };
  replace(ns, 'Module', ModuleProxy);
  replace(ns, 'Instance', InstanceProxy);
  replace(natives.Module.prototype, 'constructor', ModuleProxy);
  replace(natives.Instance.prototype, 'constructor', InstanceProxy);
  replace(ns, 'compile', apply(natives.compile as AnyFunction, (r, args) => r.compile(args)));
  replace(ns, 'instantiate', apply(natives.instantiate as AnyFunction, (r, args) => r.instantiate(args)));
  if (natives.compileStreaming) {
    replace(ns, 'compileStreaming', apply(natives.compileStreaming as AnyFunction, (r, args) => r.compileStreaming(args)));
  }
  if (natives.instantiateStreaming) {
    replace(ns, 'instantiateStreaming', apply(natives.instantiateStreaming as AnyFunction, (r, args) => r.instantiateStreaming(args)));
  }
  return () => {
    for (const [obj, key, old] of replaced.reverse()) {
      if (old) Object.defineProperty(obj, key, old);
      else delete (obj as Record<PropertyKey, unknown>)[key];
    }
  };
}
