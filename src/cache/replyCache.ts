// The answer cache: upstream replies kept as wire bytes with the offsets of
// their TTL fields. A hit is one map lookup and one copy: the client's ID and
// question case written in, every TTL lowered by the entry's age. The lookup
// hashes and compares the key where it stands in the query (name, type, class,
// flags): a hit makes no key string (issue 22; cacheKey below is the same key
// as a string, for the cache stage's tables of misses).
//
// An entry is no JS object: its bytes (the reply, then its TTL offsets as
// big-endian 16-bit numbers, then its key) sit in a slot of the off-heap slab
// (slab.ts), its times and lengths in the slab's typed arrays, and the index
// (keyIndex.ts, typed arrays too) maps the key to the slot's number. Under
// cache churn the GC then has almost nothing to copy, mark or promote
// (bench/RESULTS.md "Memory", "Issue 22").
import { hashNameKey, KeyIndex } from './keyIndex.js';
import { Slab } from './slab.js';
import { RCODE } from '../dns/constants.js';
import type { ScannedReply } from '../dns/message.js';
import type { Query } from '../dns/query.js';

export interface CacheLimits {
  maxEntries: number;
  /** Seconds. */
  minTtl: number;
  maxTtl: number;
  maxNegativeTtl: number;
  /** ms an expired entry is kept for getStale() (serve-stale's maxStale); 0 drops it at expiry. */
  keepExpiredMs?: number;
}

/** The cache's clock: tenths of a second since the cache was made, a small integer for ~6.8 years. */
const TICK_MS = 100;
/** A hit moves its entry to the front of the LRU at most this often (ticks): a hot entry stays hot, at a fraction of the cost. */
const TOUCH_EVERY = 10;

export interface CacheHit {
  wire: Buffer;
  targets: readonly string[] | undefined;
  /** The hit fell in the last 10 % of the entry's original TTL: time to prefetch (Unbound's rule). */
  refreshDue?: boolean;
}

/**
 * Key: lower-cased name, type, class, and the EDNS, DO, CD and RD bits. EDNS
 * is in the key because a reply carrying OPT must not go to a client that
 * sent none (RFC 6891 §7); DO because DNSSEC records are only for clients that
 * ask (RFC 3225 §3); RD because an RD=0 reply may be a referral, not an answer.
 */
export function cacheKey(q: Query): string {
  // One flat string, written byte by byte: a template literal made a chain of six cons strings per
  // key, ~300 bytes of heap for each of 100k entries (bench/RESULTS.md "Memory"). The name is
  // followed by a fixed 5-byte tail (type, class, flags), so no two questions share a key.
  return keyScratch.toString('latin1', 0, writeKey(q, keyScratch, 0));
}

/** Writes cacheKey(q)'s bytes into `buf` at `at` (keyScratch, or an entry's slot); returns how many. */
function writeKey(q: Query, buf: Buffer, at: number): number {
  const n = buf.write(q.qname, at, 'latin1');
  buf.writeUInt32BE(keyWord(q), at + n);
  buf[at + n + 4] = keyFlags(q);
  return n + KEY_TAIL;
}

/** The key's tail after the name: its type and class as one 32-bit word, then one byte of flags. */
const KEY_TAIL = 5;
function keyWord(q: Query): number {
  return ((q.qtype << 16) | q.qclass) >>> 0;
}
function keyFlags(q: Query): number {
  return (q.edns ? 1 : 0) | (q.dnssecOk ? 2 : 0) | (q.cd ? 4 : 0) | (q.rd ? 8 : 0);
}
/**
 * FNV-1a over cacheKey(q)'s bytes (the value of hashKey(cacheKey(q))), without making the string. The
 * cache stage takes it once per query, for this cache's lookup, its insert and the table of misses in flight.
 */
export function hashQuestion(q: Query): number {
  return hashNameKey(q.qname, keyWord(q), keyFlags(q));
}

/** Whether two queries have the same cache key (cacheKey(a) === cacheKey(b)), without making either string. */
export function sameQuestion(a: Query, b: Query): boolean {
  return a.qname === b.qname && keyWord(a) === keyWord(b) && keyFlags(a) === keyFlags(b);
}

/** A name is at most 255 octets as text with escapes (query.ts readQuestionName: 2 characters per escaped byte). */
const keyScratch = Buffer.allocUnsafe(1024);

/**
 * A copy of a reply shared by several clients (a coalesced answer), with this
 * client's ID and its question as it wrote it (0x20 case, RFC 4343: same
 * name, same length).
 */
export function copyForClient(q: Query, shared: Buffer): Buffer {
  const wire = Buffer.allocUnsafe(shared.length);
  shared.copy(wire);
  wire.writeUInt16BE(q.id, 0);
  if (wire.length >= q.qend) q.buf.copy(wire, 12, 12, q.qend);
  return wire;
}

export class ReplyCache {
  /** Key → slot id (slab.ts), least recently used first out. */
  private readonly lru: KeyIndex<Query> | undefined;
  private readonly slab = new Slab();
  /** CNAME/DNAME/HTTPS targets (RFC 1034 §3.6.2) of the few entries that have any, by slot id. */
  private readonly targets = new Map<number, readonly string[]>();
  private readonly epoch: number;
  /** serve-stale's maxStale, in ticks. */
  private readonly keepExpired: number;

  constructor(
    private readonly limits: CacheLimits,
    private readonly now: () => number = Date.now,
  ) {
    // Expiry is checked against our own clock on each get (testable with a fake one);
    // the index only bounds the entry count.
    // An entry that leaves (evicted, deleted, replaced, cleared) gives its slot back.
    this.lru =
      limits.maxEntries > 0
        ? new KeyIndex<Query>(
            limits.maxEntries,
            hashQuestion,
            (id, q) => this.holds(id, q),
            (id) => {
              this.slab.free(id);
              if (this.targets.size) this.targets.delete(id);
            },
          )
        : undefined;
    this.epoch = now();
    this.keepExpired = Math.ceil((limits.keepExpiredMs ?? 0) / TICK_MS);
  }

  private tick(): number {
    return Math.floor((this.now() - this.epoch) / TICK_MS);
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }

  /** Bytes of slots the cache holds off the V8 heap. */
  get slabBytes(): number {
    return this.slab.bytes;
  }

  /** The answer to `q` (its key: cacheKey; `h`: hashQuestion(q)), fresh, for this client. */
  get(q: Query, h = hashQuestion(q)): CacheHit | undefined {
    const lru = this.lru;
    // peek: no LRU bookkeeping on most hits; the entry is moved to the front at most once a second.
    const id = lru ? lru.peek(q, h) : -1;
    if (id === -1) return undefined;
    const c = this.slab.classOf(id);
    const i = Slab.index(id);
    const now = this.tick();
    const expiresAt = c.expiresAt[i]!;
    if (now >= expiresAt) {
      // Kept for serve-stale until maxStale has passed (getStale below).
      if (now >= expiresAt + this.keepExpired) lru!.delete(q);
      return undefined;
    }
    if (now - c.touchedAt[i]! >= TOUCH_EVERY) {
      c.touchedAt[i] = now;
      lru!.touch(q);
    }
    const storedAt = c.storedAt[i]!;
    const age = Math.floor((now - storedAt) / (1000 / TICK_MS));
    const wire = this.copy(id, q);
    if (age > 0) {
      const page = this.slab.page(id);
      const at = this.slab.offset(id) + c.length[i]!;
      for (let k = 0; k < c.ttlCount[i]!; k++) {
        const off = page.readUInt16BE(at + 2 * k);
        const ttl = wire.readUInt32BE(off) - age;
        wire.writeUInt32BE(ttl > 0 ? ttl : 0, off);
      }
    }
    return { wire, targets: this.targets.size ? this.targets.get(id) : undefined, refreshDue: (expiresAt - now) * 10 <= expiresAt - storedAt };
  }

  /**
   * Serve-stale (RFC 8767 §4): an entry that expired less than keepExpiredMs
   * ago, for this client, with every TTL set to `ttl` seconds. Only upstream
   * answers are ever stored, so this can never return a SERVFAIL.
   */
  getStale(q: Query, ttl: number, h = hashQuestion(q)): CacheHit | undefined {
    const id = this.lru ? this.lru.peek(q, h) : -1;
    if (id === -1) return undefined;
    const c = this.slab.classOf(id);
    const i = Slab.index(id);
    const now = this.tick();
    if (now < c.expiresAt[i]! || now >= c.expiresAt[i]! + this.keepExpired) return undefined;
    const wire = this.copy(id, q);
    const page = this.slab.page(id);
    const at = this.slab.offset(id) + c.length[i]!;
    for (let k = 0; k < c.ttlCount[i]!; k++) wire.writeUInt32BE(ttl, page.readUInt16BE(at + 2 * k));
    return { wire, targets: this.targets.get(id) };
  }

  /** The stored reply for this client: its ID, and its question as it wrote it (0x20 case, RFC 4343). */
  private copy(id: number, q: Query): Buffer {
    const n = this.slab.classOf(id).length[Slab.index(id)]!;
    const from = this.slab.offset(id);
    const wire = Buffer.allocUnsafe(n);
    this.slab.page(id).copy(wire, 0, from, from + n);
    wire.writeUInt16BE(q.id, 0);
    if (n >= q.qend) q.buf.copy(wire, 12, 12, q.qend);
    return wire;
  }

  /** Stores a reply to `q` (`h`: hashQuestion(q)) if it may be cached; returns the TTL used, or 0 when it was not stored. */
  set(q: Query, reply: Buffer, scan: ScannedReply, h = hashQuestion(q)): number {
    if (!this.lru || scan.truncated) return 0;
    const { minTtl, maxTtl, maxNegativeTtl } = this.limits;
    let ttl: number;
    let negative = false;
    if (scan.rcode === RCODE.NOERROR && scan.answers > 0) {
      ttl = scan.minAnswerTtl ?? 0;
      if (ttl === 0) return 0; // TTL 0 means "use once, never cache" (RFC 1035 §3.2.1)
      ttl = Math.min(Math.max(ttl, minTtl), maxTtl);
    } else if (scan.rcode === RCODE.NXDOMAIN || scan.rcode === RCODE.NOERROR) {
      // RFC 2308 §5: negative answers are cached for min(SOA TTL, SOA MINIMUM); without an SOA, not at all.
      if (!scan.negativeTtl) return 0;
      negative = true;
      ttl = Math.min(scan.negativeTtl, maxNegativeTtl, maxTtl);
      if (ttl === 0) return 0;
    } else {
      return 0; // SERVFAIL, REFUSED, FORMERR...: never cached
    }
    const count = scan.ttlOffsets.length;
    // The key is kept after the TTL offsets, for the index's comparisons (holds).
    const keyLength = q.qname.length + KEY_TAIL;
    const id = this.slab.alloc(reply.length + 2 * count + keyLength);
    if (id === -1) return 0; // bigger than any slot (a 64 KiB answer with thousands of records): not cached
    const c = this.slab.classOf(id);
    const i = Slab.index(id);
    const page = this.slab.page(id);
    const at = this.slab.offset(id);
    reply.copy(page, at);
    // Each record keeps its own TTL within the limits; a negative answer's SOA never outlives the entry.
    const cap = negative ? ttl : maxTtl;
    for (let k = 0; k < count; k++) {
      const off = scan.ttlOffsets[k]!;
      page.writeUInt32BE(Math.min(Math.max(scan.ttls[k]!, minTtl), cap), at + off);
      page.writeUInt16BE(off, at + reply.length + 2 * k);
    }
    writeKey(q, page, at + reply.length + 2 * count);
    const now = this.tick();
    c.length[i] = reply.length;
    c.ttlCount[i] = count;
    c.keyLength[i] = keyLength;
    c.storedAt[i] = now;
    c.expiresAt[i] = now + ttl * (1000 / TICK_MS);
    c.touchedAt[i] = now;
    // set() of a key already there disposes of its old slot (KeyIndex's dispose).
    this.lru.set(q, id, h);
    if (scan.targets.length) this.targets.set(id, scan.targets);
    return ttl;
  }

  clear(): void {
    this.lru?.clear();
  }

  /** Whether slot `id` holds the entry for `q`: its key's bytes (cacheKey's, as latin1) follow the TTL offsets. */
  private holds(id: number, q: Query): boolean {
    const c = this.slab.classOf(id);
    const i = Slab.index(id);
    const name = q.qname;
    const n = name.length;
    if (c.keyLength[i] !== n + KEY_TAIL) return false;
    const page = this.slab.page(id);
    const at = this.slab.offset(id) + c.length[i]! + 2 * c.ttlCount[i]!;
    for (let k = 0; k < n; k++) if (page[at + k] !== (name.charCodeAt(k) & 0xff)) return false;
    return page.readUInt32BE(at + n) === keyWord(q) && page[at + n + 4] === keyFlags(q);
  }
}
