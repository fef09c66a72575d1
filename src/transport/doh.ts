// DNS over HTTPS for clients (RFC 8484): HTTP/2, and HTTP/1.1 for clients
// that offer only that (one ALPN flag in Node), on the path /dns-query, with
// GET (?dns=base64url) and POST (application/dns-message). Each request is
// one query through the same handler as UDP and TCP; the client address for
// policy is the TCP peer.
//
// Limits, like the TCP listener's: connection slots taken at accept (handshakes
// included) with the per-client cap and eviction of transport/tcpSlots.ts,
// HTTP/2 streams per connection, request size (one DNS message, 65535
// octets), a handshake timeout and an idle timeout. Hostile clients (issue 23):
// - HTTP/2 rapid reset (CVE-2023-44487): client stream resets have a budget
//   per address; past it the session gets GOAWAY ENHANCE_YOUR_CALM and is
//   closed, the address's other sessions go at their next stream, and the
//   address is refused at accept for a while; and at most a few requests of
//   a connection, and a few dozen of all, are handled per event-loop turn
//   (the rest wait their turn, round robin, and those reset meanwhile cost nothing);
// - slow clients (HTTP/1.1 has no header timeout inside an HTTP/2 server):
//   the first request must be in (headers and body) within a deadline of
//   the accept, each request's body within one of its headers, and on
//   HTTP/1.1 the next request's headers within the idle timeout.
//
// Over 400 lines on purpose (docs/design.md §5): one listener whose limits (slots, streams, rapid-reset
// budget, HTTP/1.1 deadlines, the per-turn round robin) only make sense read together.
import { listenOnce } from '../net/listen.js';
import http2, { type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { RCODE } from '../dns/constants.js';
import { scanReply } from '../dns/message.js';
import { padReply, queryPadded } from '../dns/padding.js';
import { decodeQuery } from '../dns/query.js';
import { normalizeAddress } from '../net/cidr.js';
import { isPromise, type Handler, type Outcome } from '../pipeline/types.js';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';
import { dropFailedHandshakes, HANDSHAKE_TIMEOUT_MS } from './dot.js';
import { Accepted, admitAtAccept, SlotTable } from './tcpSlots.js';
import type { Certificate } from './tlsFiles.js';

/** RFC 8484 §5: the path is the server's to choose; /dns-query is the one every client defaults to. */
export const DOH_PATH = '/dns-query';
/** HTTP/2 streams one connection may have open (as MAX_INFLIGHT_PER_CONNECTION in tcp.ts). */
export const MAX_STREAMS = 100;
/** RFC 8484 §6: one DNS message; the base64url of 65535 octets is 87380 characters. */
const MAX_MESSAGE = 65535;
const MAX_GET_PARAM = 87_380;
const DNS_MESSAGE = 'application/dns-message';
const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/;
/** Requests of one connection handled in one event-loop turn (as MAX_FRAMES_PER_TURN in tcp.ts). */
export const MAX_REQUESTS_PER_TURN = 8;
/**
 * Requests the whole listener handles in one turn, taken from its connections in turn (round robin).
 * Per connection alone, 12 connections × 8 were still ~100 answers in one turn (30-60 ms), and UDP
 * queries on the same thread waited behind them: a rapid-reset client's streams are answered before
 * its RST_STREAM frames arrive, so they cost full work until its reset budget runs out.
 */
export const MAX_REQUESTS_PER_TURN_ALL = 32;
/**
 * Client stream resets one address may send in RESET_WINDOW_MS, over all its HTTP/2 connections
 * (CVE-2023-44487); a browser cancels a few. Per address, not per connection: 12 connections with a
 * budget each were 1,200 streams set up at once (~200 ms of one turn, most of it Node's stream objects
 * and their garbage), where one budget for the address is about 100.
 */
export const MAX_RESETS = 100;
const RESET_WINDOW_MS = 10_000;
/** An address whose connection ran over MAX_RESETS is refused at accept this long (each reconnect would cost a handshake). */
export const CALM_DOWN_MS = 10_000;
/** Headers (and body) of a request must be in within this of the accept (first request) or of its headers (body); at most the idle timeout. */
export const REQUEST_DEADLINE_MS = 5000;

type Req = Http2ServerRequest;
type Res = Http2ServerResponse;

export interface DohLimits {
  idleTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerClient: number;
}

/** A DoH connection's slot: admitted at accept, busy while it has requests in flight. */
class Slot extends Accepted {
  /** HTTP/1.1 after the handshake: its TLS socket (no HTTP/2 session to close). */
  http1: TLSSocket | undefined;
  handledThisTurn = 0;
  /** The listener's turn that handledThisTurn counts. */
  turn = 0;
  openedThisTurn = 0;
  readonly deferred: (() => void)[] = [];
  /** The deadline of the request being waited for (first request, HTTP/1.1 next request). */
  waiting: NodeJS.Timeout | undefined;
}

export class DohListener {
  private server: http2.Http2SecureServer | undefined;
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly slots: SlotTable<Slot>;
  private slotOf: (peer: { remoteAddress?: string | undefined; remotePort?: number | undefined }) => Slot | undefined = () => undefined;
  /** Addresses that ran over the stream-reset budget → until when they are refused at accept. */
  private readonly calmDown = new Map<string, number>();
  /** Stream resets per address in its current window (bounded like calmDown). */
  private readonly resets = new Map<string, { count: number; since: number }>();
  /** Streams we closed ourselves (a deadline): not the client's resets. */
  private readonly ourResets = new WeakSet<ServerHttp2Stream>();
  private inflight = 0;
  /** Connections with requests waiting for a turn, in the order they are served (round robin). */
  private readonly ready: Slot[] = [];
  private turn = 0;
  private handledThisTurn = 0;
  private turnArmed = false;
  /** Connections refused at accept (caps reached with nothing idle, or calming down), and sessions closed for resets (metrics). */
  refused = 0;
  calmed = 0;
  private drained: (() => void) | undefined;
  private closing = false;

  constructor(
    private readonly endpoint: Endpoint,
    private readonly handler: Handler,
    private readonly cert: Certificate,
    private readonly limits: DohLimits,
    private readonly log: Logger,
    /** Whether an address is inside clients.allowFrom (current policy). */
    private readonly allowed: (client: string) => boolean = () => true,
  ) {
    this.slots = new SlotTable(limits.maxConnections, limits.maxConnectionsPerClient);
  }

  /** Connections open now: HTTP/2 sessions, HTTP/1.1 connections and handshakes. */
  get connections(): number {
    return this.slots.size;
  }

  /** Idle connections closed to make room for another (metrics). */
  get evictions(): number {
    return this.slots.evictions;
  }

  private get deadlineMs(): number {
    return Math.min(REQUEST_DEADLINE_MS, this.limits.idleTimeoutMs);
  }

  /** `reusePort`: several query threads listen on the same address (SO_REUSEPORT; app.ts DataPlane). */
  async start(port = this.endpoint.port, reusePort = false): Promise<AddressInfo> {
    const server = http2.createSecureServer({
      cert: this.cert.current.cert,
      key: this.cert.current.key,
      allowHTTP1: true,
      minVersion: 'TLSv1.2',
      handshakeTimeout: Math.min(HANDSHAKE_TIMEOUT_MS, this.limits.idleTimeoutMs),
      settings: { maxConcurrentStreams: MAX_STREAMS, enablePush: false },
    });
    // No server.maxConnections: Node would refuse past it before the slots can evict anything idle.
    this.slotOf = admitAtAccept(server, this.slots, (client, sock) => this.onAccept(client, sock), () => this.refused++, (client) => this.calmingDown(client));
    dropFailedHandshakes(server);
    this.cert.attach(server);
    server.on('secureConnection', (sock: TLSSocket) => this.onConnection(sock));
    server.on('session', (s: ServerHttp2Session) => this.onSession(s));
    server.on('request', (req: Req, res: Res) => this.onRequest(req, res));
    server.on('sessionError', () => {}); // the session is destroyed; nothing else to do
    const bound = await listenOnce(server, { port, host: this.endpoint.host, reusePort });
    server.on('error', (e) => this.log.warn('SH_TCP', 'DoH server error', { error: e.message }));
    this.server = server;
    return bound;
  }

  /** A client outside allowFrom still gets its REFUSED answer, but cannot hold a connection (as in tcp.ts). */
  private idleFor(sock: TLSSocket): number {
    return this.allowed(normalizeAddress(sock.remoteAddress ?? '')) ? this.limits.idleTimeoutMs : Math.min(1000, this.limits.idleTimeoutMs);
  }

  /** A raw TCP connection, before its handshake: admitted (tcpSlots.ts), and given until the deadline to ask something. */
  private onAccept(client: string, sock: Socket): Slot {
    const slot = new Slot(client, sock);
    slot.waiting = setTimeout(() => sock.destroy(), this.deadlineMs).unref();
    sock.once('close', () => clearTimeout(slot.waiting));
    return slot;
  }

  private onConnection(sock: TLSSocket): void {
    sock.on('error', () => {});
    if (sock.alpnProtocol === 'h2') return; // onSession takes it
    const slot = this.slotOf(sock);
    if (!slot) return void sock.destroy();
    slot.http1 = sock;
    sock.setTimeout(this.idleFor(sock), () => {
      if (slot.idle) sock.destroy(); // idle; a request in flight finishes first
    });
  }

  private onSession(s: ServerHttp2Session): void {
    this.sessions.add(s);
    s.once('close', () => this.sessions.delete(s));
    s.on('error', () => {});
    // No frame for this long: GOAWAY, streams in flight still finish (RFC 9113 §6.8).
    s.setTimeout(this.idleFor(s.socket as TLSSocket), () => s.close());
    if (this.closing) s.close();
    const slot = this.slotOf(s.socket);
    if (!slot) return void s.destroy();
    // Rapid reset (CVE-2023-44487): a stream the client resets cost us its setup and nothing it
    // bounds (it no longer counts against maxConcurrentStreams), so the resets themselves are budgeted.
    s.on('stream', (stream: ServerHttp2Stream) => {
      // More streams opened in one turn than may be open at once: the client resets them as it opens
      // them. Counted here, as each HEADERS is read: a reset is seen only after the whole read is parsed.
      if (slot.openedThisTurn++ === 0) setImmediate(() => (slot.openedThisTurn = 0));
      if (slot.openedThisTurn > MAX_STREAMS) return this.calm(s, slot, `${slot.openedThisTurn} streams opened in one turn`);
      // Another connection of this address ran over the budget: this one goes too, before its next stream is set up.
      if (this.calmingDown(slot.client)) return this.calm(s, slot, 'another connection of this address ran over the reset budget');
      stream.once('close', () => {
        if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR || this.ourResets.has(stream) || s.destroyed) return;
        const count = this.countReset(slot.client);
        if (count > MAX_RESETS) this.calm(s, slot, `${count} streams reset in ${RESET_WINDOW_MS / 1000} s`);
      });
    });
  }

  /** One more client reset for this address: its count in the current window. */
  private countReset(client: string): number {
    const now = performance.now();
    let r = this.resets.get(client);
    if (!r || now - r.since > RESET_WINDOW_MS) {
      if (!r && this.resets.size >= 4096) this.resets.clear(); // bounded; a forgotten address only gets a fresh budget
      r = { count: 0, since: now };
      this.resets.set(client, r);
    }
    return ++r.count;
  }

  private calmingDown(client: string): boolean {
    const until = this.calmDown.get(client);
    if (until === undefined) return false;
    if (performance.now() < until) return true;
    this.calmDown.delete(client);
    return false;
  }

  /** Over the reset budget: GOAWAY ENHANCE_YOUR_CALM (RFC 9113 §7), closed, and the address refused for a while. */
  private calm(s: ServerHttp2Session, slot: Slot, why: string): void {
    if (s.destroyed) return;
    this.calmed++;
    // One line per address and period, however many connections it had going.
    const quiet = this.calmingDown(slot.client);
    if (this.calmDown.size >= 4096) this.calmDown.clear(); // bounded; a forgotten address only gets a fresh budget
    this.calmDown.set(slot.client, performance.now() + CALM_DOWN_MS);
    if (!quiet) this.log.warn('SH_CONN_ABUSE', 'DoH connection closed: HTTP/2 streams reset faster than allowed (CVE-2023-44487)', {
      client: slot.client, why, refusedForMs: CALM_DOWN_MS,
    });
    // Destroyed with a code: Node writes a final GOAWAY with it, and reads nothing more (a GOAWAY
    // alone would only be sent after the rest of this read, every stream of it set up first).
    s.destroy(undefined, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /**
   * At most MAX_REQUESTS_PER_TURN requests of a connection, and MAX_REQUESTS_PER_TURN_ALL of all, per
   * event-loop turn; the rest wait for the next turns, served round robin (a reset one is skipped).
   */
  private onRequest(req: Req, res: Res): void {
    req.on('error', () => {});
    res.on('error', () => {});
    const slot = this.slotOf(req.socket);
    if (!slot) return void res.stream?.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    this.begin(slot, req, res);
    this.armTurn();
    if (slot.turn !== this.turn) {
      slot.turn = this.turn;
      slot.handledThisTurn = 0;
    }
    if (slot.deferred.length === 0 && slot.handledThisTurn < MAX_REQUESTS_PER_TURN && this.handledThisTurn < MAX_REQUESTS_PER_TURN_ALL) {
      slot.handledThisTurn++;
      this.handledThisTurn++;
      return this.route(req, res);
    }
    // Only a request that waits for a later turn needs a closure.
    if (slot.deferred.push(() => this.route(req, res)) === 1) this.ready.push(slot);
  }

  /** A turn boundary after this one: the counters start again, and waiting requests get their share. */
  private armTurn(): void {
    if (this.turnArmed) return;
    this.turnArmed = true;
    setImmediate(() => this.nextTurn());
  }

  private nextTurn(): void {
    this.turnArmed = false;
    this.turn++;
    this.handledThisTurn = 0;
    // One request per connection per pass, so a connection with many waiting cannot starve a newcomer.
    for (let progress = true; progress && this.ready.length && this.handledThisTurn < MAX_REQUESTS_PER_TURN_ALL; ) {
      progress = false;
      for (let n = this.ready.length; n > 0 && this.handledThisTurn < MAX_REQUESTS_PER_TURN_ALL; n--) {
        const slot = this.ready.shift()!;
        if (slot.turn !== this.turn) {
          slot.turn = this.turn;
          slot.handledThisTurn = 0;
        }
        if (slot.handledThisTurn < MAX_REQUESTS_PER_TURN) {
          slot.handledThisTurn++;
          this.handledThisTurn++;
          slot.deferred.shift()!();
          progress = true;
        }
        if (slot.deferred.length) this.ready.push(slot);
      }
    }
    if (this.ready.length) this.armTurn();
  }

  /** The request is in flight on its slot until its response closes; its body has a deadline. */
  private begin(slot: Slot, req: Req, res: Res): void {
    clearTimeout(slot.waiting);
    slot.begin();
    const body = req.readableEnded
      ? undefined
      : setTimeout(() => {
          if (req.readableEnded) return;
          // A body dripped a byte at a time would hold the request (and an HTTP/1.1 connection) forever.
          if (slot.http1) return void slot.socket.destroy();
          const stream = res.stream;
          if (stream) {
            this.ourResets.add(stream);
            stream.close(http2.constants.NGHTTP2_CANCEL);
          }
        }, this.deadlineMs).unref();
    req.once('end', () => clearTimeout(body));
    res.once('close', () => {
      clearTimeout(body);
      slot.end();
      // HTTP/1.1 keep-alive: the next request's headers must be in within the idle timeout (bytes do not extend it).
      if (slot.http1 && slot.idle && !slot.socket.destroyed) {
        slot.waiting = setTimeout(() => slot.socket.destroy(), this.idleFor(req.socket as TLSSocket)).unref();
      }
    });
  }

  private route(req: Req, res: Res): void {
    if (res.stream?.destroyed || req.socket?.destroyed) return; // reset, or gone, while it waited for its turn
    const url = req.url ?? '';
    const qmark = url.indexOf('?');
    const path = qmark === -1 ? url : url.slice(0, qmark);
    if (path !== DOH_PATH) return this.refuse(res, 404, `not found: DNS queries go to ${DOH_PATH}`);
    if (req.method === 'GET') {
      const dns = qmark === -1 ? null : new URLSearchParams(url.slice(qmark + 1)).get('dns');
      if (!dns) return this.refuse(res, 400, 'missing the dns parameter (RFC 8484 §4.1)');
      if (dns.length > MAX_GET_PARAM) return this.refuse(res, 414, 'a DNS message is at most 65535 octets');
      if (!BASE64URL.test(dns)) return this.refuse(res, 400, 'the dns parameter is not base64url (RFC 4648 §5)');
      return this.answer(req, res, Buffer.from(dns, 'base64url'));
    }
    if (req.method === 'POST') {
      const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== DNS_MESSAGE) return this.refuse(res, 415, `content-type must be ${DNS_MESSAGE}`);
      if (Number(req.headers['content-length'] ?? 0) > MAX_MESSAGE) return this.refuse(res, 413, 'a DNS message is at most 65535 octets');
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_MESSAGE) chunks.push(c);
        else if (!res.headersSent) this.refuse(res, 413, 'a DNS message is at most 65535 octets');
      });
      req.on('end', () => {
        if (size <= MAX_MESSAGE) this.answer(req, res, Buffer.concat(chunks, size));
      });
      return;
    }
    res.setHeader('allow', 'GET, POST');
    this.refuse(res, 405, 'DNS over HTTPS takes GET and POST');
  }

  private answer(req: Req, res: Res, msg: Buffer): void {
    if (res.headersSent) return;
    const client = normalizeAddress(req.socket.remoteAddress ?? '');
    try {
      const s = req.socket;
      const q = decodeQuery(msg, client, 'doh', performance.now(), s.remotePort ?? 0, { address: normalizeAddress(s.localAddress ?? ''), port: s.localPort ?? 0 });
      // Shorter than a header, or a response: not a query (RFC 8484 §4.2.1: 400).
      if (!q) return this.refuse(res, 400, 'not a DNS query');
      const r = this.handler(q);
      // A padded query gets a padded reply (RFC 7830 §4).
      const padded = queryPadded(q);
      if (!isPromise(r)) return this.reply(req, res, r, padded);
      this.inflight++;
      r.then(
        (o) => this.reply(req, res, o, padded),
        () => this.refuse(res, 500, 'internal error'),
      ).finally(() => {
        if (--this.inflight === 0) this.drained?.();
      });
    } catch (e) {
      this.log.error('SH_INTERNAL', 'DoH query dropped', { error: String(e) });
      this.refuse(res, 500, 'internal error');
    }
  }

  private reply(req: Req, res: Res, o: Outcome, padded: boolean): void {
    if (res.headersSent || res.writableEnded || res.stream?.destroyed) return; // the client went away
    const wire = padded ? padReply(o.wire) : o.wire;
    res.writeHead(200, {
      'content-type': DNS_MESSAGE,
      'content-length': wire.length,
      'cache-control': `max-age=${freshness(wire)}`,
    });
    res.end(wire);
    if (this.closing && req.httpVersionMajor === 1) res.socket?.end();
  }

  private refuse(res: Res, status: number, text: string): void {
    if (res.headersSent || res.writableEnded) return;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`${text}\n`);
  }

  /** Stops accepting; open connections get GOAWAY, and queries in flight are answered first. */
  async close(): Promise<void> {
    this.closing = true;
    const server = this.server;
    this.server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const s of this.sessions) s.close();
    const http1 = [...this.slots.all()].filter((slot) => slot.http1 || slot.opening);
    for (const slot of http1) if (slot.idle) slot.socket.destroy();
    if (this.inflight > 0) await new Promise<void>((r) => (this.drained = r));
    for (const slot of http1) (slot.http1 ?? slot.socket).end();
    for (const s of this.sessions) s.close();
    await closed;
  }
}

/**
 * RFC 8484 §5.1: an HTTP cache may keep the answer no longer than its
 * smallest answer TTL; a negative answer for its SOA's negative TTL
 * (RFC 2308 §5). Anything else (SERVFAIL, REFUSED) must not be cached.
 */
function freshness(wire: Buffer): number {
  const rcode = wire.length >= 4 ? wire[3]! & 0x0f : RCODE.SERVFAIL;
  if (rcode !== RCODE.NOERROR && rcode !== RCODE.NXDOMAIN) return 0;
  const scan = scanReply(wire);
  return scan?.minAnswerTtl ?? scan?.negativeTtl ?? 0;
}
