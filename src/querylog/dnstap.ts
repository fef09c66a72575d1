// dnstap output (log.dnstap): every query and answer, and every upstream
// exchange, as dnstap protobuf messages over Frame Streams (fstrm.ts), the
// format BIND, Unbound, Knot, CoreDNS and dnsdist emit. Sinkholed and
// excepted answers carry the dnstap Policy message.
//
// Encoded by hand: the messages are small and fixed, and a generic protobuf
// library would build an object per message on the query path. Field numbers
// are those of github.com/dnstap/dnstap.pb dnstap.proto (proto2):
//   Dnstap  { identity=1 bytes, version=2 bytes, message=14 Message, type=15 enum (MESSAGE=1) }
//   Message { type=1, socket_family=2, socket_protocol=3, query_address=4, response_address=5,
//             query_port=6, response_port=7, query_time_sec=8 uint64, query_time_nsec=9 fixed32,
//             query_message=10, response_time_sec=12, response_time_nsec=13 fixed32,
//             response_message=14, policy=15 Policy }
//   Policy  { type=1 string, rule=2 bytes, action=3 enum, match=4 enum, value=5 bytes }
// Each query thread writes its own stream, as Unbound does (one connection per thread).
import { whoAsked } from '../identity/whoAsked.js';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/config.js';
import type { Query } from '../dns/query.js';
import type { Logger } from '../log.js';
import { addressBytes as wireAddress } from '../net/cidr.js';
import type { Outcome } from '../pipeline/types.js';
import type { Observer } from '../stages/metrics.js';
import type { UpstreamSpec } from '../config/upstreamSpec.js';
import type { ForwarderTap } from '../upstream/forwarder.js';
import { truncatedReply, udpLimit } from '../dns/reply.js';
import { VERSION } from '../version.js';
import { FrameStreamWriter, type FstrmHealth, type FstrmTarget } from './fstrm.js';

export const CONTENT_TYPE = 'protobuf:dnstap.Dnstap';

/** Message.Type */
export const CLIENT_QUERY = 5;
export const CLIENT_RESPONSE = 6;
export const FORWARDER_QUERY = 7;
export const FORWARDER_RESPONSE = 8;
/** SocketFamily */
const INET = 1;
const INET6 = 2;
/** SocketProtocol: UDP, TCP, DOT (RFC 7858), DOH (RFC 8484). */
const PROTOCOL: Readonly<Record<string, number>> = { udp: 1, tcp: 2, dot: 3, doh: 4, tls: 3, https: 4 };
/** Policy.Action and Policy.Match */
const NXDOMAIN = 1;
const NODATA = 2;
const PASS = 3;
const LOCAL_DATA = 6;
const MATCH_QNAME = 1;
const MATCH_CLIENT_IP = 2;

export interface DnstapSettings {
  target: FstrmTarget;
  identity: string;
  client: boolean;
  forwarder: boolean;
  /** Messages that may wait unsent (collector slow or away); past this they are dropped and counted. */
  queue: number;
}

export const DNSTAP_QUEUE = 10_000;


/** Address bytes (4 or 16) of an address string; a bounded cache, since clients repeat. */
const addresses = new Map<string, Buffer | undefined>();
function addressBytes(a: string): Buffer | undefined {
  let b = addresses.get(a);
  if (b !== undefined || addresses.has(a)) return b;
  b = a ? wireAddress(a) : undefined;
  if (addresses.size >= 10_000) addresses.clear();
  addresses.set(a, b);
  return b;
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function writeVarint(b: Buffer, off: number, v: number): number {
  while (v >= 0x80) {
    b[off++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  b[off++] = v;
  return off;
}

/** Size of a length-delimited field (one-byte tag: every field number here is below 16). */
function bytesField(len: number): number {
  return 1 + varintSize(len) + len;
}

function writeBytes(b: Buffer, off: number, tag: number, data: Buffer): number {
  b[off++] = tag;
  off = writeVarint(b, off, data.length);
  data.copy(b, off);
  return off + data.length;
}

/** The name in DNS wire format (RFC 1035 §3.1), for Policy.value on a CNAME target's verdict. */
function wireName(name: string): Buffer {
  const parts = name === '' ? [] : name.split('.');
  return Buffer.concat([...parts.map((l) => Buffer.concat([Buffer.from([Math.min(63, l.length)]), Buffer.from(l, 'latin1').subarray(0, 63)])), Buffer.from([0])]);
}

/** A Policy message for a sinkholed or excepted answer; undefined for any other. */
export function policyFor(q: Query, o: Outcome): Buffer | undefined {
  let action: number;
  let match: number;
  let value: Buffer | undefined;
  if (o.result === 'blocked') {
    // What was sent: NXDOMAIN, NODATA (NOERROR, no answer), LOCAL_DATA (the configured addresses);
    // REFUSED has no Policy.Action, so it has none.
    const rcode = o.wire[3]! & 0x0f;
    const answers = o.wire.readUInt16BE(6);
    action = rcode === 3 ? NXDOMAIN : rcode === 0 ? (answers > 0 ? LOCAL_DATA : NODATA) : 0;
    match = MATCH_QNAME;
    // The name that matched: the question's own bytes, or the CNAME/HTTPS target's.
    value = o.viaTarget === undefined ? q.buf.subarray(12, q.qend - 4) : wireName(o.viaTarget);
  } else if (o.result === 'excepted') {
    // The answer passed because an exception names this client.
    action = PASS;
    match = MATCH_CLIENT_IP;
    value = addressBytes(whoAsked(q, o));
  } else {
    return undefined;
  }
  const type = Buffer.from('sinkhole');
  const rule = Buffer.from(`${o.list ?? ''}:${o.rule ?? ''}`);
  const len = bytesField(type.length) + bytesField(rule.length) + (action ? 2 : 0) + 2 + (value ? bytesField(value.length) : 0);
  const b = Buffer.allocUnsafe(len);
  let off = writeBytes(b, 0, 0x0a, type);
  off = writeBytes(b, off, 0x12, rule);
  if (action) {
    b[off++] = 0x18;
    b[off++] = action;
  }
  b[off++] = 0x20;
  b[off++] = match;
  if (value) writeBytes(b, off, 0x2a, value);
  return b;
}

export class DnstapWriter implements ForwarderTap {
  readonly stream: FrameStreamWriter;
  /** Dnstap.identity and Dnstap.version, encoded once. */
  private readonly head: Buffer;

  constructor(readonly settings: DnstapSettings, log: Logger) {
    this.stream = new FrameStreamWriter(settings.target, CONTENT_TYPE, settings.queue, log);
    const id = Buffer.from(settings.identity);
    const version = Buffer.from(`sinkhole ${VERSION}`);
    this.head = Buffer.allocUnsafe(bytesField(id.length) + bytesField(version.length));
    writeBytes(this.head, writeBytes(this.head, 0, 0x0a, id), 0x12, version);
  }

  /**
   * One Dnstap frame. Times are ms since the epoch (fractional); -1 = absent. `qa`/`ra` are the
   * initiator's and responder's address bytes, of one family.
   */
  emit(
    type: number, protocol: number, qa: Buffer | undefined, qport: number, ra: Buffer | undefined, rport: number,
    qtime: number, qmsg: Buffer | undefined, rtime: number, rmsg: Buffer | undefined, policy: Buffer | undefined,
  ): void {
    const family = (qa ?? ra)?.length === 16 ? INET6 : INET;
    const qsec = qtime >= 0 ? Math.floor(qtime / 1000) : 0;
    const rsec = rtime >= 0 ? Math.floor(rtime / 1000) : 0;
    const m =
      6 + (qa ? bytesField(qa.length) : 0) + (ra ? bytesField(ra.length) : 0) +
      (qport ? 1 + varintSize(qport) : 0) + (rport ? 1 + varintSize(rport) : 0) +
      (qtime >= 0 ? 1 + varintSize(qsec) + 5 : 0) + (qmsg ? bytesField(qmsg.length) : 0) +
      (rtime >= 0 ? 1 + varintSize(rsec) + 5 : 0) + (rmsg ? bytesField(rmsg.length) : 0) +
      (policy ? bytesField(policy.length) : 0);
    const len = this.head.length + bytesField(m) + 2;
    const s = this.stream;
    let off = s.reserve(len);
    if (off < 0) return;
    const b = s.frameBuf;
    off += this.head.copy(b, off);
    b[off++] = 0x72; // Dnstap.message
    off = writeVarint(b, off, m);
    b[off++] = 0x08;
    b[off++] = type;
    b[off++] = 0x10;
    b[off++] = family;
    b[off++] = 0x18;
    b[off++] = protocol;
    if (qa) off = writeBytes(b, off, 0x22, qa);
    if (ra) off = writeBytes(b, off, 0x2a, ra);
    if (qport) off = writeVarint(b, (b[off] = 0x30, off + 1), qport);
    if (rport) off = writeVarint(b, (b[off] = 0x38, off + 1), rport);
    if (qtime >= 0) {
      off = writeVarint(b, (b[off] = 0x40, off + 1), qsec);
      b[off++] = 0x4d; // fixed32
      off = b.writeUInt32LE(Math.min(999_999_999, Math.floor((qtime - qsec * 1000) * 1e6)), off);
    }
    if (qmsg) off = writeBytes(b, off, 0x52, qmsg);
    if (rtime >= 0) {
      off = writeVarint(b, (b[off] = 0x60, off + 1), rsec);
      b[off++] = 0x6d;
      off = b.writeUInt32LE(Math.min(999_999_999, Math.floor((rtime - rsec * 1000) * 1e6)), off);
    }
    if (rmsg) off = writeBytes(b, off, 0x72, rmsg);
    if (policy) off = writeBytes(b, off, 0x7a, policy);
    b[off++] = 0x78; // Dnstap.type = MESSAGE
    b[off++] = 1;
  }

  /** CLIENT_QUERY and CLIENT_RESPONSE (none for a query dropped without a reply). */
  client(q: Query, o: Outcome): void {
    const qa = addressBytes(q.client);
    const ra = addressBytes(q.local.address);
    const protocol = PROTOCOL[q.proto]!;
    const qtime = performance.timeOrigin + q.arrived;
    this.emit(CLIENT_QUERY, protocol, qa, q.port, ra, q.local.port, qtime, q.buf, -1, undefined, undefined);
    if (o.wire.length === 0) return;
    // The bytes a UDP client gets: truncated here as the transport will (rare: only oversized answers).
    const wire = q.proto === 'udp' && o.wire.length > udpLimit(q) ? truncatedReply(q, o.wire) : o.wire;
    const policy = o.list === undefined ? undefined : policyFor(q, o);
    this.emit(CLIENT_RESPONSE, protocol, qa, q.port, ra, q.local.port, qtime, undefined, performance.timeOrigin + performance.now(), wire, policy);
  }

  // FORWARDER_*: sinkhole is the initiator, the upstream the responder (dnstap.proto "Message" notes);
  // the query's own source address and port are left out (the pooled sockets' ports are not tracked).
  forwarderQuery(query: Buffer, u: UpstreamSpec, transport: string, at: number): void {
    const o = performance.timeOrigin;
    this.emit(FORWARDER_QUERY, PROTOCOL[transport]!, undefined, 0, addressBytes(u.host), u.port, o + at, query, -1, undefined, undefined);
  }

  forwarderResponse(reply: Buffer, u: UpstreamSpec, transport: string, sent: number, at: number): void {
    const o = performance.timeOrigin;
    this.emit(FORWARDER_RESPONSE, PROTOCOL[transport]!, undefined, 0, addressBytes(u.host), u.port, o + sent, undefined, o + at, reply, undefined);
  }

  close(): Promise<void> {
    return this.stream.close();
  }
}

/** The query-log observer for dnstap: one check when it is off. Reconfigured on reload. */
export class Dnstap implements Observer {
  private writer: DnstapWriter | undefined;
  private settings: DnstapSettings | undefined;
  /** Sent and dropped survive a writer replaced on reload. */
  private carried = { sent: 0, dropped: 0 };

  constructor(settings: DnstapSettings | undefined, private readonly log: Logger) {
    this.configure(settings);
  }

  configure(settings: DnstapSettings | undefined): void {
    if (JSON.stringify(settings) === JSON.stringify(this.settings)) return;
    if (this.writer) {
      this.carried.sent += this.writer.stream.health.sent;
      this.carried.dropped += this.writer.stream.health.dropped;
      void this.writer.close();
    }
    this.settings = settings;
    this.writer = settings ? new DnstapWriter(settings, this.log) : undefined;
  }

  /** The forwarder's hook, when forwarder messages are on. */
  get forwarderTap(): ForwarderTap | undefined {
    return this.writer?.settings.forwarder ? this.writer : undefined;
  }

  observe(q: Query, o: Outcome): void {
    const w = this.writer;
    if (w === undefined || !w.settings.client) return;
    w.client(q, o);
  }

  health(): FstrmHealth {
    const h = this.writer?.stream.health;
    return { sent: this.carried.sent + (h?.sent ?? 0), dropped: this.carried.dropped + (h?.dropped ?? 0), connected: h?.connected ?? false };
  }

  close(): Promise<void> {
    return this.writer?.close() ?? Promise.resolve();
  }
}

/** The settings a config asks for, or undefined when log.dnstap is absent. */
export function dnstapSettings(log: Config['log']): DnstapSettings | undefined {
  const d = log.dnstap;
  if (!d) return undefined;
  return {
    target: d.socket !== undefined ? { socket: d.socket } : { tcp: d.tcp! },
    identity: d.identity ?? hostname(),
    client: d.messages.includes('client'),
    forwarder: d.messages.includes('forwarder'),
    queue: d.queue,
  };
}
