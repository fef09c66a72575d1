// The replies an RPZ rewrite sends (draft-vixie-dnsop-dns-rpz §4), and the
// addresses a response-IP trigger is checked against. Every rewrite carries
// EDE 15 "Blocked" (RFC 8914 §4.16) naming the zone and the record's owner;
// a passthru is no rewrite and carries none.
import { CLASS_IN, EDE_BLOCKED, FLAG_TC, RCODE, TYPE } from '../../dns/constants.js';
import { record } from '../../dns/localRecord.js';
import { nameEnd } from '../../dns/message.js';
import type { Query } from '../../dns/query.js';
import { buildReply, replyOpt, type Ede } from '../../dns/reply.js';
import type { ParsedAddress } from '../../net/cidr.js';
import { encodeName, type RpzAction } from './actions.js';
import type { RpzRule } from './zone.js';

/**
 * RFC 2308 §3: an SOA in the authority section, so the client caches the
 * negative answer for `ttl`; `.invalid` (RFC 6761 §6.4) marks it as nobody's zone.
 */
function negativeSoa(ttl: number): Buffer {
  // Built once per TTL (blocking.ttl: one value in practice): every blocked answer used to encode it afresh.
  let soa = negativeSoas.get(ttl);
  if (!soa) {
    if (negativeSoas.size >= 16) negativeSoas.clear();
    negativeSoas.set(ttl, (soa = buildNegativeSoa(ttl)));
  }
  return soa;
}
const negativeSoas = new Map<number, Buffer>();

function buildNegativeSoa(ttl: number): Buffer {
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32BE(1, 0);
  fixed.writeUInt32BE(3600, 4);
  fixed.writeUInt32BE(600, 8);
  fixed.writeUInt32BE(86400, 12);
  fixed.writeUInt32BE(ttl, 16);
  return record(TYPE.SOA, CLASS_IN, ttl, Buffer.concat([encodeName('sinkhole.invalid'), encodeName('rpz.sinkhole.invalid'), fixed]));
}

export function rpzEde(zone: string, rule: RpzRule): Ede {
  return { infoCode: EDE_BLOCKED, text: `blocked by sinkhole rpz "${zone}" (${rule.owner})` };
}

/**
 * The reply for a rewrite with `action` (not passthru, drop or a TCP query's
 * tcp-only, which send the upstream's answer or nothing). Local data is
 * answered as written, owned by the query name, with `ttl` (blocking.ttl):
 * the records of the query's type, or the CNAME whatever the type, else NODATA (§4.6).
 */
export function rewriteReply(q: Query, action: Exclude<RpzAction, 'passthru' | 'drop'>, rule: RpzRule, ede: Ede, ttl: number): Buffer {
  const opt = replyOpt(q, 0, ede);
  if (action === 'tcp-only') {
    // §4.5: over UDP, header and question with TC, so the client asks again over TCP.
    const out = buildReply(q, RCODE.NOERROR, undefined, opt);
    out[2] = out[2]! | FLAG_TC;
    return out;
  }
  const soa = { bytes: negativeSoa(ttl), an: 0, ns: 1 };
  if (action === 'nxdomain') return buildReply(q, RCODE.NXDOMAIN, soa, opt);
  if (action === 'local') {
    const all = rule.records ?? [];
    const cname = all.find((r) => r.type === TYPE.CNAME);
    const chosen = cname ? [cname] : all.filter((r) => r.type === q.qtype);
    if (chosen.length) {
      const bytes = Buffer.concat(chosen.map((r) => record(r.type, CLASS_IN, ttl, Buffer.from(r.rdata))));
      return buildReply(q, RCODE.NOERROR, { bytes, an: chosen.length, ns: 0 }, opt);
    }
  }
  return buildReply(q, RCODE.NOERROR, soa, opt);
}

/** Every A and AAAA in the answer section (after the upstream chased the CNAMEs, the chain's addresses are all there). */
export function answerAddresses(wire: Buffer): { text: string; address: ParsedAddress }[] {
  const out: { text: string; address: ParsedAddress }[] = [];
  if (wire.length < 12) return out;
  const qd = wire.readUInt16BE(4);
  const an = wire.readUInt16BE(6);
  let off = 12;
  for (let i = 0; i < qd; i++) {
    off = nameEnd(wire, off);
    if (off < 0) return out;
    off += 4;
  }
  for (let i = 0; i < an; i++) {
    const end = nameEnd(wire, off);
    if (end < 0 || end + 10 > wire.length) return out;
    const type = wire.readUInt16BE(end);
    const rdlen = wire.readUInt16BE(end + 8);
    const rdata = end + 10;
    if (rdata + rdlen > wire.length) return out;
    if (type === TYPE.A && rdlen === 4) {
      const value = BigInt(wire.readUInt32BE(rdata));
      out.push({ text: `${wire[rdata]}.${wire[rdata + 1]}.${wire[rdata + 2]}.${wire[rdata + 3]}`, address: { v4: true, value } });
    } else if (type === TYPE.AAAA && rdlen === 16) {
      let value = 0n;
      const words: string[] = [];
      for (let k = 0; k < 16; k += 2) {
        const w = wire.readUInt16BE(rdata + k);
        words.push(w.toString(16));
        value = (value << 16n) | BigInt(w);
      }
      out.push({ text: words.join(':'), address: { v4: false, value } });
    }
    off = rdata + rdlen;
  }
  return out;
}
