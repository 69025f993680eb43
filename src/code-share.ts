/**
 * Whether some module bytes are mostly code: what the drop-in (dropin.ts)
 * and the register hook (register/hook.ts) decide a content's first and
 * second sights by. It imports nothing, so that the hook can use it without
 * loading the library.
 *
 * Bytes mostly of code are worth holding V8's module of at their first
 * sight (it costs no time): while that module lives, V8 compiles equal bytes
 * again synchronously from its own cache of native modules (it compares the
 * bytes itself), so a second sight compiles them with `new
 * WebAssembly.Module(bytes)` for a fraction of a compile and copies them
 * right after. For other bytes V8 compiles little, so a copy would be a large
 * part of the call: they are copied after it returns.
 */

/** Code sections making up at least this share of a module's bytes make it "mostly code". */
export const CODE_SHARE = 0.5;

/**
 * The share of `b` taken by its code section, from a walk of the section
 * headers (id and size of each: a few dozen reads, nothing decoded); 0 for
 * bytes that are not a well-formed sequence of sections (V8 says what is
 * wrong with them).
 */
export function codeShare(b: Uint8Array): number {
  const n = b.length;
  if (n < 8 || b[0] !== 0 || b[1] !== 0x61 || b[2] !== 0x73 || b[3] !== 0x6d) return 0;
  let at = 8;
  let code = 0;
  while (at < n) {
    const id = b[at++]!;
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= n || shift > 28) return 0;
      const x = b[at++]!;
      size += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) break;
    }
    if (size > n - at) return 0;
    if (id === 10) code += size;
    at += size;
  }
  return code / n;
}

/**
 * What the section headers say of a module's memories and data: whether it
 * defines a memory (a memory section with at least one entry) and whether
 * it has data segments (a data section with at least one), from the same
 * walk as codeShare(); null for bytes that are not a well-formed sequence
 * of sections (the reader then says what it can). A module that defines no
 * memory can have images only for memories it imports; one with no data
 * segment has nothing to map at all.
 */
export function memoryShape(b: Uint8Array): { readonly definesMemory: boolean; readonly hasData: boolean } | null {
  const n = b.length;
  if (n < 8 || b[0] !== 0 || b[1] !== 0x61 || b[2] !== 0x73 || b[3] !== 0x6d) return null;
  let at = 8;
  let definesMemory = false;
  let hasData = false;
  while (at < n) {
    const id = b[at++]!;
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= n || shift > 28) return null;
      const x = b[at++]!;
      size += (x & 0x7f) * 2 ** shift;
      if ((x & 0x80) === 0) break;
    }
    if (size > n - at) return null;
    // A section's first byte starts its entry count (a LEB128: zero is the
    // single byte 0; a padded zero, 0x80 0x00, reads as not zero: the
    // answer that costs nothing but a plan).
    if (id === 5 || id === 11) {
      if (size === 0) return null;
      if (b[at] !== 0) {
        if (id === 5) definesMemory = true;
        else hasData = true;
      }
    }
    at += size;
  }
  return { definesMemory, hasData };
}
