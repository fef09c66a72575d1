// One pass over an upstream reply: what the cache needs (TTL offsets, the
// RFC 2308 negative TTL) and what the blocklist needs (the names the answer
// points at). The bytes are never re-encoded: dns2's parse→encode is lossy
// (PACKAGES.md §1.6), so we only read.
import { TYPE } from './constants.js';
import { skipName } from './query.js';

export interface ScannedReply {
  rcode: number;
  truncated: boolean;
  answers: number;
  /** Offsets of every TTL field, OPT excluded (its "TTL" holds flags, RFC 6891 §6.1.3). */
  ttlOffsets: number[];
  ttls: number[];
  /** The smallest TTL in the answer section; undefined when it is empty. */
  minAnswerTtl: number | undefined;
  /** RFC 2308 §5: min(SOA TTL, SOA MINIMUM) from the authority section; undefined without an SOA. */
  negativeTtl: number | undefined;
  /** CNAME/DNAME targets and HTTPS/SVCB TargetNames in the answer (lower-cased, no trailing dot). */
  targets: string[];
}

/** Reads a possibly compressed name (RFC 1035 §4.1.4), lower-cased; undefined if malformed or looping. */
export function readName(buf: Buffer, off: number): string | undefined {
  let name = '';
  for (let hops = 0; hops < 128; ) {
    const len = buf[off];
    if (len === undefined) return undefined;
    if (len === 0) return name;
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length) return undefined;
      off = ((len & 0x3f) << 8) | buf[off + 1]!;
      hops++;
      continue;
    }
    if (len > 63 || off + 1 + len > buf.length) return undefined;
    if (name.length) name += '.';
    name += buf.toString('latin1', off + 1, off + 1 + len).toLowerCase();
    if (name.length > 255) return undefined;
    off += len + 1;
  }
  return undefined;
}

/** Scans a reply; undefined when it is malformed (it is then treated as an upstream failure). */
export function scanReply(buf: Buffer): ScannedReply | undefined {
  if (buf.length < 12) return undefined;
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  let off = 12;
  for (let i = 0; i < qd; i++) {
    off = skipName(buf, off);
    if (off < 0 || off + 4 > buf.length) return undefined;
    off += 4;
  }
  const out: ScannedReply = {
    rcode: buf[3]! & 0x0f, truncated: (buf[2]! & 0x02) !== 0, answers: an,
    ttlOffsets: [], ttls: [], minAnswerTtl: undefined, negativeTtl: undefined, targets: [],
  };
  const total = an + ns + ar;
  for (let i = 0; i < total; i++) {
    const end = skipName(buf, off);
    if (end < 0 || end + 10 > buf.length) return undefined;
    const type = buf.readUInt16BE(end);
    const ttl = buf.readUInt32BE(end + 4);
    const rdlen = buf.readUInt16BE(end + 8);
    const rdata = end + 10;
    if (rdata + rdlen > buf.length) return undefined;
    if (type === TYPE.OPT) {
      // The extended rcode's upper bits live in the OPT TTL (RFC 6891 §6.1.3).
      out.rcode |= buf[end + 4]! << 4;
    } else {
      out.ttlOffsets.push(end + 4);
      // RFC 2181 §8: a TTL with the top bit set is treated as zero.
      const t = ttl > 0x7fffffff ? 0 : ttl;
      out.ttls.push(t);
      if (i < an) {
        if (out.minAnswerTtl === undefined || t < out.minAnswerTtl) out.minAnswerTtl = t;
        const target = answerTarget(buf, type, rdata, rdlen);
        if (target) out.targets.push(target);
      } else if (i < an + ns && type === TYPE.SOA) {
        const mname = skipName(buf, rdata);
        const rname = mname < 0 ? -1 : skipName(buf, mname);
        if (rname < 0 || rname + 20 > rdata + rdlen) return undefined;
        const minimum = buf.readUInt32BE(rname + 16);
        out.negativeTtl = Math.min(t, minimum);
      }
    }
    off = rdata + rdlen;
  }
  return out;
}

const DNAME = 39;

function answerTarget(buf: Buffer, type: number, rdata: number, rdlen: number): string | undefined {
  if (type === TYPE.CNAME || type === DNAME) return readName(buf, rdata) || undefined;
  if ((type === TYPE.HTTPS || type === TYPE.SVCB) && rdlen > 2) {
    // RFC 9460 §2.2: SvcPriority, then TargetName ("." means the owner name itself).
    return readName(buf, rdata + 2) || undefined;
  }
  return undefined;
}

/** RFC 5452 §9.1: a reply is accepted only if its question is the one we asked (case-insensitively). */
export function sameQuestion(reply: Buffer, query: Buffer, qend: number): boolean {
  if (reply.length < qend || reply.readUInt16BE(4) !== 1) return false;
  for (let i = 12; i < qend; i++) {
    let a = reply[i]!;
    let b = query[i]!;
    if (a >= 65 && a <= 90) a += 32;
    if (b >= 65 && b <= 90) b += 32;
    if (a !== b) return false;
  }
  return true;
}
