// One pass over an upstream reply: what the cache needs (TTL offsets, the
// RFC 2308 negative TTL) and what the blocklist needs (the names the answer
// points at). The bytes are never re-encoded: dns2's parse→encode is lossy
// (PACKAGES.md §1.6), so we only read.
import { TYPE } from './constants.js';

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
  targets: readonly string[];
  /** Offset of the OPT record (its root owner name), -1 without one. */
  opt: number;
}

/** RFC 1035 §2.3.4: a name takes at most 255 octets on the wire, length bytes included. */
const MAX_NAME_OCTETS = 255;
/**
 * Compression pointers followed within one name, at most. Every pointer must
 * also point before itself (RFC 1035 §4.1.4 "a prior occurrence", RFC 9267
 * §2), so no walk can loop; this bounds what a name may cost. 256 is
 * Unbound's MAX_COMPRESS_PTRS: a real encoder needs at most one pointer per
 * label (127), and the 130-hop chains that dig and kdig accept pass too.
 */
const MAX_POINTERS = 256;

/** Where decodeName builds a name's text: 255 octets, each escaped to two bytes at most. */
const scratch = Buffer.allocUnsafe(2 * MAX_NAME_OCTETS);
let scratchLength = 0;

/**
 * Walks a possibly compressed name at `off`. Returns the offset just past it
 * where it is written (past its first pointer, or its root label), or -1 when
 * it is malformed: a label longer than 63, a reserved label type, a pointer
 * that does not point backwards, too many pointers, more than 255 octets,
 * or running off the end. With `text`, the name is also built in `scratch`
 * the way query names are (query.ts): lower-cased ASCII, labels joined with
 * dots, a dot or backslash inside a label escaped (RFC 4343 §2.1), so a
 * target compares with the blocklist exactly as a query name does.
 */
function decodeName(buf: Buffer, off: number, text: boolean): number {
  let end = -1;
  let octets = 1; // the root label
  let pointers = 0;
  let n = 0;
  for (;;) {
    const len = buf[off];
    if (len === undefined) return -1;
    if (len === 0) {
      scratchLength = n;
      return end === -1 ? off + 1 : end;
    }
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length || ++pointers > MAX_POINTERS) return -1;
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (target >= off) return -1;
      if (end === -1) end = off + 2;
      off = target;
      continue;
    }
    if (len > 63) return -1; // 0x40 and 0x80 label types are unassigned or obsolete (RFC 6891 §5)
    octets += len + 1;
    if (octets > MAX_NAME_OCTETS || off + 1 + len > buf.length) return -1;
    if (text) {
      if (n > 0) scratch[n++] = 0x2e;
      for (let i = off + 1; i <= off + len; i++) {
        const c = buf[i]!;
        if (c === 0x2e || c === 0x5c) scratch[n++] = 0x5c;
        scratch[n++] = c >= 65 && c <= 90 ? c | 0x20 : c;
      }
    }
    off += len + 1;
  }
}

/** Offset just past a name, fully checked (pointers followed); -1 when malformed. */
export function nameEnd(buf: Buffer, off: number): number {
  return decodeName(buf, off, false);
}

/** A possibly compressed name as text (lower-cased, no trailing dot, '' for the root); undefined when malformed. */
export function readName(buf: Buffer, off: number): string | undefined {
  return decodeName(buf, off, true) < 0 ? undefined : scratch.toString('latin1', 0, scratchLength);
}

/** Types whose RDATA is exactly one domain name (RFC 1035 §3.3, RFC 6672 DNAME). */
const ONE_NAME = new Set([2, 3, 4, 5, 7, 8, 9, 12, 39]);
/** Types whose RDATA is a 16-bit preference and a name: MX, AFSDB, RT, KX. */
const PREF_NAME = new Set([15, 18, 21, 36]);
const SOA = 6;
const MINFO = 14;
const RP = 17;
const SRV = 33;
const DNAME = 39;

/**
 * Whether the names inside a record's RDATA are well-formed and end where
 * the RDATA says. A name that an upstream compressed badly would make the
 * client's decoder fail ("Got bad packet"), so such a reply is not ours to relay.
 */
function rdataNamesFit(buf: Buffer, type: number, rdata: number, rdlen: number): boolean {
  const end = rdata + rdlen;
  if (ONE_NAME.has(type)) return nameEnd(buf, rdata) === end;
  if (PREF_NAME.has(type)) return rdlen > 2 && nameEnd(buf, rdata + 2) === end;
  if (type === SRV) return rdlen > 6 && nameEnd(buf, rdata + 6) === end;
  if (type === SOA || type === MINFO || type === RP) {
    const first = nameEnd(buf, rdata);
    const second = first < 0 || first >= end ? -1 : nameEnd(buf, first);
    return second >= 0 && second + (type === SOA ? 20 : 0) === end;
  }
  if (type === TYPE.HTTPS || type === TYPE.SVCB) {
    const target = rdlen > 2 ? nameEnd(buf, rdata + 2) : -1;
    return target >= 0 && target <= end;
  }
  return true;
}

/** Whether an OPT's options, from `off`, fill its `len` bytes of RDATA exactly (RFC 6891 §6.1.2): queries and replies alike. */
export function optionsFit(buf: Buffer, off: number, len: number): boolean {
  const end = off + len;
  while (off < end) {
    if (off + 4 > end) return false;
    off += 4 + buf.readUInt16BE(off + 2);
  }
  return off === end;
}

/** The targets of an answer that names none, shared (never written). */
const NO_TARGETS: readonly string[] = Object.freeze([]);
/** The least a resource record takes on the wire: the root name (1), type, class, TTL and RDLENGTH (10). */
const MIN_RECORD_OCTETS = 11;

/**
 * Checks a whole reply and reads what the cache and the blocklist need;
 * undefined when any part of it is malformed (the forwarder then treats it as
 * that upstream failing, and the client never sees it). Every name is
 * decoded in full, pointers included; every RDATA holding names is checked;
 * OPT must be single, owned by the root, in the additional section, with
 * options that fit. Bytes after the last record are tolerated (some servers pad).
 */
export function scanReply(buf: Buffer): ScannedReply | undefined {
  if (buf.length < 12) return undefined;
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  let off = 12;
  for (let i = 0; i < qd; i++) {
    off = nameEnd(buf, off);
    if (off < 0 || off + 4 > buf.length) return undefined;
    off += 4;
  }
  const total = an + ns + ar;
  // Sized for every record at once (OPT's slot is trimmed off at the end): an empty array grows its
  // backing store to 17 slots on its first push, ~300 bytes of young garbage per cache miss (issue 22).
  // Never for more records than the bytes left can hold (11 each, at least): the counts are the
  // sender's word, and 3 x 65,535 of them in a short reply must not cost megabytes.
  // Most answers name no target: they share one empty list.
  const records = Math.min(total, Math.floor((buf.length - off) / MIN_RECORD_OCTETS));
  const ttlOffsets = new Array<number>(records);
  const ttls = new Array<number>(records);
  let ttlCount = 0;
  let targets: string[] | undefined;
  const out: ScannedReply = {
    rcode: buf[3]! & 0x0f, truncated: (buf[2]! & 0x02) !== 0, answers: an,
    ttlOffsets, ttls, minAnswerTtl: undefined, negativeTtl: undefined, targets: NO_TARGETS, opt: -1,
  };
  for (let i = 0; i < total; i++) {
    const end = nameEnd(buf, off);
    if (end < 0 || end + 10 > buf.length) return undefined;
    const type = buf.readUInt16BE(end);
    const ttl = buf.readUInt32BE(end + 4);
    const rdlen = buf.readUInt16BE(end + 8);
    const rdata = end + 10;
    if (rdata + rdlen > buf.length) return undefined;
    if (type === TYPE.OPT) {
      if (out.opt >= 0 || i < an + ns || end !== off + 1 || !optionsFit(buf, rdata, rdlen)) return undefined;
      out.opt = off;
      // The extended rcode's upper bits live in the OPT TTL (RFC 6891 §6.1.3).
      out.rcode |= buf[end + 4]! << 4;
    } else {
      if (!rdataNamesFit(buf, type, rdata, rdlen)) return undefined;
      // RFC 2181 §8: a TTL with the top bit set is treated as zero.
      const t = ttl > 0x7fffffff ? 0 : ttl;
      ttlOffsets[ttlCount] = end + 4;
      ttls[ttlCount++] = t;
      if (i < an) {
        if (out.minAnswerTtl === undefined || t < out.minAnswerTtl) out.minAnswerTtl = t;
        if (type === TYPE.CNAME || type === DNAME) {
          const target = readName(buf, rdata)!;
          if (target) (targets ??= []).push(target);
        } else if (type === TYPE.HTTPS || type === TYPE.SVCB) {
          // RFC 9460 §2.2: SvcPriority, then TargetName ("." means the owner name itself).
          const target = readName(buf, rdata + 2)!;
          if (target) (targets ??= []).push(target);
        }
      } else if (i < an + ns && type === SOA) {
        const rname = nameEnd(buf, nameEnd(buf, rdata));
        const minimum = buf.readUInt32BE(rname + 16);
        out.negativeTtl = Math.min(t, minimum);
      }
    }
    off = rdata + rdlen;
  }
  if (ttlCount < records) ttlOffsets.length = ttls.length = ttlCount;
  if (targets) out.targets = targets;
  return out;
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
