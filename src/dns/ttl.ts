// TTL rewriting for answers sinkhole lets through under an exception. The
// reply scan (message.ts) already knows where every TTL field is, OPT
// excluded, so clamping is one write per record at known offsets.

/**
 * A copy of `wire` with every TTL at `offsets` lowered to at most `max`
 * seconds. The input is never written: it may be the bytes the cache keeps
 * for every client. RFC 2181 §8 reads a TTL with the top bit set as 0, so
 * such a TTL is written as 0 here too; a lower TTL is kept as it is (a
 * resolver may always cache for less, RFC 1035 §3.2.1).
 */
export function withTtlsAtMost(wire: Buffer, offsets: readonly number[], max: number): Buffer {
  const out = Buffer.from(wire);
  for (const off of offsets) {
    if (off + 4 > out.length) continue;
    const ttl = out.readUInt32BE(off);
    if (ttl > max) out.writeUInt32BE(ttl > 0x7fffffff ? 0 : max, off);
  }
  return out;
}
