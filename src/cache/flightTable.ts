// The exchanges in flight, by cache key: the table the cache stage coalesces identical queries with
// (stages/cache.ts). It is a string-keyed hash table whose arrays are made once and only ever grow,
// because a Map here was most of what a cache miss left to V8's old generation (issue 22).
//
// Why not a Map: a Map replaces its hash table as entries come and go (it grows, shrinks below a
// quarter full, and rehashes away deleted entries), and each replaced table keeps a link to the one
// that replaced it. With ~200 misses in flight coming and going, the map went through a new table
// every few queries. Once one had reached the old generation it was garbage that still counted as a
// root for the young one until the next full GC (V8's remembered set): the next table, the keys and
// the promises of every query in flight, and through their reactions the queries themselves, all
// survived their scavenges and were promoted. Measured with --trace-gc-nvp under a saturating
// uncached load: 1.2 MB promoted a scavenge (~600 bytes a miss), a mean scavenge pause of 3.8 ms, and
// the old space swinging by ~60 MB between full GCs; with this table, ~20 KB a scavenge and 1.1 ms
// (bench/RESULTS.md "Issue 22: the coalescing map").
//
// Here the slots are plain arrays that stay put: a slot written with a young key and value is emptied
// when its exchange settles, so nothing old is left pointing at a finished query. Open addressing
// with linear probing, load at most 1/2, deletion by backward shift (no tombstones), as keyIndex.ts.
import { hashKey } from './keyIndex.js';

const INITIAL_SLOTS = 1024;

export class FlightTable<V> {
  private keys: (string | undefined)[];
  private values: (V | undefined)[];
  private hashes: Uint32Array;
  private mask: number;
  private count = 0;

  constructor(slots = INITIAL_SLOTS) {
    let cap = 2;
    while (cap < slots) cap <<= 1;
    this.keys = new Array<string | undefined>(cap).fill(undefined);
    this.values = new Array<V | undefined>(cap).fill(undefined);
    this.hashes = new Uint32Array(cap);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    const i = this.slotOf(key, hashKey(key));
    return i < 0 ? undefined : this.values[i];
  }

  has(key: string): boolean {
    return this.slotOf(key, hashKey(key)) >= 0;
  }

  /** Adds `key`, or replaces its value. */
  set(key: string, value: V): void {
    const h = hashKey(key);
    const found = this.slotOf(key, h);
    if (found >= 0) {
      this.values[found] = value;
      return;
    }
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    let i = h & this.mask;
    while (this.keys[i] !== undefined) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.values[i] = value;
    this.hashes[i] = h;
    this.count++;
  }

  delete(key: string): boolean {
    let hole = this.slotOf(key, hashKey(key));
    if (hole < 0) return false;
    this.count--;
    // Backward shift: each later entry of the run that may sit in the hole moves into it, so a
    // lookup never meets an empty slot before its key.
    const { keys, values, hashes, mask } = this;
    for (let j = (hole + 1) & mask; keys[j] !== undefined; j = (j + 1) & mask) {
      const home = hashes[j]! & mask;
      // Whether `home` lies cyclically in (hole, j]: then the entry at j must stay where it is.
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      keys[hole] = keys[j];
      values[hole] = values[j];
      hashes[hole] = hashes[j]!;
      hole = j;
    }
    keys[hole] = undefined;
    values[hole] = undefined;
    return true;
  }

  private slotOf(key: string, h: number): number {
    const { keys, hashes, mask } = this;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === undefined) return -1;
      if (hashes[i] === h && k === key) return i;
    }
  }

  /** Twice the slots; the old arrays are left to the GC (this happens a handful of times in a process's life). */
  private grow(): void {
    const { keys, values, hashes } = this;
    const cap = keys.length * 2;
    this.keys = new Array<string | undefined>(cap).fill(undefined);
    this.values = new Array<V | undefined>(cap).fill(undefined);
    this.hashes = new Uint32Array(cap);
    this.mask = cap - 1;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (k === undefined) continue;
      let j = hashes[i]! & this.mask;
      while (this.keys[j] !== undefined) j = (j + 1) & this.mask;
      this.keys[j] = k;
      this.values[j] = values[i];
      this.hashes[j] = hashes[i]!;
    }
    // The old arrays go now: emptied, they cannot keep anything young alive from the old generation.
    keys.fill(undefined);
    values.fill(undefined);
  }
}
