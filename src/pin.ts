/**
 * Reading a module's imports once, as V8 reads them, for modules whose
 * images depend on the imports (conditional.ts).
 *
 * Such a module's instantiation uses the imports twice: the engine decides
 * from the memory and the globals it is given, then V8 links what it reads.
 * When reading can run caller code (a getter, a Proxy trap), the two reads
 * could answer differently, and the data would land in a memory, or at a
 * base, that the instance does not use. So the engine reads each import
 * exactly once, in V8's order (for each import in declaration order:
 * Get(imports, module), then Get(moduleObject, name)), and hands V8 a
 * "pinned" import object that answers V8's Gets with exactly the values
 * read: the caller's getters and traps run exactly as many times, in the
 * same order, as natively, and V8 and the engine see the same objects.
 *
 * The pinned object and its module objects are null-prototype objects of
 * the engine's, never seen by caller code. A key read once, or always
 * answering the same value, is a data property; a key whose reads answered
 * differently (a getter read by several imports, or the same (module, name)
 * imported twice) is an accessor that replays the answers in order. Reading
 * stops where V8's would: at a Get that throws (the pinned object's accessor
 * throws the same exception object at the same point) or at a module value
 * that is not an object (kept as is: V8 throws its own TypeError reading it).
 */

/** An import's value that was not read (reading stopped before it, or its Get threw). */
export const NOT_READ: unique symbol = Symbol('wasm-cow: not read');

/** What one Get answered: a value, or an exception. */
type Answer = { readonly value: unknown } | { readonly thrown: unknown };

export interface PinnedImports {
  /** Per import, in declaration order: the value read, or NOT_READ. */
  readonly values: readonly unknown[];
  /** The import object to hand V8 (null prototype); the caller may add a module of its own to it. */
  readonly object: Record<string, unknown>;
}

interface Pin {
  readonly object: Record<string, unknown>;
  readonly answers: Map<string, Answer[]>;
}

function isObject(v: unknown): v is object {
  return (typeof v === 'object' && v !== null) || typeof v === 'function';
}

function record(pin: Pin, key: string, answer: Answer): void {
  const list = pin.answers.get(key);
  if (list) list.push(answer);
  else pin.answers.set(key, [answer]);
}

/** Gives the pin's object its properties: a data property per key that always answered one value, a replaying accessor otherwise. */
function materialize(pin: Pin): void {
  for (const [key, answers] of pin.answers) {
    const first = answers[0]!;
    if ('value' in first && answers.every((a) => 'value' in a && Object.is(a.value, first.value))) {
      Object.defineProperty(pin.object, key, { value: first.value, writable: true, enumerable: true, configurable: true });
      continue;
    }
    let next = 0;
    Object.defineProperty(pin.object, key, {
      get(): unknown {
        const a = answers[Math.min(next++, answers.length - 1)]!;
        if ('thrown' in a) throw a.thrown;
        return a.value;
      },
      enumerable: true,
      configurable: true,
    });
  }
}

/**
 * Reads `imports` for `list` (the module's imports in declaration order)
 * as V8 does, once; see the file comment. `imports` must be an object (V8
 * throws its own TypeError for anything else, before reading).
 */
export function pinImports(imports: object, list: readonly { readonly module: string; readonly name: string }[]): PinnedImports {
  const values = new Array<unknown>(list.length).fill(NOT_READ);
  const top: Pin = { object: Object.create(null) as Record<string, unknown>, answers: new Map() };
  /** A pin per module object read (the same object read for several imports shares one). */
  const pins = new Map<object, Pin>();
  for (let i = 0; i < list.length; i++) {
    const { module, name } = list[i]!;
    let ns: unknown;
    try {
      ns = Reflect.get(imports, module);
    } catch (e) {
      record(top, module, { thrown: e });
      break;
    }
    if (!isObject(ns)) {
      record(top, module, { value: ns });
      break;
    }
    let pin = pins.get(ns);
    if (pin === undefined) pins.set(ns, (pin = { object: Object.create(null) as Record<string, unknown>, answers: new Map() }));
    record(top, module, { value: pin.object });
    let value: unknown;
    try {
      value = Reflect.get(ns, name);
    } catch (e) {
      record(pin, name, { thrown: e });
      break;
    }
    record(pin, name, { value });
    values[i] = value;
  }
  materialize(top);
  for (const pin of pins.values()) materialize(pin);
  return { values, object: top.object };
}
