// The answer cache's index: key → slot, least recently used first out, on
// typed arrays. It replaced lru-cache (issue 22), whose Map held one JS string
// and one map entry per cached answer: under the uncached workload every miss
// made a key that lived ~5 s (100k entries at 20k QPS), long enough to be
// promoted to V8's old space and die there, so the old space grew to ~80 MB
// for ~30 MB live between full GCs, and hashing each new key string in the
// Map was a third of the cache's CPU (bench/RESULTS.md "Issue 22").
//
// Here an entry is a number: the table is open addressing with linear probing
// (load ≤ 1/2, deletion by backward shift, so no tombstones), the LRU order a
// doubly linked list in two Int32Arrays. The key's bytes are not kept here but
// where the value points (the cache keeps them in the answer's slab slot), and
// `sameKey` compares them, so an entry costs ~20 bytes here and nothing on the
// V8 heap. The key a lookup brings is whatever its owner hashes and compares:
// the reply cache brings the query itself, so a hit makes no key string.
import { randomBytes } from 'node:crypto';

const NONE = -1;

/**
 * The hash's starting value, drawn once per process. The keys are names that clients choose, and
 * with FNV-1a's published offset basis anyone could work out offline names whose hashes collide in
 * the low bits, and line them up into one long probe run in this index or the coalescing table
 * (stableTable.ts): every lookup would then walk it. V8 seeds its own string hashes the same way.
 */
const HASH_SEED = randomBytes(4).readUInt32LE(0);

const FNV_PRIME = 0x01000193;

/** FNV-1a over the key's char codes (latin1: one byte each, cache.ts cacheKey), from a per-process seed. */
export function hashKey(key: string): number {
  let h = (0x811c9dc5 ^ HASH_SEED) >>> 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

/**
 * The same hash over a name's latin1 bytes, then a 32-bit word and one byte, high bytes first: the
 * reply cache's key (replyCache.ts), hashed where it stands in the query instead of made a string.
 */
export function hashNameKey(name: string, word: number, byte: number): number {
  let h = (0x811c9dc5 ^ HASH_SEED) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ (name.charCodeAt(i) & 0xff), FNV_PRIME);
  h = Math.imul(h ^ (word >>> 24), FNV_PRIME);
  h = Math.imul(h ^ ((word >>> 16) & 0xff), FNV_PRIME);
  h = Math.imul(h ^ ((word >>> 8) & 0xff), FNV_PRIME);
  h = Math.imul(h ^ (word & 0xff), FNV_PRIME);
  return Math.imul(h ^ (byte & 0xff), FNV_PRIME) >>> 0;
}

export class KeyIndex<K = string> {
  /** table[i] = entry + 1, 0 = empty. */
  private readonly table: Int32Array;
  private readonly mask: number;
  private readonly value: Int32Array;
  private readonly hash: Uint32Array;
  /** LRU list: prev is towards the most recent, next towards the least recent. */
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = NONE;
  private tail = NONE;
  private readonly free: number[] = [];
  private used = 0;
  private count = 0;

  constructor(
    readonly max: number,
    /** The key's hash (seeded: hashKey, hashNameKey). */
    private readonly hashOf: (key: K) => number,
    /** Whether the key stored with `value` is `key`. */
    private readonly sameKey: (value: number, key: K) => boolean,
    /** A value leaves the index (evicted, replaced, deleted, cleared): its storage can be reused. */
    private readonly dispose: (value: number) => void,
  ) {
    let cap = 1;
    while (cap < max * 2) cap <<= 1;
    this.table = new Int32Array(cap);
    this.mask = cap - 1;
    this.value = new Int32Array(max);
    this.hash = new Uint32Array(max);
    this.prev = new Int32Array(max);
    this.next = new Int32Array(max);
  }

  get size(): number {
    return this.count;
  }

  /** The entry for `key`, or -1; `h` is its hash. */
  private find(key: K, h: number): number {
    const table = this.table;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const v = table[i]!;
      if (v === 0) return NONE;
      const e = v - 1;
      if (this.hash[e] === h && this.sameKey(this.value[e]!, key)) return e;
    }
  }

  /** The value for `key` without changing its place in the LRU order; -1 when absent. `h`: its hash, when the caller has it already. */
  peek(key: K, h = this.hashOf(key)): number {
    const e = this.find(key, h);
    return e === NONE ? NONE : this.value[e]!;
  }

  /** Moves `key` to the front of the LRU order (a hit). */
  touch(key: K): void {
    const e = this.find(key, this.hashOf(key));
    if (e !== NONE && e !== this.head) {
      this.unlink(e);
      this.linkFront(e);
    }
  }

  /** Stores `value` for `key`, in front; the value it replaces, or the least recent entry past `max`, is disposed of. */
  set(key: K, value: number, h = this.hashOf(key)): void {
    let e = this.find(key, h);
    if (e !== NONE) {
      const old = this.value[e]!;
      this.value[e] = value;
      if (e !== this.head) {
        this.unlink(e);
        this.linkFront(e);
      }
      if (old !== value) this.dispose(old);
      return;
    }
    if (this.count === this.max) this.removeEntry(this.tail);
    e = this.free.pop() ?? this.used++;
    this.value[e] = value;
    this.hash[e] = h;
    const table = this.table;
    let i = h & this.mask;
    while (table[i] !== 0) i = (i + 1) & this.mask;
    table[i] = e + 1;
    this.linkFront(e);
    this.count++;
  }

  delete(key: K): void {
    const e = this.find(key, this.hashOf(key));
    if (e !== NONE) this.removeEntry(e);
  }

  clear(): void {
    for (let e = this.head; e !== NONE; e = this.next[e]!) this.dispose(this.value[e]!);
    this.table.fill(0);
    this.head = this.tail = NONE;
    this.free.length = 0;
    this.used = 0;
    this.count = 0;
  }

  private removeEntry(e: number): void {
    const table = this.table;
    const mask = this.mask;
    let i = this.hash[e]! & mask;
    while (table[i] !== e + 1) i = (i + 1) & mask;
    // Backward-shift deletion: pull later members of the probe run into the hole, so a lookup never
    // stops early at it and no tombstone is left.
    for (let j = i; ; ) {
      table[i] = 0;
      for (;;) {
        j = (j + 1) & mask;
        const v = table[j]!;
        if (v === 0) {
          this.unlink(e);
          this.free.push(e);
          this.count--;
          this.dispose(this.value[e]!);
          return;
        }
        const k = this.hash[v - 1]! & mask;
        // The entry at j may move to i only if its home slot k is not cyclically within (i, j].
        if (i <= j ? i < k && k <= j : i < k || k <= j) continue;
        table[i] = v;
        i = j;
        break;
      }
    }
  }

  private linkFront(e: number): void {
    this.prev[e] = NONE;
    this.next[e] = this.head;
    if (this.head !== NONE) this.prev[this.head] = e;
    this.head = e;
    if (this.tail === NONE) this.tail = e;
  }

  private unlink(e: number): void {
    const p = this.prev[e]!;
    const n = this.next[e]!;
    if (p !== NONE) this.next[p] = n;
    else this.head = n;
    if (n !== NONE) this.prev[n] = p;
    else this.tail = p;
  }
}
