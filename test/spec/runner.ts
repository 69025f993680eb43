/**
 * Runs a WebAssembly spec script (wast2json output) in one of three modes:
 *   native        new WebAssembly.Module / Instance
 *   engine-native every module through Engine.prepare/instantiate, native backend
 *   engine-copy   the same on the copy backend
 *   engine-reuse  prepare(bytes, { reuse: true }), native backend: each
 *                 module is first instantiated and released (its start
 *                 function runs, the instance is reset and pooled), then
 *                 instantiated again for the script: the script runs on a
 *                 reused instance. The warm-up is left out where a second
 *                 run of the start function would be visible natively (a
 *                 start function with imported memories, tables or
 *                 mutable globals to write to).
 * Each command yields an outcome string (what happened, with error classes
 * and messages), so that modes can be compared command by command, and a
 * verdict against the script's expectation (passed / failed / skipped).
 *
 * As in the reference harness, one `spectest` instance serves the whole
 * script: modules that import `spectest.memory` share it. Memories are read
 * only where the script itself reads them (its own assertions) and once at
 * the end, when a last result lists a digest of every memory the script
 * could reach (spectest's and every one a module exported). Reading a memory
 * between commands would change what the kernel reports about its pages,
 * and so hide mistakes in deciding where an image may be mapped.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, type Lease } from '../../src/index.js';
import { parseModule } from '../../src/binary/reader.js';

export type Mode = 'native' | 'engine-native' | 'engine-copy' | 'engine-reuse';

interface Value {
  type: string;
  value?: string | string[];
}
interface Action {
  type: 'invoke' | 'get';
  module?: string;
  field: string;
  args?: Value[];
}
interface Command {
  type: string;
  line: number;
  name?: string;
  as?: string;
  filename?: string;
  module_type?: string;
  text?: string;
  action?: Action;
  expected?: Value[];
}

export interface CommandResult {
  line: number;
  type: string;
  outcome: string;
  verdict: 'passed' | 'failed' | 'skipped';
}

export interface ScriptResult {
  script: string;
  mode: Mode;
  results: CommandResult[];
  /** engine-reuse: engine.stats().instancesReused at the end. */
  reused?: number;
  /** engine-reuse: modules prepared with reuse, and those eligible. */
  reusePrepared?: number;
  reuseEligible?: number;
}

const externs = new Map<number, object>();
const externref = (n: number): object => {
  let o = externs.get(n);
  if (!o) externs.set(n, (o = { externref: n }));
  return o;
};

function spectest(): WebAssembly.Imports {
  const noop = () => {};
  return {
    spectest: {
      print: noop,
      print_i32: noop,
      print_i64: noop,
      print_f32: noop,
      print_f64: noop,
      print_i32_f32: noop,
      print_f64_f64: noop,
      global_i32: new WebAssembly.Global({ value: 'i32', mutable: false }, 666),
      global_i64: new WebAssembly.Global({ value: 'i64', mutable: false }, 666n),
      global_f32: new WebAssembly.Global({ value: 'f32', mutable: false }, 666.6),
      global_f64: new WebAssembly.Global({ value: 'f64', mutable: false }, 666.6),
      table: new WebAssembly.Table({ initial: 10, maximum: 20, element: 'anyfunc' }),
      memory: new WebAssembly.Memory({ initial: 1, maximum: 2 }),
    },
  };
}

function toJs(v: Value): unknown {
  const s = v.value as string;
  switch (v.type) {
    case 'i32':
      return Number(BigInt.asIntN(32, BigInt(s)));
    case 'i64':
      return BigInt.asIntN(64, BigInt(s));
    case 'f32': {
      const dv = new DataView(new ArrayBuffer(4));
      dv.setUint32(0, Number(BigInt(s)));
      return dv.getFloat32(0);
    }
    case 'f64': {
      const dv = new DataView(new ArrayBuffer(8));
      dv.setBigUint64(0, BigInt(s));
      return dv.getFloat64(0);
    }
    case 'externref':
      return s === 'null' ? null : externref(Number(s));
    case 'funcref':
      return null;
    default:
      throw new Error(`unsupported value type ${v.type}`);
  }
}

/** A canonical printable form of a result, by expected type. */
function show(type: string | undefined, v: unknown): string {
  if (type === 'f32' && typeof v === 'number') {
    if (Number.isNaN(v)) return 'f32:nan';
    const dv = new DataView(new ArrayBuffer(4));
    dv.setFloat32(0, v);
    return `f32:${dv.getUint32(0)}`;
  }
  if (type === 'f64' && typeof v === 'number') {
    if (Number.isNaN(v)) return 'f64:nan';
    const dv = new DataView(new ArrayBuffer(8));
    dv.setFloat64(0, v);
    return `f64:${dv.getBigUint64(0)}`;
  }
  if (type === 'i32' && typeof v === 'number') return `i32:${v >>> 0}`;
  if (type === 'i64' && typeof v === 'bigint') return `i64:${BigInt.asUintN(64, v)}`;
  if (v === null) return `${type}:null`;
  if (typeof v === 'object' && v && 'externref' in v) return `externref:${(v as { externref: number }).externref}`;
  if (typeof v === 'function') return `${type}:func`;
  return `${type}:${String(v)}`;
}

function expectedShow(v: Value): string {
  const s = v.value as string | undefined;
  if ((v.type === 'f32' || v.type === 'f64') && s?.startsWith('nan')) return `${v.type}:nan`;
  if (v.type === 'f32' || v.type === 'f64') return show(v.type, toJs(v));
  if (v.type === 'externref' || v.type === 'funcref') return s === 'null' ? `${v.type}:null` : `externref:${s}`;
  return `${v.type}:${BigInt(s!)}`;
}

/**
 * An error as an outcome: class and message, except for compile errors,
 * where only the class counts (the engine may report a malformed binary
 * with its own WasmFormatError message and byte offset).
 */
const describe = (e: unknown): string => {
  if (e instanceof WebAssembly.CompileError) return 'CompileError';
  if (e instanceof Error) return `${e.constructor.name}: ${e.message}`;
  return `throw: ${String(e)}`;
};

export function runScript(dir: string, script: string, mode: Mode): ScriptResult {
  const json = JSON.parse(readFileSync(join(dir, `${script}.json`), 'utf8')) as { commands: Command[] };
  const engine = mode === 'native' ? null : new Engine({ backend: mode === 'engine-copy' ? 'copy' : 'native', maxInstances: 100_000, ...(mode === 'engine-reuse' ? { backgroundReset: false } : {}) });
  const reuse = mode === 'engine-reuse';
  let reusePrepared = 0;
  let reuseEligible = 0;
  const leases: Lease[] = [];
  const registry: Record<string, WebAssembly.Exports> = {};
  const named = new Map<string, WebAssembly.Exports>();
  let current: WebAssembly.Exports | null = null;
  const results: CommandResult[] = [];
  const shared = spectest();
  /** Every memory the script can reach, in the order it could first reach them. */
  const memories: WebAssembly.Memory[] = [shared['spectest']!['memory'] as WebAssembly.Memory];
  const reach = (exports: WebAssembly.Exports): void => {
    for (const v of Object.values(exports)) if (v instanceof WebAssembly.Memory && !memories.includes(v)) memories.push(v);
  };

  const imports = (): WebAssembly.Imports => ({ ...shared, ...registry }) as WebAssembly.Imports;
  const read = (file: string) => new Uint8Array(readFileSync(join(dir, file)));
  const compile = (bytes: Uint8Array<ArrayBuffer>) => {
    if (!engine) return new WebAssembly.Module(bytes);
    return engine.prepare(bytes);
  };
  const instantiate = (bytes: Uint8Array<ArrayBuffer>): WebAssembly.Exports => {
    if (!engine) {
      const exports = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports()).exports;
      reach(exports);
      return exports;
    }
    let lease: Lease;
    if (reuse) {
      const prepared = engine.prepare(bytes, { reuse: true });
      reusePrepared++;
      if (prepared.reuse.enabled) {
        reuseEligible++;
        const parsed = parseModule(bytes);
        const shared = parsed.imports.some((i) => i.kind === 'memory' || i.kind === 'table' || (i.kind === 'global' && i.global!.mutable));
        if (parsed.start === null || !shared) {
          try {
            prepared.instantiate(imports()).release();
          } catch {
            // the same error comes again below
          }
        }
      }
      lease = prepared.instantiate(imports());
    } else {
      lease = engine.prepare(bytes).instantiate(imports());
    }
    leases.push(lease);
    reach(lease.instance.exports);
    return lease.instance.exports;
  };
  const act = (a: Action): unknown[] => {
    const target = a.module ? named.get(a.module) : current;
    if (!target) throw new Error(`no module for action at ${a.field}`);
    const v = target[a.field];
    if (a.type === 'get') return [(v as WebAssembly.Global).value];
    const r = (v as (...args: unknown[]) => unknown)(...(a.args ?? []).map(toJs));
    return r === undefined ? [] : Array.isArray(r) ? r : [r];
  };

  for (const c of json.commands) {
    let outcome = '';
    let verdict: CommandResult['verdict'] = 'passed';
    const text = c.module_type === 'text' || c.filename?.endsWith('.wat');
    try {
      switch (c.type) {
        case 'module': {
          if (text) {
            verdict = 'skipped';
            outcome = 'skipped: text module';
            break;
          }
          current = instantiate(read(c.filename!));
          if (c.name) named.set(c.name, current);
          outcome = 'instantiated';
          break;
        }
        case 'register': {
          const ex = c.name ? named.get(c.name) : current;
          if (!ex) throw new Error('register: no module');
          registry[c.as!] = ex;
          outcome = 'registered';
          break;
        }
        case 'action':
          outcome = `returned ${act(c.action!).map((v, i) => show(c.expected?.[i]?.type, v)).join(',')}`;
          break;
        case 'assert_return': {
          const got = act(c.action!).map((v, i) => show(c.expected?.[i]?.type, v));
          outcome = `returned ${got.join(',')}`;
          const want = (c.expected ?? []).map(expectedShow);
          if (got.join(',') !== want.join(',')) verdict = 'failed';
          break;
        }
        case 'assert_trap':
        case 'assert_exhaustion': {
          if (c.action) {
            act(c.action);
          } else {
            instantiate(read(c.filename!));
          }
          outcome = 'no trap';
          verdict = 'failed';
          break;
        }
        case 'assert_invalid':
        case 'assert_malformed': {
          if (text) {
            verdict = 'skipped';
            outcome = 'skipped: text module';
            break;
          }
          compile(read(c.filename!));
          outcome = 'compiled';
          verdict = 'failed';
          break;
        }
        case 'assert_unlinkable':
        case 'assert_uninstantiable': {
          instantiate(read(c.filename!));
          outcome = 'instantiated';
          verdict = 'failed';
          break;
        }
        default:
          verdict = 'skipped';
          outcome = `skipped: ${c.type}`;
      }
    } catch (e) {
      outcome = describe(e);
      const ok =
        ((c.type === 'assert_trap' || c.type === 'assert_uninstantiable') && e instanceof WebAssembly.RuntimeError) ||
        (c.type === 'assert_exhaustion' && e instanceof RangeError) ||
        ((c.type === 'assert_invalid' || c.type === 'assert_malformed') && e instanceof WebAssembly.CompileError) ||
        (c.type === 'assert_unlinkable' && (e instanceof WebAssembly.LinkError || e instanceof TypeError));
      verdict = ok ? 'passed' : 'failed';
    }
    results.push({ line: c.line, type: c.type, outcome, verdict });
  }
  // The only reads of memory besides the script's own: at the end, before any lease is released.
  const digests = memories.map((m) => createHash('sha256').update(new Uint8Array(m.buffer)).digest('hex').slice(0, 16));
  results.push({ line: 0, type: 'memories at the end', outcome: digests.join(' '), verdict: 'passed' });
  for (const l of leases) l.release();
  const reused = engine?.stats().instancesReused;
  engine?.close();
  return reuse ? { script, mode, results, reused, reusePrepared, reuseEligible } : { script, mode, results };
}
