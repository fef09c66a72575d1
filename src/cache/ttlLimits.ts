// The TTL limits of cache.minTtl / maxTtl / maxNegativeTtl, applied to every
// record that leaves sinkhole: a fresh answer gets the same TTLs as its cached
// copy would (docs/design.md §2 "Cache bytes, patch on the way out"). Without this,
// a TTL of 2147483647 reached the client on the first answer and only the
// cached copies were capped.
import { RCODE } from '../dns/constants.js';
import type { ScannedReply } from '../dns/message.js';
import type { CacheLimits } from './replyCache.js';

/**
 * The most each record of this reply may say, in seconds: maxTtl, and for a
 * negative answer (RFC 2308 §5) also its SOA-derived TTL and maxNegativeTtl.
 */
export function ttlCap(scan: ScannedReply, limits: CacheLimits): number {
  const positive = scan.rcode === RCODE.NOERROR && scan.answers > 0;
  const negative = !positive && (scan.rcode === RCODE.NXDOMAIN || scan.rcode === RCODE.NOERROR) && scan.negativeTtl !== undefined;
  return negative ? Math.min(scan.negativeTtl!, limits.maxNegativeTtl, limits.maxTtl) : limits.maxTtl;
}

/**
 * Rewrites every TTL of `wire` (OPT excluded) within the limits. The scan has
 * already read a TTL with the top bit set as 0 (RFC 2181 §8).
 */
export function clampTtls(wire: Buffer, scan: ScannedReply, limits: CacheLimits): void {
  const cap = ttlCap(scan, limits);
  for (let i = 0; i < scan.ttlOffsets.length; i++) {
    wire.writeUInt32BE(Math.min(Math.max(scan.ttls[i]!, limits.minTtl), cap), scan.ttlOffsets[i]!);
  }
}
