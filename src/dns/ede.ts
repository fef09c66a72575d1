// Adds an Extended DNS Error (RFC 8914) to a reply that came from upstream,
// without re-encoding it: the option is appended to the reply's OPT record,
// or an OPT is appended when the reply has none.
import { EDNS_OPTION_EDE, TYPE } from './constants.js';
import { skipName, type Query } from './query.js';
import { optRecord, type Ede } from './reply.js';

/** RFC 8914 §4.4: EDE 3 "Stale Answer", for answers served from expired cache data (RFC 8767). */
export const EDE_STALE_ANSWER = 3;

/**
 * `reply` with `ede` attached, for a client that sent EDNS (RFC 6891 §7: no
 * OPT to a client that sent none, so then `reply` is returned as it is).
 * The option is added in place only when the OPT is the last record: bytes
 * inserted earlier would move every later record, and a compression pointer
 * into them would then point at the wrong place. A reply whose OPT sits
 * elsewhere (before a TSIG, which never reaches us from a plain upstream) or
 * that cannot be walked is returned unchanged: the EDE is advisory.
 */
export function withEde(q: Query, reply: Buffer, ede: Ede): Buffer {
  if (!q.edns || reply.length < 12) return reply;
  const qd = reply.readUInt16BE(4);
  const rrs = reply.readUInt16BE(6) + reply.readUInt16BE(8) + reply.readUInt16BE(10);
  let off = 12;
  for (let i = 0; i < qd; i++) {
    off = skipName(reply, off);
    if (off < 0 || off + 4 > reply.length) return reply;
    off += 4;
  }
  let optRdlen = -1;
  for (let i = 0; i < rrs; i++) {
    const end = skipName(reply, off);
    if (end < 0 || end + 10 > reply.length) return reply;
    const next = end + 10 + reply.readUInt16BE(end + 8);
    if (next > reply.length) return reply;
    if (reply.readUInt16BE(end) === TYPE.OPT) optRdlen = i === rrs - 1 && next === reply.length ? end + 8 : -2;
    off = next;
  }
  if (optRdlen === -2) return reply;
  const text = Buffer.from(ede.text, 'utf8');
  if (optRdlen === -1) {
    // The upstream dropped our EDNS: give the client the OPT it asked for, with the EDE in it.
    const opt = optRecord(q.dnssecOk, 0, ede);
    const out = Buffer.concat([reply, opt]);
    out.writeUInt16BE(reply.readUInt16BE(10) + 1, 10);
    return out;
  }
  const option = Buffer.allocUnsafe(6 + text.length);
  option.writeUInt16BE(EDNS_OPTION_EDE, 0); // RFC 8914 §2
  option.writeUInt16BE(2 + text.length, 2);
  option.writeUInt16BE(ede.infoCode, 4);
  text.copy(option, 6);
  const out = Buffer.concat([reply, option]);
  out.writeUInt16BE(reply.readUInt16BE(optRdlen) + option.length, optRdlen);
  return out;
}
