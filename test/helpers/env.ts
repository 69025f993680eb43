import { createHash } from 'node:crypto';
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
