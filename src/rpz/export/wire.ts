// The exported zone's records on the wire, and the messages that carry them.
// Every message echoes the question (the zone's name at offset 12), so every
// owner name is written as its labels relative to the zone and then a pointer
// to the question (RFC 1035 §4.1.4): `*.tiktok.com` costs 15 octets, not 46.
// RFC 5936 §2.2 lets the question be repeated in every message of a transfer.

export const TYPE_SOA = 6;
export const TYPE_NS = 2;
export const TYPE_CNAME = 5;
export const TYPE_IXFR = 251;
export const TYPE_AXFR = 252;
const CLASS_IN = 1;
/** A pointer to the question's name, which is the zone's origin. */
const ORIGIN_POINTER = Buffer.from([0xc0, 0x0c]);

/** RFC 5936 §2.2: each message at most 65535 octets; room is left for the TSIG appended after. */
export const MAX_MESSAGE = 65_535 - 512;

/** The SOA's fields (RFC 1035 §3.3.13) besides the serial, which each version has its own of. */
export interface SoaTimers {
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

/** The zone as the server writes it: names and timers. */
export interface ZoneShape {
  /** The origin, lower-case, no trailing dot. */
  origin: string;
  /** TTL of every record: blocking.ttl, so a secondary answers with the TTL sinkhole does. */
  ttl: number;
  timers: SoaTimers;
}

function labels(rel: string): Buffer {
  const parts: Buffer[] = [];
  for (const l of rel.split('.')) {
    if (!l) continue;
    const b = Buffer.from(l, 'latin1');
    parts.push(Buffer.from([b.length]), b);
  }
  return Buffer.concat(parts);
}

/** A complete name outside the zone, uncompressed (`localhost.`). */
function absolute(name: string): Buffer {
  return Buffer.concat([labels(name), Buffer.from([0])]);
}

function rr(owner: Buffer, type: number, ttl: number, rdata: Buffer): Buffer {
  const head = Buffer.alloc(10);
  head.writeUInt16BE(type, 0);
  head.writeUInt16BE(CLASS_IN, 2);
  head.writeUInt32BE(ttl, 4);
  head.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, head, rdata]);
}

/** The apex SOA. MNAME `localhost.` as RPZ zones have it: the zone is never looked up, only transferred. */
export function soaRecord(z: ZoneShape, serial: number): Buffer {
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32BE(serial >>> 0, 0);
  fixed.writeUInt32BE(z.timers.refresh, 4);
  fixed.writeUInt32BE(z.timers.retry, 8);
  fixed.writeUInt32BE(z.timers.expire, 12);
  fixed.writeUInt32BE(z.timers.minimum, 16);
  const rname = Buffer.concat([labels('hostmaster'), ORIGIN_POINTER]);
  return rr(ORIGIN_POINTER, TYPE_SOA, z.ttl, Buffer.concat([absolute('localhost'), rname, fixed]));
}

/** The apex NS: a placeholder, as RPZ zones use (the zone is served to secondaries, never delegated). */
export function nsRecord(z: ZoneShape): Buffer {
  return rr(ORIGIN_POINTER, TYPE_NS, z.ttl, absolute('localhost'));
}

const ROOT = Buffer.from([0]);

/** `owner CNAME .`: the RPZ action NXDOMAIN (draft-vixie-dnsop-dns-rpz §4.3.1). */
export function triggerRecord(z: ZoneShape, owner: string): Buffer {
  return rr(Buffer.concat([labels(owner), ORIGIN_POINTER]), TYPE_CNAME, z.ttl, ROOT);
}

/** The request's header fields a reply copies. */
export interface Asked {
  id: number;
  opcode: number;
  rd: boolean;
  /** The question as it came (name, type, class), echoed in every message. */
  question: Buffer;
}

/** One reply message: header, the question, `answers` and `authority` records. */
export function message(q: Asked, rcode: number, answers: readonly Buffer[], authority: readonly Buffer[] = [], aa = true): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(q.id, 0);
  head[2] = 0x80 | (q.opcode << 3) | (aa ? 0x04 : 0) | (q.rd ? 0x01 : 0);
  head[3] = rcode & 0x0f;
  head.writeUInt16BE(q.question.length ? 1 : 0, 4);
  head.writeUInt16BE(answers.length, 6);
  head.writeUInt16BE(authority.length, 8);
  return Buffer.concat([head, q.question, ...answers, ...authority]);
}

/**
 * Packs a stream of answer records into as few messages as fit MAX_MESSAGE each (RFC 5936 §2.2:
 * "multiple messages"), in order. A generator, so a transfer of a million records is built a message
 * at a time as the socket drains, never all at once.
 */
export function* pack(q: Asked, records: Iterable<Buffer>, limit = MAX_MESSAGE): Generator<Buffer> {
  let batch: Buffer[] = [];
  let size = 12 + q.question.length;
  for (const r of records) {
    if (batch.length && (size + r.length > limit || batch.length === 0xffff)) {
      yield message(q, 0, batch);
      batch = [];
      size = 12 + q.question.length;
    }
    batch.push(r);
    size += r.length;
  }
  if (batch.length) yield message(q, 0, batch);
}
