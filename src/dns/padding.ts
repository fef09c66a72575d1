// EDNS(0) padding (RFC 7830) for queries sent over an encrypted transport.
// Without it the size of each TLS record says which name was asked; RFC 8467
// §4.1 recommends padding queries to a multiple of 128 octets. The padding is
// hop-by-hop: the upstream's padded reply is cleaned before it goes on to the
// client (and the cache), and an OPT we added for the padding is taken out
// again, because a client that sent no OPT must get none (RFC 6891 §7).
// The other way round, a device's padded query over DoT or DoH gets its reply
// padded by us (RFC 7830 §4), to a multiple of 468 octets (RFC 8467 §4.1);
// its own padding never goes upstream (dns/ownQuery.ts).
import { TYPE } from './constants.js';
import { skipName, type Query } from './query.js';

/** RFC 7830 §3: the EDNS option code of Padding. */
export const EDNS_OPTION_PADDING = 12;
/** RFC 8467 §4.1: the block size recommended for queries. */
export const QUERY_PAD_BLOCK = 128;
/** RFC 8467 §4.1: the block size recommended for responses. */
export const REPLY_PAD_BLOCK = 468;
/** The largest DNS message a stream's 2-octet length can frame (RFC 1035 §4.2.2). */
const MAX_MESSAGE = 65_535;
/** The UDP size our own OPT advertises; meaningless on a stream, but RFC 6891 wants a value ≥ 512. */
const OPT_PAYLOAD = 1232;

interface OptPosition {
  /** Offset of the RR's RDLENGTH field. */
  rdlen: number;
  /** Offsets of the RR: its first byte and one past its RDATA. */
  start: number;
  end: number;
}

/** Where the records end and where the OPT is; undefined when the message is malformed. */
function walk(msg: Buffer): { end: number; opt?: OptPosition } | undefined {
  if (msg.length < 12) return undefined;
  let off = 12;
  for (let i = msg.readUInt16BE(4); i > 0; i--) {
    off = skipName(msg, off);
    if (off < 0 || off + 4 > msg.length) return undefined;
    off += 4;
  }
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const total = an + ns + msg.readUInt16BE(10);
  let opt: OptPosition | undefined;
  for (let i = 0; i < total; i++) {
    const start = off;
    const name = skipName(msg, off);
    if (name < 0 || name + 10 > msg.length) return undefined;
    const end = name + 10 + msg.readUInt16BE(name + 8);
    if (end > msg.length) return undefined;
    if (i >= an + ns && msg.readUInt16BE(name) === TYPE.OPT && !opt) opt = { rdlen: name + 8, start, end };
    off = end;
  }
  return { end: off, opt };
}

/** The OPT's options without any Padding option, as bytes. */
function optionsWithoutPadding(msg: Buffer, opt: OptPosition): Buffer {
  const parts: Buffer[] = [];
  let off = opt.rdlen + 2;
  while (off + 4 <= opt.end) {
    const len = msg.readUInt16BE(off + 2);
    const next = Math.min(opt.end, off + 4 + len);
    if (msg.readUInt16BE(off) !== EDNS_OPTION_PADDING) parts.push(msg.subarray(off, next));
    off = next;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/**
 * A copy of `query` padded to a multiple of `block` octets (RFC 8467 §4.1):
 * a Padding option is added to the query's OPT, or an OPT is added when the
 * query had none (`addedOpt`, so the reply's can be removed). A Padding option
 * the client sent is replaced. `qend` is unchanged: the question is not moved.
 */
export function padQuery(query: Buffer, block = QUERY_PAD_BLOCK): { wire: Buffer; addedOpt: boolean } {
  const w = walk(query);
  if (!w) return { wire: Buffer.from(query), addedOpt: false };
  let head: Buffer;
  let options: Buffer;
  let tail: Buffer;
  let optHeader: Buffer;
  if (w.opt) {
    head = query.subarray(0, w.opt.start);
    optHeader = query.subarray(w.opt.start, w.opt.rdlen);
    options = optionsWithoutPadding(query, w.opt);
    tail = query.subarray(w.opt.end, w.end);
  } else {
    head = query.subarray(0, w.end);
    optHeader = Buffer.alloc(9);
    // root name (0), TYPE OPT, CLASS = UDP payload size, TTL = 0 (no extended rcode, version 0, DO clear)
    optHeader.writeUInt16BE(TYPE.OPT, 1);
    optHeader.writeUInt16BE(OPT_PAYLOAD, 3);
    options = Buffer.alloc(0);
    tail = Buffer.alloc(0);
  }
  const unpadded = head.length + optHeader.length + 2 + options.length + 4 + tail.length;
  const pad = (block - (unpadded % block)) % block;
  const out = Buffer.alloc(unpadded + pad);
  let off = head.copy(out, 0);
  off += optHeader.copy(out, off);
  off = out.writeUInt16BE(options.length + 4 + pad, off);
  off += options.copy(out, off);
  off = out.writeUInt16BE(EDNS_OPTION_PADDING, off);
  off = out.writeUInt16BE(pad, off);
  off += pad; // RFC 7830 §3: the padding octets SHOULD be 0x00 (Buffer.alloc zeroed them)
  tail.copy(out, off);
  if (!w.opt) out.writeUInt16BE(query.readUInt16BE(10) + 1, 10);
  return { wire: out, addedOpt: !w.opt };
}

/**
 * A copy of an upstream reply without its Padding option, or without its
 * OPT altogether when `removeOpt` (the OPT answers one we added). A reply
 * that cannot be walked is returned as a plain copy: the forwarder's scan
 * rejects it later.
 */
export function unpadReply(reply: Buffer, removeOpt: boolean): Buffer {
  const w = walk(reply);
  if (!w?.opt) return Buffer.from(reply);
  const { opt } = w;
  if (removeOpt) {
    const out = Buffer.concat([reply.subarray(0, opt.start), reply.subarray(opt.end, w.end)]);
    out.writeUInt16BE(reply.readUInt16BE(10) - 1, 10);
    return out;
  }
  const options = optionsWithoutPadding(reply, opt);
  if (options.length === opt.end - opt.rdlen - 2) return Buffer.from(reply.subarray(0, w.end));
  const out = Buffer.concat([reply.subarray(0, opt.rdlen + 2), options, reply.subarray(opt.end, w.end)]);
  out.writeUInt16BE(options.length, opt.rdlen);
  return out;
}

/** Whether a client's query carried a Padding option: then its reply over DoT or DoH is padded (RFC 7830 §4). */
export function queryPadded(q: Query): boolean {
  if (q.optRdata < 0) return false;
  const b = q.buf;
  const end = q.optRdata + b.readUInt16BE(q.optRdata - 2);
  for (let off = q.optRdata; off + 4 <= end; off += 4 + b.readUInt16BE(off + 2)) if (b.readUInt16BE(off) === EDNS_OPTION_PADDING) return true;
  return false;
}

/**
 * A reply padded to a multiple of REPLY_PAD_BLOCK octets, for a client that
 * padded its query (RFC 7830 §4, RFC 8467 §4.1); as it was when padding it
 * would pass 65,535 octets. Our replies to an EDNS query carry an OPT; one
 * that has none (an upstream's) gets one, which an EDNS client may receive.
 */
export function padReply(reply: Buffer): Buffer {
  if (reply.length === 0) return reply;
  const { wire } = padQuery(reply, REPLY_PAD_BLOCK);
  return wire.length <= MAX_MESSAGE ? wire : reply;
}
