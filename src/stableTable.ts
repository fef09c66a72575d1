// A hash table whose arrays are made once and only ever grow: for the query path's tables of things
// in flight, which a Map made into most of what a query left to V8's old generation (issue 22).
//
// Why not a Map: a Map replaces its hash table as entries come and go (it grows, shrinks below a
// quarter full, and rehashes away deleted entries), and each replaced table keeps a link to the one
// that replaced it. A table of things in flight goes through a new hash table every few queries. Once
// one had reached the old generation it was garbage that still counted as a root for the young one
// until the next full GC (V8's remembered set): the next table, the keys and values of everything in
// flight, and through them the queries themselves, all survived their scavenges and were promoted.
// Two such Maps were found, by taking the query path apart under --trace-gc-nvp and a sampling heap
// profile of what the scavenges promoted:
// - the cache stage's coalescing map (stages/cache.ts), keyed by cache key: under a saturating
//   uncached load, 1.2 MB promoted a scavenge (~600 bytes a miss), a mean scavenge pause of 3.7 ms,
//   and the old space swinging by ~60 MB between full GCs; with this table, ~20 KB and 1.1 ms;
// - each upstream UDP socket's map of query IDs in flight (upstream/udp.ts; now one table a pool): at a steady 10k QPS,
//   ~140 bytes a miss, a mark-compact every ~1.3 s, each a ~50 ms hiccup on one core (bench/RESULTS.md
//   "Issue 22: the maps of things in flight"). The TCP and DoT connections keep theirs in one too.
//
// Here the slots are plain arrays that stay put: a slot written with a young key and value is emptied
// when its entry leaves, so nothing old is left pointing at a finished query. Open addressing with
// linear probing, load at most 1/2, deletion by backward shift (no tombstones), as cache/keyIndex.ts.
// Keys a client chooses must come with a seeded hash (cache/keyIndex.ts hashKey), so that no one can
// line them up into one long probe run; the tables here hold at most the exchanges in flight.
// A key is compared with ===, or also with `equal` when two keys are equal without being the same value
// (the cache stage keys its table by the query, whose question is what must match).

/** No two distinct values are equal: === alone decides. */
const onlyIdentical = (): boolean => false;

export class StableTable<K, V> {
  private keys: (K | undefined)[];
  private vals: (V | undefined)[];
  private hashes: Uint32Array;
  private mask: number;
  private count = 0;

  constructor(
    /** A 32-bit hash of a key (taken as unsigned); its low bits pick the slot, so they must be well mixed. */
    private readonly hash: (key: K) => number,
    /** Slots to start with (twice the entries expected at once); doubled whenever the table is half full. */
    slots = 16,
    /** Whether two keys that are not === are the same key; only asked when their hashes match. */
    private readonly equal: (a: K, b: K) => boolean = onlyIdentical,
  ) {
    let cap = 2;
    while (cap < slots) cap <<= 1;
    this.keys = new Array<K | undefined>(cap).fill(undefined);
    this.vals = new Array<V | undefined>(cap).fill(undefined);
    this.hashes = new Uint32Array(cap);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.count;
  }

  // `h` in each of these: the key's hash, when the caller has it already (it must be this.hash(key)).

  get(key: K, h = this.hash(key)): V | undefined {
    const i = this.slotOf(key, h >>> 0);
    return i < 0 ? undefined : this.vals[i];
  }

  has(key: K, h = this.hash(key)): boolean {
    return this.slotOf(key, h >>> 0) >= 0;
  }

  /** Adds `key`, or replaces its value. */
  set(key: K, value: V, hash = this.hash(key)): void {
    const h = hash >>> 0;
    const found = this.slotOf(key, h);
    if (found >= 0) {
      this.vals[found] = value;
      return;
    }
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    let i = h & this.mask;
    while (this.keys[i] !== undefined) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.vals[i] = value;
    this.hashes[i] = h;
    this.count++;
  }

  delete(key: K, h = this.hash(key)): boolean {
    let hole = this.slotOf(key, h >>> 0);
    if (hole < 0) return false;
    this.count--;
    // Backward shift: each later entry of the run that may sit in the hole moves into it, so a
    // lookup never meets an empty slot before its key.
    const { keys, vals, hashes, mask } = this;
    for (let j = (hole + 1) & mask; keys[j] !== undefined; j = (j + 1) & mask) {
      const home = hashes[j]! & mask;
      // Whether `home` lies cyclically in (hole, j]: then the entry at j must stay where it is.
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      keys[hole] = keys[j];
      vals[hole] = vals[j];
      hashes[hole] = hashes[j]!;
      hole = j;
    }
    keys[hole] = undefined;
    vals[hole] = undefined;
    return true;
  }

  clear(): void {
    this.keys.fill(undefined);
    this.vals.fill(undefined);
    this.count = 0;
  }

  /** The values, in no particular order (a copy: the caller may delete while it goes through them). */
  values(): V[] {
    const out: V[] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== undefined) out.push(this.vals[i]!);
    return out;
  }

  private slotOf(key: K, h: number): number {
    const { keys, hashes, mask } = this;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === undefined) return -1;
      if (hashes[i] === h && (k === key || this.equal(k, key))) return i;
    }
  }

  /** Twice the slots; the old arrays are left to the GC (this happens a handful of times in a process's life). */
  private grow(): void {
    const { keys, vals, hashes } = this;
    const cap = keys.length * 2;
    this.keys = new Array<K | undefined>(cap).fill(undefined);
    this.vals = new Array<V | undefined>(cap).fill(undefined);
    this.hashes = new Uint32Array(cap);
    this.mask = cap - 1;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (k === undefined) continue;
      let j = hashes[i]! & this.mask;
      while (this.keys[j] !== undefined) j = (j + 1) & this.mask;
      this.keys[j] = k;
      this.vals[j] = vals[i];
      this.hashes[j] = hashes[i]!;
    }
    // The old arrays go now: emptied, they cannot keep anything young alive from the old generation.
    keys.fill(undefined);
    vals.fill(undefined);
  }
}
