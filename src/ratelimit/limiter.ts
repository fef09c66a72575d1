// Token buckets per client key for clients.rateLimit. A client key is the
// address cut to ipv4Prefix / ipv6Prefix bits: one IPv6 host usually holds a
// whole /64 or more (RFC 6177 hands sites a /56), so limiting per /128 would
// be no limit at all. Memory is bounded: past `maxBuckets` the least recently
// seen client's bucket is dropped (it comes back full, which is harmless).
import { LRUCache } from 'lru-cache';
import type { RateLimitConfig } from '../config/config.js';
import { parseAddress } from '../net/cidr.js';

/** Buckets kept at most: a /16 of IPv4 clients fits, at ~100 bytes each. */
export const MAX_BUCKETS = 100_000;
/** IPv6 address → key memo, cleared when full (like ClientDirectory's). */
const MAX_MEMO = 65_536;

export interface Bucket {
  tokens: number;
  /** Clock ms of the last refill. */
  at: number;
  /** Clock ms of the last log line about this client, so a flood logs once a minute, not per query. */
  warnedAt: number;
  /** Over-limit queries since the last one that was answered (settings.slip). */
  slipped: number;
}

export class RateLimiter {
  private readonly buckets: LRUCache<string | number, Bucket>;
  private readonly v6Keys = new Map<string, string>();
  private readonly perMs: number;

  constructor(
    readonly settings: RateLimitConfig,
    maxBuckets = MAX_BUCKETS,
  ) {
    this.buckets = new LRUCache<string | number, Bucket>({ max: maxBuckets });
    this.perMs = settings.qps / 1000;
  }

  get size(): number {
    return this.buckets.size;
  }

  /**
   * Takes one token for this client at `now`; returns its bucket when it has
   * none left (the query is over the limit), undefined when it may go on.
   */
  take(client: string, now: number): Bucket | undefined {
    const key = this.keyOf(client);
    const b = this.buckets.get(key);
    if (!b) {
      this.buckets.set(key, { tokens: this.settings.burst - 1, at: now, warnedAt: -Infinity, slipped: 0 });
      return undefined;
    }
    const elapsed = now - b.at;
    // A clock that steps back refills nothing rather than draining the bucket.
    if (elapsed > 0) {
      b.tokens = Math.min(this.settings.burst, b.tokens + elapsed * this.perMs);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return undefined;
    }
    return b;
  }

  /**
   * The bucket key, without allocating for IPv4: the address string itself
   * for a /32, or the masked address as a number. IPv6 keys are strings,
   * computed once per address and memoised.
   */
  keyOf(client: string): string | number {
    if (client.indexOf(':') === -1) {
      const bits = this.settings.ipv4Prefix;
      if (bits === 32) return client;
      const n = ipv4Number(client);
      return n < 0 ? client : bits === 0 ? 0 : (n >>> (32 - bits)) << (32 - bits) >>> 0;
    }
    let key = this.v6Keys.get(client);
    if (key === undefined) {
      key = ipv6Key(client, this.settings.ipv6Prefix);
      if (this.v6Keys.size >= MAX_MEMO) this.v6Keys.clear();
      this.v6Keys.set(client, key);
    }
    return key;
  }
}

/** A dotted quad as a 32-bit number read from the characters, or -1 when it is not one. */
function ipv4Number(s: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return -1;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 ? n * 256 + part : -1;
}

function ipv6Key(client: string, bits: number): string {
  const a = parseAddress(client);
  if (!a || a.v4) return client;
  const mask = ((1n << BigInt(bits)) - 1n) << BigInt(128 - bits);
  return `${(a.value & mask).toString(16)}/${bits}`;
}
