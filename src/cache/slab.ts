// Where the answer cache keeps its bytes: fixed-size slots in size classes
// (128 B, 160 B, 192 B, 224 B, 256 B, 320 B, ... 128 KiB), carved out of ArrayBuffers the garbage
// collector never traces. A cached reply is then no JS object at all: the
// cache's map holds a small integer (the slot), and the slot's times and
// lengths live in typed arrays. 100k entries cost ~25 MB of slots and next to
// nothing for the GC: with one object per entry, every young-generation GC
// copied each new entry once more, and the old generation grew to hundreds of
// MB between full GCs under cache churn (bench/RESULTS.md "Memory").
//
// A slot is reused as soon as its entry leaves the cache; pages are kept, so
// the slab's size is bounded by what the cache ever held at once.

/**
 * Slot sizes: 128 B to 128 KiB, four classes per power of two (×1.25, ×1.2, ×1.17, ×1.14), so a slot
 * wastes at most a fifth of itself. With the key stored in the slot (issue 22) a typical answer (NSD's
 * 93 B reply, 6 B of TTL offsets, a 35 B key) needs ~134 B: a 160 B slot, where two classes per power
 * of two gave it 192 B, and one gave it 256 B. 100k such entries: 17 MB of slot pages instead of 20
 * (bench/RESULTS.md "Finer slots, and two malloc arenas tried"). The largest fits a 64 KiB TCP answer, its TTL
 * offsets and its key.
 */
const SLOT_SIZES: readonly number[] = [
  ...Array.from({ length: 40 }, (_, i) => (128 << Math.floor(i / 4)) + (32 << Math.floor(i / 4)) * (i % 4)),
  128 << 10,
];
const CLASSES = SLOT_SIZES.length;
/** Bytes of slots a page holds (large classes: at least 8 slots a page). */
const PAGE_BYTES = 1 << 20;
/** A slot id: class in the top bits, slot index below (a small integer, so the LRU stores no object). */
const INDEX_BITS = 24;

export class SizeClass {
  readonly slotBytes: number;
  readonly perPage: number;
  readonly pages: Buffer[] = [];
  private readonly free: number[] = [];
  private used = 0;
  // Per slot: the entry's metadata (see Slab's accessors).
  length = new Uint32Array(0);
  storedAt = new Int32Array(0);
  expiresAt = new Int32Array(0);
  touchedAt = new Int32Array(0);
  ttlCount = new Uint16Array(0);
  /** Bytes of the entry's key, kept after its TTL offsets (replyCache.ts sameKey). */
  keyLength = new Uint16Array(0);

  constructor(readonly index: number) {
    this.slotBytes = SLOT_SIZES[index]!;
    this.perPage = Math.max(8, Math.floor(PAGE_BYTES / this.slotBytes));
  }

  alloc(): number {
    const free = this.free.pop();
    if (free !== undefined) return free;
    if (this.used === this.pages.length * this.perPage) this.grow();
    return this.used++;
  }

  release(slot: number): void {
    this.free.push(slot);
  }

  private grow(): void {
    // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool.
    this.pages.push(Buffer.allocUnsafeSlow(this.perPage * this.slotBytes));
    const n = this.pages.length * this.perPage;
    const grow = <T extends Uint32Array | Int32Array | Uint16Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.length = grow(this.length, (k) => new Uint32Array(k));
    this.storedAt = grow(this.storedAt, (k) => new Int32Array(k));
    this.expiresAt = grow(this.expiresAt, (k) => new Int32Array(k));
    this.touchedAt = grow(this.touchedAt, (k) => new Int32Array(k));
    this.ttlCount = grow(this.ttlCount, (k) => new Uint16Array(k));
    this.keyLength = grow(this.keyLength, (k) => new Uint16Array(k));
  }

  get bytes(): number {
    return this.pages.length * this.perPage * this.slotBytes;
  }
}

export class Slab {
  private readonly classes = Array.from({ length: CLASSES }, (_, i) => new SizeClass(i));

  /** The largest entry a slot can hold. */
  static readonly MAX_BYTES = SLOT_SIZES[CLASSES - 1]!;

  /** A slot for `bytes` bytes, or -1 when it is bigger than the largest class. */
  alloc(bytes: number): number {
    let c = 0;
    while (c < CLASSES && SLOT_SIZES[c]! < bytes) c++;
    if (c === CLASSES) return -1;
    return (c << INDEX_BITS) | this.classes[c]!.alloc();
  }

  free(id: number): void {
    this.classes[id >>> INDEX_BITS]!.release(id & ((1 << INDEX_BITS) - 1));
  }

  /** The slot's bytes live in page[offset … offset + slot size). */
  page(id: number): Buffer {
    const c = this.classes[id >>> INDEX_BITS]!;
    return c.pages[Math.floor((id & ((1 << INDEX_BITS) - 1)) / c.perPage)]!;
  }

  offset(id: number): number {
    const c = this.classes[id >>> INDEX_BITS]!;
    return ((id & ((1 << INDEX_BITS) - 1)) % c.perPage) * c.slotBytes;
  }

  /** The slot's class: its metadata arrays are indexed by Slab.index(id). */
  classOf(id: number): SizeClass {
    return this.classes[id >>> INDEX_BITS]!;
  }

  static index(id: number): number {
    return id & ((1 << INDEX_BITS) - 1);
  }

  /** Bytes of pages held (the cache's off-heap memory). */
  get bytes(): number {
    return this.classes.reduce((n, c) => n + c.bytes, 0);
  }
}
