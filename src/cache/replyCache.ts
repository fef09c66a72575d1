// The answer cache: upstream replies kept as wire bytes with the offsets of
// their TTL fields. A hit is one map lookup and a patched copy: the client's
// ID and question case written in, every TTL lowered by the entry's age.
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
}

interface Entry {
  wire: Buffer;
  ttlOffsets: number[];
  /** The TTLs as stored (already clamped), in seconds. */
  ttls: number[];
  storedAt: number;
  expiresAt: number;
  targets: readonly string[];
}

export interface CacheHit {
  wire: Buffer;
  targets: readonly string[];
  ttlOffsets: readonly number[];
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
 * A buffer that owns exactly its bytes. Buffer.from() of a small buffer is a
 * slice of a shared 8 KiB pool, and one long-lived slice keeps the whole slab
 * alive: with LRU churn that cost ~1.3 KB per entry instead of ~100 bytes.
 */
function ownCopy(b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  b.copy(out);
  return out;
}

/**
 * A copy of a reply shared by several clients (a cache entry, a coalesced
 * answer), with this client's ID and its question as it wrote it (0x20 case,
 * RFC 4343: same name, same length).
 */
export function copyForClient(q: Query, shared: Buffer): Buffer {
  const wire = Buffer.from(shared);
  wire.writeUInt16BE(q.id, 0);
  if (wire.length >= q.qend) q.buf.copy(wire, 12, 12, q.qend);
  return wire;
}

export class ReplyCache {
  private readonly lru: LRUCache<string, Entry> | undefined;

  constructor(
    private readonly limits: CacheLimits,
    private readonly now: () => number = Date.now,
  ) {
    // Expiry is checked against our own clock on each get (testable with a fake one);
    // lru-cache only bounds the entry count (its ttl: 0 would mean "forever", PACKAGES.md §2).
    this.lru = limits.maxEntries > 0 ? new LRUCache<string, Entry>({ max: limits.maxEntries }) : undefined;
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }

  get(key: string, q: Query): CacheHit | undefined {
    const e = this.lru?.get(key);
    if (!e) return undefined;
    const now = this.now();
    if (now >= e.expiresAt) {
      this.lru!.delete(key);
      return undefined;
    }
    const age = Math.floor((now - e.storedAt) / 1000);
    const wire = copyForClient(q, e.wire);
    for (let i = 0; i < e.ttlOffsets.length; i++) wire.writeUInt32BE(Math.max(0, e.ttls[i]! - age), e.ttlOffsets[i]!);
    return { wire, targets: e.targets, ttlOffsets: e.ttlOffsets };
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
    const ttls = scan.ttls.map((t) => Math.min(Math.max(t, minTtl), cap));
    const now = this.now();
    this.lru.set(key, { wire: ownCopy(reply), ttlOffsets: scan.ttlOffsets, ttls, storedAt: now, expiresAt: now + ttl * 1000, targets: scan.targets });
    return ttl;
  }

  clear(): void {
    this.lru?.clear();
  }
}
