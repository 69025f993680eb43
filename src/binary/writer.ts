/** Small helpers to emit WebAssembly binary encodings. */

const encoder = new TextEncoder();

/** Unsigned LEB128 of a non-negative integer below 2^32. */
export function u32(value: number): number[] {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new RangeError(`u32 out of range: ${value}`);
  }
  const out: number[] = [];
  let v = value;
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

/** A name: its UTF-8 length as u32, then its bytes. */
export function name(text: string): number[] {
  const bytes = encoder.encode(text);
  return [...u32(bytes.length), ...bytes];
}

/** Concatenates byte chunks into one Uint8Array. */
export function concat(chunks: readonly (Uint8Array | readonly number[])[]): Uint8Array<ArrayBuffer> {
  let total = 0;
  for (const c of chunks) total += c.length;
  const out = new Uint8Array(total);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

/** Signed LEB128 of a two's complement value of at most 64 bits. */
export function sleb(value: bigint): number[] {
  let v = BigInt.asIntN(64, value);
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}
