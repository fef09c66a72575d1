// Reads a query's header, its one question and its OPT record straight from
// the Buffer. A generic decoder (dns2's Packet.parse) costs ~10× more per
// query on this hot path (../shared/bench/BASELINE.md), and the relayed bytes
// must stay untouched anyway (docs/design.md §2 "Forward raw bytes").
import { FLAG_CD, FLAG_QR, FLAG_RD, MIN_UDP_PAYLOAD, RCODE, TYPE } from './constants.js';
import { optionsFit } from './message.js';

/** The client's transport: also the `proto` metric label. dot = DNS over TLS, doh = DNS over HTTPS. */
export type Proto = 'udp' | 'tcp' | 'dot' | 'doh';

/** The address and port a query arrived on (for dnstap); one object per listener or connection, shared by its queries. */
export interface LocalAddress {
  readonly address: string;
  readonly port: number;
}

export const NO_LOCAL: LocalAddress = { address: '', port: 0 };

/** RFC 1996 §3: the NOTIFY opcode. */
export const OPCODE_NOTIFY = 4;

export interface Query {
  /** The bytes as received; never modified. */
  readonly buf: Buffer;
  readonly id: number;
  readonly opcode: number;
  readonly rd: boolean;
  readonly cd: boolean;
  /** Lower-cased, without the trailing dot; '' for the root. */
  readonly qname: string;
  readonly qtype: number;
  readonly qclass: number;
  /** Offset just past the question (12 + name + type + class); 12 when there is no readable question. */
  readonly qend: number;
  /** 0 when well-formed; otherwise the rcode to answer with (FORMERR, NOTIMP, BADVERS). */
  readonly problem: number;
  /** The client sent an OPT record (RFC 6891). */
  readonly edns: boolean;
  /** The largest UDP reply the client accepts: 512 without EDNS (RFC 6891 §6.2.5: never below 512). */
  readonly udpSize: number;
  /** DO bit (RFC 3225): the reply must echo it. */
  readonly dnssecOk: boolean;
  readonly client: string;
  /** The client's source port (0 when the transport does not say). */
  readonly port: number;
  /** Where the query arrived. */
  readonly local: LocalAddress;
  /** Offset of the OPT record's RDATA (its options), -1 without OPT. */
  readonly optRdata: number;
  /**
   * The OPT carries EDNS Client Subnet (RFC 7871) or dnsmasq's MAC option
   * (65001): the relay stage honours them from clients.trustedRelays and
   * strips them from every query it forwards.
   */
  readonly identityOptions: boolean;
  /** The device's MAC when a trusted relay sent it (set by the relay stage, never decoded from an untrusted client). */
  readonly mac: string | undefined;
  readonly proto: Proto;
  /** performance.now() when the query arrived, for the latency histogram. */
  readonly arrived: number;
}

/**
 * Decodes a query, or returns undefined when the packet should be dropped
 * without a reply: shorter than a header, or a response (QR=1) — answering
 * those would let two servers bounce packets at each other forever.
 */
export function decodeQuery(buf: Buffer, client: string, proto: Proto, arrived: number, port = 0, local: LocalAddress = NO_LOCAL): Query | undefined {
  if (buf.length < 12 || (buf[2]! & FLAG_QR) !== 0) return undefined;
  const opcode = (buf[2]! >> 3) & 0x0f;
  let problem = 0;
  let qname = '';
  let qtype = 0;
  let qclass = 0;
  let qend = 12;
  let edns = false;
  let udpSize = MIN_UDP_PAYLOAD;
  let dnssecOk = false;
  let optRdata = -1;
  let identityOptions = false;
  // RFC 1035 §4.1.1: only standard QUERY is implemented; NOTIFY (RFC 1996) is read like one, for the
  // RPZ zones pulled from a primary (stages/validate.ts), and is NOTIMP to everything else.
  if (opcode !== 0 && opcode !== OPCODE_NOTIFY) {
    problem = RCODE.NOTIMP;
  } else if (buf.readUInt16BE(4) !== 1) {
    problem = RCODE.FORMERR; // one question per message in practice (RFC 9619)
  } else {
    const name = readQuestionName(buf);
    if (name === undefined || name.end + 4 > buf.length) {
      problem = RCODE.FORMERR;
    } else {
      qname = name.name;
      qtype = buf.readUInt16BE(name.end);
      qclass = buf.readUInt16BE(name.end + 2);
      qend = name.end + 4;
      // The client's OPT is in the additional section; walk whatever follows the question.
      const rrs = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
      let off = qend;
      for (let i = 0; i < rrs; i++) {
        const end = skipName(buf, off);
        if (end < 0 || end + 10 > buf.length) {
          problem = RCODE.FORMERR;
          break;
        }
        const type = buf.readUInt16BE(end);
        const rdlen = buf.readUInt16BE(end + 8);
        if (end + 10 + rdlen > buf.length) {
          problem = RCODE.FORMERR;
          break;
        }
        if (type === TYPE.OPT) {
          // RFC 6891 §6.1.1: one OPT at most, in the additional section, owned by the root;
          // §6.1.2: its RDATA is a sequence of {code, length, data} options that fill it exactly.
          if (edns || i < rrs - buf.readUInt16BE(10) || end !== off + 1) {
            problem = RCODE.FORMERR;
            break;
          }
          edns = true;
          udpSize = Math.max(MIN_UDP_PAYLOAD, buf.readUInt16BE(end + 2));
          dnssecOk = (buf[end + 6]! & 0x80) !== 0;
          // RFC 6891 §6.1.3: only version 0, whose option layout we know; a later version gets BADVERS.
          if (buf[end + 5] !== 0) problem = RCODE.BADVERS;
          else if (!optionsFit(buf, end + 10, rdlen)) {
            problem = RCODE.FORMERR;
            break;
          }
          optRdata = end + 10;
          if (rdlen > 0) identityOptions = hasIdentityOption(buf, optRdata, optRdata + rdlen);
        }
        off = end + 10 + rdlen;
      }
    }
  }
  if (opcode === OPCODE_NOTIFY && problem === 0) problem = RCODE.NOTIMP;
  return {
    buf, id: buf.readUInt16BE(0), opcode, rd: (buf[2]! & FLAG_RD) !== 0, cd: (buf[3]! & FLAG_CD) !== 0,
    qname, qtype, qclass, qend, problem, edns, udpSize, dnssecOk, client, port, local, optRdata, identityOptions, mac: undefined, proto, arrived,
  };
}

/** RFC 7871 EDNS Client Subnet. */
export const OPTION_ECS = 8;
/** dnsmasq's add-mac: the client's MAC address (an option code from the local/experimental range, RFC 6891 §9). */
export const OPTION_MAC = 65001;

/** Whether the options in [off, end) include ECS or the MAC option; a malformed list says no (the relay stage re-checks). */
function hasIdentityOption(buf: Buffer, off: number, end: number): boolean {
  if (end > buf.length) return false;
  while (off + 4 <= end) {
    const code = buf.readUInt16BE(off);
    if (code === OPTION_ECS || code === OPTION_MAC) return true;
    off += 4 + buf.readUInt16BE(off + 2);
  }
  return false;
}

/** Scratch space for building a name: one pass over the bytes, then one string. */
const scratch = Buffer.allocUnsafe(512);

/**
 * The question name at offset 12, uncompressed (a pointer there could only
 * point backwards into the header). Labels are joined with dots and ASCII
 * letters folded to lower case (RFC 4343); other bytes are kept as they are.
 */
function readQuestionName(buf: Buffer): { name: string; end: number } | undefined {
  let off = 12;
  let n = 0;
  for (;;) {
    const len = buf[off];
    if (len === undefined || len > 63) return undefined;
    off++;
    if (len === 0) break;
    const end = off + len;
    if (end > buf.length || end - 12 + 1 > 255) return undefined; // RFC 1035 §2.3.4: 255 octets in all
    if (n > 0) scratch[n++] = 0x2e; // '.'
    for (; off < end; off++) {
      const c = buf[off]!;
      // A '.' or '\\' inside a label is escaped (RFC 4343 §2.1), so the one-label name
      // "www.example.com" never shares a cache key or a verdict with www.example.com.
      if (c === 0x2e || c === 0x5c) scratch[n++] = 0x5c;
      scratch[n++] = c >= 65 && c <= 90 ? c | 0x20 : c;
    }
  }
  return { name: scratch.toString('latin1', 0, n), end: off };
}

/** Offset just past a possibly compressed name, or -1 when it runs off the end or is malformed. */
export function skipName(buf: Buffer, off: number): number {
  for (;;) {
    const len = buf[off];
    if (len === undefined) return -1;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if (len > 63) return -1;
    off += len + 1;
  }
}
