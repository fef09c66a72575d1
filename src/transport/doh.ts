// DNS over HTTPS for clients (RFC 8484): HTTP/2, and HTTP/1.1 for clients
// that offer only that (one ALPN flag in Node), on the path /dns-query, with
// GET (?dns=base64url) and POST (application/dns-message). Each request is
// one query through the same handler as UDP and TCP; the client address for
// policy is the TCP peer.
//
// Limits, like the TCP listener's: connections (counted from the first byte,
// handshakes included), HTTP/2 streams per connection, request size (one DNS
// message, 65535 octets), a handshake timeout and an idle timeout.
import http2, { type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { RCODE } from '../dns/constants.js';
import { scanReply } from '../dns/message.js';
import { padReply, queryPadded } from '../dns/padding.js';
import { decodeQuery } from '../dns/query.js';
import { normalizeAddress } from '../policy/cidr.js';
import { isPromise, type Handler, type Outcome } from '../pipeline/types.js';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';
import { dropFailedHandshakes, HANDSHAKE_TIMEOUT_MS } from './dot.js';
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

type Req = Http2ServerRequest;
type Res = Http2ServerResponse;

export interface DohLimits {
  idleTimeoutMs: number;
  maxConnections: number;
}

export class DohListener {
  private server: http2.Http2SecureServer | undefined;
  private readonly sessions = new Set<ServerHttp2Session>();
  /** HTTP/1.1 connections → requests in flight on each. */
  private readonly http1 = new Map<TLSSocket, number>();
  private inflight = 0;
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
  ) {}

  /** HTTP/2 sessions and HTTP/1.1 connections open now. */
  get connections(): number {
    return this.sessions.size + this.http1.size;
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
    server.maxConnections = this.limits.maxConnections;
    dropFailedHandshakes(server);
    this.cert.attach(server);
    server.on('secureConnection', (sock: TLSSocket) => this.onConnection(sock));
    server.on('session', (s: ServerHttp2Session) => this.onSession(s));
    server.on('request', (req: Req, res: Res) => this.onRequest(req, res));
    server.on('sessionError', () => {}); // the session is destroyed; nothing else to do
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: this.endpoint.host, reusePort }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.log.warn('SH_TCP', 'DoH server error', { error: e.message }));
    this.server = server;
    return server.address() as AddressInfo;
  }

  /** A client outside allowFrom still gets its REFUSED answer, but cannot hold a connection (as in tcp.ts). */
  private idleFor(sock: TLSSocket): number {
    return this.allowed(normalizeAddress(sock.remoteAddress ?? '')) ? this.limits.idleTimeoutMs : Math.min(1000, this.limits.idleTimeoutMs);
  }

  private onConnection(sock: TLSSocket): void {
    sock.on('error', () => {});
    if (sock.alpnProtocol === 'h2') return; // onSession takes it
    this.http1.set(sock, 0);
    sock.once('close', () => this.http1.delete(sock));
    sock.setTimeout(this.idleFor(sock), () => {
      if (!this.http1.get(sock)) sock.destroy(); // idle; a request in flight finishes first
    });
  }

  private onSession(s: ServerHttp2Session): void {
    this.sessions.add(s);
    s.once('close', () => this.sessions.delete(s));
    s.on('error', () => {});
    // No frame for this long: GOAWAY, streams in flight still finish (RFC 9113 §6.8).
    s.setTimeout(this.idleFor(s.socket as TLSSocket), () => s.close());
    if (this.closing) s.close();
  }

  private onRequest(req: Req, res: Res): void {
    req.on('error', () => {});
    res.on('error', () => {});
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
      const q = decodeQuery(msg, client, 'doh', performance.now());
      // Shorter than a header, or a response: not a query (RFC 8484 §4.2.1: 400).
      if (!q) return this.refuse(res, 400, 'not a DNS query');
      const r = this.handler(q);
      // A padded query gets a padded reply (RFC 7830 §4).
      const padded = queryPadded(q);
      if (!isPromise(r)) return this.reply(req, res, r, padded);
      this.inflight++;
      const sock = this.http1.has(req.socket as TLSSocket) ? (req.socket as TLSSocket) : undefined;
      if (sock) this.http1.set(sock, (this.http1.get(sock) ?? 0) + 1);
      r.then(
        (o) => this.reply(req, res, o, padded),
        () => this.refuse(res, 500, 'internal error'),
      ).finally(() => {
        if (sock && this.http1.has(sock)) this.http1.set(sock, this.http1.get(sock)! - 1);
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
    for (const [sock, pending] of this.http1) if (pending === 0) sock.destroy();
    if (this.inflight > 0) await new Promise<void>((r) => (this.drained = r));
    for (const sock of this.http1.keys()) sock.end();
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
