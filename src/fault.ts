/**
 * Test-only fault injection on the JavaScript side (the native side has its
 * own, see native/fault.c). Inert unless WASM_COW_FAULT_INJECTION=1 was
 * set when this module loaded.
 */
const enabled = process.env['WASM_COW_FAULT_INJECTION'] === '1';
let memoryAllocationFaults = 0;

/** Make the next `count` memory allocations fail as V8 does when out of address space. */
export function injectMemoryAllocationFaults(count: number): void {
  if (!enabled) throw new Error('fault injection is off; set WASM_COW_FAULT_INJECTION=1 before loading wasm-cow');
  memoryAllocationFaults = count;
}

/** Called before each `new WebAssembly.Memory`; throws when a fault is armed. */
export function takeMemoryAllocationFault(): void {
  if (memoryAllocationFaults > 0) {
    memoryAllocationFaults--;
    throw new RangeError('WebAssembly.Memory(): could not allocate memory (injected fault)');
  }
}
