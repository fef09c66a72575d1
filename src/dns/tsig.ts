// TSIG (RFC 8945): a shared-secret HMAC over a DNS message, for zone transfers
// and NOTIFY. Self-contained on purpose (node:crypto only, no other module of
// sinkhole): RPZ export signs what it serves and its NOTIFYs with it, RPZ
// import verifies what it pulls, and neither should drag the other in.
//
// Only HMAC-SHA256 (§6: "mandatory to implement", and what BIND, Knot, NSD and
// dig -y all speak). A MAC is checked at full length; truncated MACs (§5.2.2.1)
// are refused as BADTRUNC rather than weighed.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const TSIG_TYPE = 250;
const CLASS_ANY = 255;
/** RFC 8945 §5.2: the rcode of a reply whose request failed TSIG, with the TSIG error in the TSIG RR. */
export const RCODE_NOTAUTH = 9;
export const TSIG_ERROR = { NOERROR: 0, BADSIG: 16, BADKEY: 17, BADTIME: 18, BADTRUNC: 22 } as const;
export const TSIG_ERROR_NAME: Record<number, string> = { 0: 'NOERROR', 16: 'BADSIG', 17: 'BADKEY', 18: 'BADTIME', 22: 'BADTRUNC' };
/** §10: 300 s is the recommended fudge. */
export const DEFAULT_FUDGE = 300;
const SHA256_MAC_BYTES = 32;

export type TsigAlgorithm = 'hmac-sha256';

export interface TsigKey {
  /** The key's name, lower-case, without the trailing dot (as dig -y and BIND's key "name" give it). */
  name: string;
  algorithm: TsigAlgorithm;
  secret: Buffer;
}

/** The TSIG RR as read from a message (§4.2). */
export interface TsigRecord {
  keyName: string;
  algorithm: string;
  /** Seconds since the epoch. */
  timeSigned: number;
  fudge: number;
  mac: Buffer;
  originalId: number;
  error: number;
  otherData: Buffer;
}

/** A message split at its TSIG: the message as it was before signing (§4.3.3: original ID, ARCOUNT − 1), and the record. */
export interface Split {
  unsigned: Buffer;
  tsig: TsigRecord;
}

/** Uncompressed, lower-case wire form of a name: the canonical form the digest covers (§4.3.3). */
export function canonicalName(name: string): Buffer {
  const labels = name.toLowerCase().replace(/\.$/, '').split('.').filter(Boolean);
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function u48(n: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUIntBE(n, 0, 6);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** Walks a (possibly compressed) name; returns its text and the offset past it, or undefined when malformed. */
function readName(buf: Buffer, off: number): { name: string; end: number } | undefined {
  const labels: string[] = [];
  let end = -1;
  for (let hops = 0; hops < 128; hops++) {
    const len = buf[off];
    if (len === undefined) return undefined;
    if (len === 0) return { name: labels.join('.').toLowerCase(), end: end === -1 ? off + 1 : end };
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length) return undefined;
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (target >= off) return undefined;
      if (end === -1) end = off + 2;
      off = target;
      continue;
    }
    if (len > 63 || off + 1 + len > buf.length) return undefined;
    labels.push(buf.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  return undefined;
}

/** Offset of the last record in the message, if the message parses that far (header counts honoured); undefined when malformed. */
function lastRecord(msg: Buffer): { offset: number; rdata: number; rdlen: number; type: number } | undefined {
  if (msg.length < 12) return undefined;
  const qd = msg.readUInt16BE(4);
  const total = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  let off = 12;
  for (let i = 0; i < qd; i++) {
    const n = readName(msg, off);
    if (!n || n.end + 4 > msg.length) return undefined;
    off = n.end + 4;
  }
  let last: { offset: number; rdata: number; rdlen: number; type: number } | undefined;
  for (let i = 0; i < total; i++) {
    const n = readName(msg, off);
    if (!n || n.end + 10 > msg.length) return undefined;
    const rdlen = msg.readUInt16BE(n.end + 8);
    if (n.end + 10 + rdlen > msg.length) return undefined;
    last = { offset: off, rdata: n.end + 10, rdlen, type: msg.readUInt16BE(n.end) };
    off = n.end + 10 + rdlen;
  }
  return last;
}

/**
 * The TSIG of a message, when it has one: it must be the last record of the additional section
 * (§5.2: "If a TSIG record is present in any other position, the DNS message is dropped and a
 * response with RCODE 1 (FORMERR) MUST be returned"). 'malformed' for a TSIG that does not parse.
 */
export function splitTsig(msg: Buffer): Split | 'malformed' | undefined {
  if (msg.length < 12 || msg.readUInt16BE(10) === 0) return undefined;
  const last = lastRecord(msg);
  if (!last) return undefined;
  if (last.type !== TSIG_TYPE) return undefined;
  const owner = readName(msg, last.offset);
  const alg = readName(msg, last.rdata);
  if (!owner || !alg) return 'malformed';
  let p = alg.end;
  const end = last.rdata + last.rdlen;
  if (p + 10 > end) return 'malformed';
  const timeSigned = msg.readUIntBE(p, 6);
  const fudge = msg.readUInt16BE(p + 6);
  const macLen = msg.readUInt16BE(p + 8);
  p += 10;
  if (p + macLen + 6 > end) return 'malformed';
  const mac = Buffer.from(msg.subarray(p, p + macLen));
  p += macLen;
  const originalId = msg.readUInt16BE(p);
  const error = msg.readUInt16BE(p + 2);
  const otherLen = msg.readUInt16BE(p + 4);
  p += 6;
  if (p + otherLen !== end) return 'malformed';
  const otherData = Buffer.from(msg.subarray(p, p + otherLen));
  const unsigned = Buffer.from(msg.subarray(0, last.offset));
  unsigned.writeUInt16BE(originalId, 0);
  unsigned.writeUInt16BE(msg.readUInt16BE(10) - 1, 10);
  return { unsigned, tsig: { keyName: owner.name, algorithm: alg.name, timeSigned, fudge, mac, originalId, error, otherData } };
}

/** §4.3.3: the TSIG variables the digest covers after the message (all of them, or only the timers, §5.3.1). */
function variables(key: TsigKey, timeSigned: number, fudge: number, error: number, otherData: Buffer, timersOnly: boolean): Buffer {
  if (timersOnly) return Buffer.concat([u48(timeSigned), u16(fudge)]);
  return Buffer.concat([
    canonicalName(key.name), u16(CLASS_ANY), Buffer.alloc(4) /* TTL 0 */, canonicalName(key.algorithm),
    u48(timeSigned), u16(fudge), u16(error), u16(otherData.length), otherData,
  ]);
}

function hmac(key: TsigKey, parts: Buffer[]): Buffer {
  const h = createHmac('sha256', key.secret);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** A request or response MAC as the next digest takes it: its length, then the MAC (§4.3.1, §5.3.1). */
function prefixed(mac: Buffer): Buffer {
  return Buffer.concat([u16(mac.length), mac]);
}

export interface SignOptions {
  /** Seconds since the epoch (default: now). */
  now?: number;
  fudge?: number;
  /** The request's MAC, when signing a response to a signed request (§5.3). */
  requestMac?: Buffer;
  /** The previous message's MAC, for the second and later messages of a transfer (§5.3.1): only the timers are covered. */
  priorMac?: Buffer;
  /** A TSIG error (BADTIME is signed, §5.2.3; BADSIG and BADKEY go out unsigned, see unsignedError). */
  error?: number;
  otherData?: Buffer;
}

/** Appends a TSIG to `msg` (a complete message without one); returns the signed wire and its MAC, for the next message. */
export function sign(msg: Buffer, key: TsigKey, o: SignOptions = {}): { wire: Buffer; mac: Buffer } {
  const now = o.now ?? Math.floor(Date.now() / 1000);
  const fudge = o.fudge ?? DEFAULT_FUDGE;
  const error = o.error ?? 0;
  const other = o.otherData ?? Buffer.alloc(0);
  const chained = o.priorMac ?? o.requestMac;
  const mac = hmac(key, [...(chained ? [prefixed(chained)] : []), msg, variables(key, now, fudge, error, other, o.priorMac !== undefined)]);
  return { wire: appendTsig(msg, key, now, fudge, mac, error, other), mac };
}

/**
 * A reply to a request whose TSIG could not be checked (BADKEY, BADSIG, BADTRUNC): §5.2 says the
 * TSIG goes back with the error and an empty MAC, unsigned, since the server could not (or must not) use the key.
 */
export function unsignedError(msg: Buffer, keyName: string, algorithm: string, error: number, now = Math.floor(Date.now() / 1000)): Buffer {
  return appendTsig(msg, { name: keyName, algorithm: algorithm as TsigAlgorithm, secret: Buffer.alloc(0) }, now, DEFAULT_FUDGE, Buffer.alloc(0), error, Buffer.alloc(0));
}

function appendTsig(msg: Buffer, key: TsigKey, now: number, fudge: number, mac: Buffer, error: number, other: Buffer): Buffer {
  const rdata = Buffer.concat([canonicalName(key.algorithm), u48(now), u16(fudge), u16(mac.length), mac, u16(msg.readUInt16BE(0)), u16(error), u16(other.length), other]);
  const rr = Buffer.concat([canonicalName(key.name), u16(TSIG_TYPE), u16(CLASS_ANY), Buffer.alloc(4), u16(rdata.length), rdata]);
  const out = Buffer.concat([msg, rr]);
  out.writeUInt16BE(msg.readUInt16BE(10) + 1, 10);
  return out;
}

export type Verified =
  | { ok: true; key: TsigKey; mac: Buffer; timeSigned: number }
  /** `tsig` is set when the message had one: the reply carries the error back under its key name (§5.2). */
  | { ok: false; error: number; reason: string; tsig?: TsigRecord };

/**
 * Checks a signed request (§5.2): the key by name and algorithm (BADKEY), the MAC (BADSIG), then
 * the time (BADTIME); in that order, so that a forged message learns nothing about the clock.
 * `requestMac`/`priorMac` when verifying a response or a later message of a transfer.
 */
export function verify(
  split: Split, keys: readonly TsigKey[], o: { now?: number; requestMac?: Buffer; priorMac?: Buffer } = {},
): Verified {
  const t = split.tsig;
  const key = keys.find((k) => k.name === t.keyName.replace(/\.$/, '') && k.algorithm === t.algorithm.replace(/\.$/, ''));
  if (!key) return { ok: false, error: TSIG_ERROR.BADKEY, reason: `unknown key "${t.keyName}" (${t.algorithm})`, tsig: t };
  if (t.mac.length !== SHA256_MAC_BYTES) return { ok: false, error: TSIG_ERROR.BADTRUNC, reason: `MAC of ${t.mac.length} bytes; only full-length HMAC-SHA256 is accepted`, tsig: t };
  const chained = o.priorMac ?? o.requestMac;
  const expected = hmac(key, [...(chained ? [prefixed(chained)] : []), split.unsigned, variables(key, t.timeSigned, t.fudge, t.error, t.otherData, o.priorMac !== undefined)]);
  if (!timingSafeEqual(expected, t.mac)) return { ok: false, error: TSIG_ERROR.BADSIG, reason: 'the MAC does not match (wrong secret, or the message was altered)', tsig: t };
  const now = o.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t.timeSigned) > t.fudge) return { ok: false, error: TSIG_ERROR.BADTIME, reason: `signed at ${t.timeSigned}, ${now - t.timeSigned} s from this clock (fudge ${t.fudge} s)`, tsig: t };
  return { ok: true, key, mac: t.mac, timeSigned: t.timeSigned };
}

/** A key from its secret file's text: base64, as BIND's `secret "…";` and dig -y write it. */
export function parseSecret(text: string): Buffer | string {
  const s = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) return 'expected the secret in base64 (as tsig-keygen prints it)';
  const b = Buffer.from(s, 'base64');
  // §6: a key shorter than the hash's output weakens it; tsig-keygen makes 32 bytes for hmac-sha256.
  if (b.length < 16) return `the secret is ${b.length} bytes; use at least 16 (tsig-keygen -a hmac-sha256 makes 32)`;
  return b;
}
