import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import type { BackendKind, Lease } from '../../src/index.js';
import { unexposedInstance } from '../../src/lease.js';
import { loadBinding, type NativeBinding } from '../../src/native/binding.js';

/** The addon; tests that need it fail (not skip) on Linux when it is missing. */
export function binding(): NativeBinding {
  const load = loadBinding();
  if (!load.binding) throw new Error(`native addon unavailable: ${load.error}`);
  return load.binding;
}

/** Backends to run a suite on: both on Linux, copy elsewhere. */
export const BACKENDS: BackendKind[] = process.platform === 'linux' ? ['native', 'copy'] : ['copy'];

export function digest(memory: WebAssembly.Memory): string {
  return createHash('sha256').update(new Uint8Array(memory.buffer)).digest('hex');
}

export function memoryOf(instance: WebAssembly.Instance, name = 'mem'): WebAssembly.Memory {
  const m = instance.exports[name];
  if (!(m instanceof WebAssembly.Memory)) throw new Error(`export ${name} is not a memory`);
  return m;
}

/**
 * A lease's exported memory read for a test without counting as handed
 * out (lease.exports.mem or lease.instance would retire it at release).
 * Nothing read through it may be used after release().
 */
export function leaseMemory(lease: Lease, name = 'mem'): WebAssembly.Memory {
  return memoryOf(unexposedInstance(lease), name);
}

/**
 * SHA-256 of a lease's exported memory, read without counting as handed
 * out (leaseMemory): lease.memoryBuffer() would retire the memory at
 * release, and the tests that digest tenants test the pooled cycle.
 */
export function leaseDigest(lease: Lease, name = 'mem'): string {
  return digest(leaseMemory(lease, name));
}

/** Exported functions, typed loosely for tests. */
export type Fn = (...args: number[]) => number;
export function fns(exports: WebAssembly.Exports): Record<string, Fn> {
  return exports as unknown as Record<string, Fn>;
}

/** What calling `f` gives: 'ok', or the error's class and message (to compare with native). */
export const outcome = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
};

/**
 * Runs `code`, an ES module, in a child with --expose-gc (for what only a
 * collection shows: FinalizationRegistry callbacks); it prints one line of
 * JSON, returned parsed. Throws, with the child's stderr, unless it exited 0.
 */
export function gcChild(code: string): unknown {
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the child exited with ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown;
}

/** gcChild() code: collects (30 rounds at most) until `engine`'s stats() counts at most `floor` live leases. */
export const collectLeases = (engine = 'engine', floor = 0, rounds = 30): string =>
  `for (let i = 0; i < ${rounds} && ${engine}.stats().liveLeases > ${floor}; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }`;
