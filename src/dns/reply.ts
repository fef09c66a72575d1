// Builds the replies sinkhole writes itself: errors, sinkhole answers and
// truncated replies. Each is a copy of the query's header and question plus
// prepared record bytes; building one costs a single allocation.
import { EDNS_OPTION_EDE, EDNS_UDP_PAYLOAD, MIN_UDP_PAYLOAD, FLAG_CD, FLAG_QR, FLAG_RA, FLAG_RD, FLAG_TC } from './constants.js';
import type { Query } from './query.js';

export interface Ede {
  infoCode: number;
  text: string;
}

/**
 * An OPT pseudo-RR (RFC 6891 §6.1.2) advertising EDNS_UDP_PAYLOAD, echoing the
 * DO bit (RFC 3225 §3), with the upper 8 bits of an extended rcode and an
 * optional Extended DNS Error (RFC 8914 §2).
 */
export function optRecord(dnssecOk: boolean, extendedRcode = 0, ede?: Ede): Buffer {
  const text = ede ? Buffer.from(ede.text, 'utf8') : undefined;
  const optLen = text ? 4 + 2 + text.length : 0;
  const b = Buffer.alloc(11 + optLen);
  // b[0] = 0: the root name
  b.writeUInt16BE(41, 1);
  b.writeUInt16BE(EDNS_UDP_PAYLOAD, 3);
  b[5] = extendedRcode >> 4;
  b[6] = 0; // version
  b[7] = dnssecOk ? 0x80 : 0;
  b.writeUInt16BE(optLen, 9);
  if (text && ede) {
    b.writeUInt16BE(EDNS_OPTION_EDE, 11);
    b.writeUInt16BE(2 + text.length, 13);
    b.writeUInt16BE(ede.infoCode, 15);
    text.copy(b, 17);
  }
  return b;
}

const OPT_PLAIN = optRecord(false);
const OPT_DO = optRecord(true);

/** The OPT a reply to `q` carries: none without EDNS in the query (RFC 6891 §7), else ours. */
export function replyOpt(q: Query, rcode: number, ede?: Ede): Buffer | undefined {
  if (!q.edns) return undefined;
  if (ede || rcode > 15) return optRecord(q.dnssecOk, rcode, ede);
  return q.dnssecOk ? OPT_DO : OPT_PLAIN;
}

/**
 * Header + question of the query with QR and RA set, RD and CD copied, and the
 * given rcode; `body` (already encoded records) and `opt` follow, with their
 * counts. RA is set on every reply: this is a recursive service (docs/design.md §4).
 */
export function buildReply(
  q: Query,
  rcode: number,
  body?: { bytes: Buffer; an: number; ns: number },
  opt: Buffer | undefined = replyOpt(q, rcode),
): Buffer {
  // A query whose question could not be read is answered with the header alone (qdcount 0).
  const head = q.qend;
  const out = Buffer.allocUnsafe(head + (body ? body.bytes.length : 0) + (opt ? opt.length : 0));
  q.buf.copy(out, 0, 0, head);
  out[2] = FLAG_QR | (q.opcode << 3) | (q.rd ? FLAG_RD : 0);
  out[3] = FLAG_RA | (q.cd ? FLAG_CD : 0) | (rcode & 0x0f);
  out.writeUInt16BE(head > 12 ? 1 : 0, 4);
  out.writeUInt16BE(body ? body.an : 0, 6);
  out.writeUInt16BE(body ? body.ns : 0, 8);
  out.writeUInt16BE(opt ? 1 : 0, 10);
  let off = head;
  if (body) off += body.bytes.copy(out, off);
  if (opt) opt.copy(out, off);
  return out;
}

export function errorReply(q: Query, rcode: number, ede?: Ede): Buffer {
  return buildReply(q, rcode, undefined, replyOpt(q, rcode, ede));
}

/**
 * A FORMERR or NOTIMP reply: the header carries QR, the opcode and the rcode
 * and nothing else. RA, AD, CD and Z mean something only in a reply to a
 * QUERY we understood (RFC 1035 §4.1.1, RFC 6895 §2), and for another opcode
 * the RD position may not even be RD. The question is echoed when it was read.
 */
export function bareErrorReply(q: Query, rcode: number): Buffer {
  const out = buildReply(q, rcode, undefined, q.problem === 0 ? replyOpt(q, rcode) : undefined);
  out[2] = FLAG_QR | (q.opcode << 3);
  out[3] = rcode & 0x0f;
  return out;
}

/**
 * A reply that did not fit the client's UDP limit: header + question + TC=1
 * and no records (RFC 2181 §9, RFC 1035 §4.2.1), so the client retries over
 * TCP. The upstream's rcode is kept. Never slice a message: a cut-off record
 * makes the whole reply undecodable.
 */
export function truncatedReply(q: Query, full: Buffer): Buffer {
  const out = buildReply(q, full[3]! & 0x0f);
  out[2] = out[2]! | FLAG_TC;
  out.writeUInt16BE(full.readUInt16BE(0), 0);
  return out;
}

/**
 * The largest reply we send over UDP: the client's advertised size (512
 * without EDNS, RFC 1035 §4.2.1), capped at our own EDNS_UDP_PAYLOAD
 * (RFC 6891 §6.2.5 — a responder uses the smaller of the two sizes).
 */
export function udpLimit(q: Query): number {
  return q.edns ? Math.min(q.udpSize, EDNS_UDP_PAYLOAD) : MIN_UDP_PAYLOAD;
}
