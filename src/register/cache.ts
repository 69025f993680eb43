/**
 * A bounded, content-addressed cache of modules: bytes -> { original,
 * prepared }.
 *
 *   const cache = new ContentCache();
 *   let entry = cache.get(bytes);              // null when unseen (or evicted)
 *   entry ??= cache.add(copyOf(bytes), module); // `module`: what V8 compiled from them
 *   entry.prepared ??= ...;                    // a PreparedModule of the same bytes
 *
 * Lookup is exact: a cheap fingerprint (the length and about 700 sampled
 * bytes) finds candidates and a full byte comparison (memcmp) confirms one,
 * so no hash collision can hand out the wrong module. The fingerprint runs
 * on the hook's path of a program's first instantiation, while its code is
 * still cold (interpreted: about 40 µs); for a 10 MiB module the comparison
 * takes about a millisecond, and a cryptographic hash of the same bytes
 * about 10 ms here. Callers that also need the fingerprint compute it once
 * and pass it (`get(bytes, key)`, `add(bytes, module, key)`).
 *
 * Bounded by entries and by the bytes they keep; the least recently used
 * entry goes first. An evicted entry is only forgotten by the cache: whoever
 * still holds it (the register hook maps each WebAssembly.Module it handed
 * out to its entry) keeps using it, and it is collected with the last of
 * them. Not thread-safe and not shared between threads: each thread has
 * its own (the images behind prepared modules are per thread too).
 */
import { Buffer } from 'node:buffer';
import type { PreparedModule } from '../prepared.js';

export interface ContentEntry {
  /** fingerprint(bytes). */
  readonly key: string;
  /** The module's bytes: the cache's own copy, never changed. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /**
   * A WebAssembly.Module V8 compiled from exactly these bytes (the first
   * one seen). Kept so that V8 recognises the bytes when they are compiled
   * again (V8 shares compiled code between modules of equal bytes while one
   * of them lives).
   */
  readonly original: WebAssembly.Module;
  /** The prepared form of these bytes, once made; null until then (or when it cannot be made). */
  prepared: PreparedModule | null;
}

export interface ContentCacheOptions {
  /** Entries kept. Default 64. */
  maxEntries?: number;
  /** Bytes of module kept, over all entries. Default 512 MiB. */
  maxBytes?: number;
}

const SAMPLES = 512;
const TAIL = 192;

/** The length and a sample of the bytes, folded with FNV-1a. Not a content hash: lookups compare bytes. */
export function fingerprint(bytes: Uint8Array): string {
  const n = bytes.length;
  let h = 0x811c9dc5;
  const step = n > SAMPLES ? Math.floor(n / SAMPLES) : 1;
  for (let i = 0; i < n; i += step) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  // The tail in full: appended sections (names, producers) often differ there.
  for (let i = Math.max(0, n - TAIL); i < n; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return `${n}:${(h >>> 0).toString(36)}`;
}

const view = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

export class ContentCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** Entries by fingerprint; more than one only when fingerprints collide. */
  readonly #byKey = new Map<string, ContentEntry[]>();
  /** Every entry, least recently used first. */
  readonly #lru = new Set<ContentEntry>();
  #bytes = 0;

  constructor(options: ContentCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 64;
    this.maxBytes = options.maxBytes ?? 512 * 1024 * 1024;
  }

  /** Entries held. */
  get size(): number {
    return this.#lru.size;
  }

  /** Bytes of module held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The entry whose bytes equal `bytes` (whose fingerprint is `key`), or null. Marks it most recently used. */
  get(bytes: Uint8Array, key: string = fingerprint(bytes)): ContentEntry | null {
    const list = this.#byKey.get(key);
    if (!list) return null;
    const b = view(bytes);
    for (const entry of list) {
      if (view(entry.bytes).equals(b)) {
        this.#lru.delete(entry);
        this.#lru.add(entry);
        return entry;
      }
    }
    return null;
  }

  /**
   * Adds an entry for `bytes` (which the cache keeps: pass a copy nobody
   * else writes to) and `original`, compiled from them. If an entry for the
   * same bytes exists, returns it instead. `key`: fingerprint(bytes).
   */
  add(bytes: Uint8Array<ArrayBuffer>, original: WebAssembly.Module, key: string = fingerprint(bytes)): ContentEntry {
    const found = this.get(bytes, key);
    if (found) return found;
    const entry: ContentEntry = { key, bytes, original, prepared: null };
    const list = this.#byKey.get(key);
    if (list) list.push(entry);
    else this.#byKey.set(key, [entry]);
    this.#lru.add(entry);
    this.#bytes += bytes.length;
    this.#evict();
    return entry;
  }

  /** Forgets every entry (their holders keep them). */
  clear(): void {
    this.#byKey.clear();
    this.#lru.clear();
    this.#bytes = 0;
  }

  #evict(): void {
    while (this.#lru.size > 1 && (this.#lru.size > this.maxEntries || this.#bytes > this.maxBytes)) {
      const oldest = this.#lru.values().next().value as ContentEntry;
      this.#lru.delete(oldest);
      this.#bytes -= oldest.bytes.length;
      const key = oldest.key;
      const list = this.#byKey.get(key)!;
      const rest = list.filter((e) => e !== oldest);
      if (rest.length > 0) this.#byKey.set(key, rest);
      else this.#byKey.delete(key);
    }
  }
}
