// The answer cache: upstream replies kept as wire bytes with the offsets of
// their TTL fields. A hit is one map lookup and one copy: the client's ID and
// question case written in, every TTL lowered by the entry's age.
//
// An entry is kept small because 100k of them live in the heap and every one
// survives young-generation GCs: the reply bytes and the TTL offsets share one
// latin1 string (no ArrayBuffer, no backing store, no arrays), and its times
// are small integers (no boxed doubles). ~260 bytes an entry instead of ~1 KB
// (bench/RESULTS.md "Memory").
import { LRUCache } from 'lru-cache';
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

interface Entry {
  /** The reply as stored (TTLs already clamped), then two chars per TTL offset (big-endian 16-bit). */
  readonly data: string;
  readonly wireLength: number;
  readonly storedAt: number;
  readonly expiresAt: number;
  touchedAt: number;
  /** CNAME/DNAME/HTTPS targets (RFC 1034 §3.6.2), for the blocklist; undefined when there are none. */
  readonly targets: readonly string[] | undefined;
}

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
  return `${q.qname}|${q.qtype}|${q.qclass}|${(q.edns ? 1 : 0) | (q.dnssecOk ? 2 : 0) | (q.cd ? 4 : 0) | (q.rd ? 8 : 0)}`;
}

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
  private readonly lru: LRUCache<string, Entry> | undefined;
  private readonly epoch: number;
  /** serve-stale's maxStale, in ticks. */
  private readonly keepExpired: number;

  constructor(
    private readonly limits: CacheLimits,
    private readonly now: () => number = Date.now,
  ) {
    // Expiry is checked against our own clock on each get (testable with a fake one);
    // lru-cache only bounds the entry count (its ttl: 0 would mean "forever", PACKAGES.md §2).
    this.lru = limits.maxEntries > 0 ? new LRUCache<string, Entry>({ max: limits.maxEntries }) : undefined;
    this.epoch = now();
    this.keepExpired = Math.ceil((limits.keepExpiredMs ?? 0) / TICK_MS);
  }

  private tick(): number {
    return Math.floor((this.now() - this.epoch) / TICK_MS);
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }

  get(key: string, q: Query): CacheHit | undefined {
    const lru = this.lru;
    // peek: no LRU bookkeeping on most hits; the entry is moved to the front at most once a second.
    const e = lru?.peek(key);
    if (!e) return undefined;
    const now = this.tick();
    if (now >= e.expiresAt) {
      // Kept for serve-stale until maxStale has passed (getStale below).
      if (now >= e.expiresAt + this.keepExpired) lru!.delete(key);
      return undefined;
    }
    if (now - e.touchedAt >= TOUCH_EVERY) {
      e.touchedAt = now;
      lru!.get(key);
    }
    const age = Math.floor((now - e.storedAt) / (1000 / TICK_MS));
    const wire = this.copy(e, q);
    if (age > 0) {
      const data = e.data;
      for (let i = e.wireLength; i < data.length; i += 2) {
        const off = (data.charCodeAt(i) << 8) | data.charCodeAt(i + 1);
        const ttl = wire.readUInt32BE(off) - age;
        wire.writeUInt32BE(ttl > 0 ? ttl : 0, off);
      }
    }
    return { wire, targets: e.targets, refreshDue: (e.expiresAt - now) * 10 <= e.expiresAt - e.storedAt };
  }

  /**
   * Serve-stale (RFC 8767 §4): an entry that expired less than keepExpiredMs
   * ago, for this client, with every TTL set to `ttl` seconds. Only upstream
   * answers are ever stored, so this can never return a SERVFAIL.
   */
  getStale(key: string, q: Query, ttl: number): CacheHit | undefined {
    const e = this.lru?.peek(key);
    if (!e) return undefined;
    const now = this.tick();
    if (now < e.expiresAt || now >= e.expiresAt + this.keepExpired) return undefined;
    const wire = this.copy(e, q);
    const data = e.data;
    for (let i = e.wireLength; i < data.length; i += 2) wire.writeUInt32BE(ttl, (data.charCodeAt(i) << 8) | data.charCodeAt(i + 1));
    return { wire, targets: e.targets };
  }

  /** The stored reply for this client: its ID, and its question as it wrote it (0x20 case, RFC 4343). */
  private copy(e: Entry, q: Query): Buffer {
    const n = e.wireLength;
    const wire = Buffer.allocUnsafe(n);
    wire.write(e.data, 0, n, 'latin1');
    wire.writeUInt16BE(q.id, 0);
    if (n >= q.qend) q.buf.copy(wire, 12, 12, q.qend);
    return wire;
  }

  /** Stores a reply if it may be cached; returns the TTL used, or 0 when it was not stored. */
  set(key: string, reply: Buffer, scan: ScannedReply): number {
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
    // Each record keeps its own TTL within the limits; a negative answer's SOA never outlives the entry.
    const cap = negative ? ttl : maxTtl;
    const stored = Buffer.allocUnsafe(reply.length + 2 * scan.ttlOffsets.length);
    reply.copy(stored);
    let at = reply.length;
    for (let i = 0; i < scan.ttlOffsets.length; i++) {
      const off = scan.ttlOffsets[i]!;
      stored.writeUInt32BE(Math.min(Math.max(scan.ttls[i]!, minTtl), cap), off);
      at = stored.writeUInt16BE(off, at);
    }
    const now = this.tick();
    this.lru.set(key, {
      data: stored.toString('latin1'),
      wireLength: reply.length,
      storedAt: now,
      expiresAt: now + ttl * (1000 / TICK_MS),
      touchedAt: now,
      targets: scan.targets.length ? scan.targets : undefined,
    });
    return ttl;
  }

  clear(): void {
    this.lru?.clear();
  }
}
