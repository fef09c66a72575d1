// The records of a zone-transfer message (RFC 5936 §2.2: the answer section), as master-file lines
// (RFC 1035 §5.1) that zoneFile.ts reads like any zone file. A transferred zone is written out in
// this form under state.dir, so it is watched, compiled, checked and saved with the last good policy
// exactly as a zone file an admin keeps: one path from bytes to policy, not two.
// Only the types an RPZ uses are rendered (RFC 1035 §3.3, RFC 3596, draft-vixie-dnsop-dns-rpz §4);
// any other is counted and left out, as a QNAME rule never needs it.
import { readName } from '../../dns/message.js';

/** One record: its master-file line (absolute owner, TTL, class, type, RDATA), and its type. */
export interface WireRecord {
  readonly type: number;
  readonly line: string;
  /** SOA only: the serial (RFC 1982 arithmetic applies). */
  readonly serial?: number;
  /** SOA only: refresh, retry and expire, in seconds (RFC 1035 §3.3.13). */
  readonly timers?: { refresh: number; retry: number; expire: number };
}

export interface DecodedMessage {
  readonly id: number;
  readonly rcode: number;
  readonly answers: WireRecord[];
  /** Records of types this reader does not render (left out of the zone). */
  readonly skipped: number;
}

const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DNAME: 39 } as const;
const TYPE_NAMES = new Map<number, string>(Object.entries(T).map(([k, v]) => [v, k]));

const absolute = (name: string): string => (name === '' ? '.' : `${name}.`);

/** A <character-string> in quotes, with " and \ escaped and bytes outside printable ASCII as \DDD (RFC 1035 §5.1). */
function quoted(buf: Buffer, from: number, len: number): string {
  let out = '"';
  for (let i = from; i < from + len; i++) {
    const c = buf[i]!;
    if (c === 0x22 || c === 0x5c) out += `\\${String.fromCharCode(c)}`;
    else if (c < 0x20 || c > 0x7e) out += `\\${String(c).padStart(3, '0')}`;
    else out += String.fromCharCode(c);
  }
  return `${out}"`;
}

function ipv6(b: Buffer, off: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(off + i).toString(16));
  return groups.join(':');
}

/** RDATA as master-file text, or undefined for a type this reader leaves out (or a malformed one). */
function rdataText(buf: Buffer, type: number, at: number, len: number): string | undefined {
  switch (type) {
    case T.A:
      return len === 4 ? `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}` : undefined;
    case T.AAAA:
      return len === 16 ? ipv6(buf, at) : undefined;
    case T.NS:
    case T.CNAME:
    case T.PTR:
    case T.DNAME: {
      const n = readName(buf, at);
      return n === undefined ? undefined : absolute(n);
    }
    case T.MX: {
      const n = len > 2 ? readName(buf, at + 2) : undefined;
      return n === undefined ? undefined : `${buf.readUInt16BE(at)} ${absolute(n)}`;
    }
    case T.SRV: {
      const n = len > 6 ? readName(buf, at + 6) : undefined;
      return n === undefined ? undefined : `${buf.readUInt16BE(at)} ${buf.readUInt16BE(at + 2)} ${buf.readUInt16BE(at + 4)} ${absolute(n)}`;
    }
    case T.TXT: {
      const parts: string[] = [];
      for (let i = at; i < at + len; ) {
        const l = buf[i]!;
        if (i + 1 + l > at + len) return undefined;
        parts.push(quoted(buf, i + 1, l));
        i += 1 + l;
      }
      return parts.join(' ');
    }
    default:
      return undefined;
  }
}

/** Offset past a possibly compressed name, or -1. */
function skipName(buf: Buffer, off: number): number {
  for (let hops = 0; off < buf.length && hops < 128; hops++) {
    const l = buf[off]!;
    if (l === 0) return off + 1;
    if ((l & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    off += l + 1;
  }
  return -1;
}

/** The header's ID and rcode, and the answer section's records; undefined when the message is malformed. */
export function decodeTransferMessage(buf: Buffer): DecodedMessage | undefined {
  if (buf.length < 12) return undefined;
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  let off = 12;
  for (let i = 0; i < qd; i++) {
    off = skipName(buf, off);
    if (off < 0 || off + 4 > buf.length) return undefined;
    off += 4;
  }
  const answers: WireRecord[] = [];
  let skipped = 0;
  for (let i = 0; i < an; i++) {
    const owner = readName(buf, off);
    off = skipName(buf, off);
    if (owner === undefined || off < 0 || off + 10 > buf.length) return undefined;
    const type = buf.readUInt16BE(off);
    const ttl = buf.readUInt32BE(off + 4);
    const len = buf.readUInt16BE(off + 8);
    const at = off + 10;
    off = at + len;
    if (off > buf.length) return undefined;
    if (type === T.SOA) {
      const mname = readName(buf, at);
      const second = skipName(buf, at);
      const rname = second < 0 ? undefined : readName(buf, second);
      const fixed = second < 0 ? -1 : skipName(buf, second);
      if (mname === undefined || rname === undefined || fixed < 0 || fixed + 20 !== off) return undefined;
      const [serial, refresh, retry, expire, minimum] = [0, 4, 8, 12, 16].map((k) => buf.readUInt32BE(fixed + k)) as [number, number, number, number, number];
      answers.push({
        type, serial, timers: { refresh, retry, expire },
        line: `${absolute(owner)} ${ttl} IN SOA ${absolute(mname)} ${absolute(rname)} ${serial} ${refresh} ${retry} ${expire} ${minimum}`,
      });
      continue;
    }
    const text = rdataText(buf, type, at, len);
    if (text === undefined) {
      skipped++;
      continue;
    }
    answers.push({ type, line: `${absolute(owner)} ${ttl} IN ${TYPE_NAMES.get(type)} ${text}` });
  }
  return { id: buf.readUInt16BE(0), rcode: buf[3]! & 0x0f, answers, skipped };
}
