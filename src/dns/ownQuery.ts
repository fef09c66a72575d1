// The query sinkhole sends upstream: the client's header and question, and,
// when the client sent EDNS, sinkhole's own OPT (RFC 6891 §6.1.2) — its own
// UDP size, the client's DO bit (RFC 3225), no options. The client's options
// are hop-by-hop (RFC 6891 §6.1.1): its Padding (RFC 7830) and cookies
// (RFC 7873) mean nothing to the upstream, and a client's oversize OPT would
// make the datagram unsendable (EMSGSIZE past 65,507 octets) and the name
// fail for everyone. ECS and the MAC option (stages/relay.ts) are never
// forwarded either. Anything else a query carries after its question is
// dropped with them. Byte-level: one small copy, no re-encode.
import { EDNS_UDP_PAYLOAD, TYPE } from './constants.js';
import type { Query } from './query.js';

/** Root owner, TYPE, CLASS (UDP size), TTL (extended rcode, version, DO/Z), RDLENGTH: an OPT with no options. */
const OPT_LENGTH = 11;

/** Sinkhole's query for `q` (already validated: one question, at most one OPT). The client's own buffer when it is exactly that. */
export function upstreamQuery(q: Query): Buffer {
  const b = q.buf;
  const end = q.qend + (q.edns ? OPT_LENGTH : 0);
  // Fast path: a stub's usual query (dig +nocookie, glibc, systemd-resolved) already is ours.
  if (b.length === end && b.readUInt16BE(6) === 0 && b.readUInt16BE(8) === 0 && (!q.edns || isOurOpt(b, q.qend, q.dnssecOk))) return b;
  const out = Buffer.allocUnsafe(end);
  b.copy(out, 0, 0, q.qend);
  out.writeUInt32BE(0, 6); // ANCOUNT, NSCOUNT
  out.writeUInt16BE(q.edns ? 1 : 0, 10);
  if (q.edns) {
    const o = q.qend;
    out[o] = 0;
    out.writeUInt16BE(TYPE.OPT, o + 1);
    out.writeUInt16BE(EDNS_UDP_PAYLOAD, o + 3);
    out.writeUInt32BE(q.dnssecOk ? 0x8000 : 0, o + 5); // extended rcode 0, version 0, DO, Z = 0
    out.writeUInt16BE(0, o + 9);
  }
  return out;
}

function isOurOpt(b: Buffer, o: number, dnssecOk: boolean): boolean {
  return b.readUInt16BE(10) === 1 && b[o] === 0 && b.readUInt16BE(o + 3) === EDNS_UDP_PAYLOAD
    && b.readUInt32BE(o + 5) === (dnssecOk ? 0x8000 : 0) && b.readUInt16BE(o + 9) === 0;
}
