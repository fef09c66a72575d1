// DNS over HTTPS to an upstream (RFC 8484), written `https://IP/dns-query#name`
// (or a host name with upstreams.tls.bootstrap). One HTTP/2 session per
// upstream carries every query as its own stream (RFC 8484 §5.2 recommends
// HTTP/2), so there is no pool and no ID matching: the stream is the match.
//
// POST, not GET. GET exists so that HTTP caches between client and server
// can cache answers (RFC 8484 §4.1), but sinkhole talks straight to the
// upstream's address and has its own DNS cache, so that buys nothing here.
// POST sends the padded query bytes as they are, where GET would base64url
// them into the URL (a string per query, and a longer request); and query
// names in URLs end up in HTTP access logs, bodies usually do not. The DNS
// ID is 0, as RFC 8484 §4.1 asks of every DoH client.
//
// Session life: GOAWAY (RFC 9113 §6.8) retires the session at once (new
// queries open a new one while the old drains its streams); a stream the
// server refused, or one on a warm session that died, is retried once on a
// fresh session within the same deadline. A PING every PING_MS finds a dead
// peer before a query waits on it, and a session idle for IDLE_MS is closed.
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { isIPv6 } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { padQuery, unpadReply } from '../dns/padding.js';
import { boundedExchange, isOurReply, UpstreamError } from './exchange.js';
import { dialTls, type DialTarget, type SessionStore, type TlsTrust } from './tlsDial.js';
import { rateLimitedWarn, type TransportContext, type UpstreamTransport } from './transport.js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** A session with no stream for this long is closed. */
export const IDLE_MS = 20_000;
/** How often a session is PINGed, idle or not. */
export const PING_MS = 10_000;
/** A PING unanswered this long means the peer is gone. */
export const PING_TIMEOUT_MS = 5_000;
/** RFC 8484 §6: a DNS message over HTTP is at most 65535 octets. */
const MAX_MESSAGE = 65535;
const DNS_MESSAGE = 'application/dns-message';

class Session {
  h2: ClientHttp2Session | undefined;
  ready!: Promise<ClientHttp2Session>;
  streams = 0;
  /** GOAWAY received, idle-closed or closed: no new streams. */
  retired = false;
  idle: NodeJS.Timeout | undefined;
  ping: NodeJS.Timeout | undefined;
  pinging = false;
}

export interface DohOptions {
  idleMs?: number;
  pingMs?: number;
  pingTimeoutMs?: number;
}

export class DohUpstream implements UpstreamTransport {
  private current: Session | undefined;
  private readonly all = new Set<Session>();
  private readonly sessions: SessionStore = {};
  private closing = false;
  private readonly warn: (message: string) => void;
  private readonly authority: string;
  private readonly idleMs: number;
  private readonly pingMs: number;
  private readonly pingTimeoutMs: number;

  constructor(
    private readonly target: DialTarget,
    private readonly path: string,
    private readonly trust: TlsTrust,
    private readonly ctx: TransportContext,
    opts: DohOptions = {},
  ) {
    this.warn = rateLimitedWarn(ctx);
    const host = target.authName ?? (isIPv6(target.host) ? `[${target.host}]` : target.host);
    this.authority = `https://${host}:${target.port}`;
    this.idleMs = opts.idleMs ?? IDLE_MS;
    this.pingMs = opts.pingMs ?? PING_MS;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? PING_TIMEOUT_MS;
  }

  exchange(query: Buffer, qend: number, timeoutMs: number): Promise<Buffer> {
    const { wire, addedOpt } = padQuery(query);
    wire.writeUInt16BE(0, 0); // RFC 8484 §4.1
    return boundedExchange(timeoutMs, `no DoH reply from ${this.ctx.label} in ${Math.round(timeoutMs)}ms`, (settle) => {
      let cancelled = false;
      let stream: ClientHttp2Stream | undefined;
      const attempt = (retried: boolean): void => {
        const s = this.session();
        const warm = s.h2 !== undefined;
        s.ready.then(
          (h2) => {
            if (cancelled) return;
            const retry = (why: string): void => {
              if (!retried && !cancelled) attempt(true);
              else settle(new UpstreamError('error', `${this.ctx.label}: ${why}`));
            };
            if (s.retired || h2.closed || h2.destroyed) return retry('the HTTP/2 session closed');
            let req: ClientHttp2Stream;
            try {
              req = h2.request(
                { ':method': 'POST', ':path': this.path, 'content-type': DNS_MESSAGE, accept: DNS_MESSAGE, 'content-length': wire.length },
                { endStream: false },
              );
            } catch (e) {
              // The session went away between our check and the request.
              this.retire(s);
              return retry((e as Error).message);
            }
            stream = req;
            this.started(s);
            let status = 0;
            let type = '';
            let size = 0;
            let done = false;
            let error = '';
            const chunks: Buffer[] = [];
            req.on('response', (h) => {
              status = Number(h[':status']);
              type = String(h['content-type'] ?? '');
            });
            req.on('data', (c: Buffer) => {
              size += c.length;
              if (size <= MAX_MESSAGE) chunks.push(c);
              else req.close(NGHTTP2_CANCEL);
            });
            req.on('end', () => {
              done = true;
              if (status !== 200) return settle(new UpstreamError('error', `${this.ctx.label}: HTTP status ${status}`));
              if (type.split(';')[0]!.trim().toLowerCase() !== DNS_MESSAGE) {
                return settle(new UpstreamError('error', `${this.ctx.label}: content-type "${type}", not ${DNS_MESSAGE}`));
              }
              if (size > MAX_MESSAGE) return settle(new UpstreamError('error', `${this.ctx.label}: reply over ${MAX_MESSAGE} octets`));
              const body = Buffer.concat(chunks, size);
              // The stream is the match, but the question must still be ours (RFC 5452 §9.1 in spirit).
              if (!isOurReply(body, 0, wire, qend)) return settle(new UpstreamError('error', `${this.ctx.label}: the reply does not answer our question`));
              settle(undefined, unpadReply(body, addedOpt));
            });
            req.on('error', (e) => (error = e.message));
            req.on('close', () => {
              this.ended(s);
              if (done || cancelled) return;
              done = true;
              // RFC 9113 §8.7: a refused stream was not processed and may be retried; so may a
              // query on a warm session that died under it (GOAWAY, idle close by the server).
              if (req.rstCode === NGHTTP2_REFUSED_STREAM || (warm && status === 0)) return retry(error || 'stream closed');
              settle(new UpstreamError('error', `${this.ctx.label}: ${error || `stream closed (code ${req.rstCode})`}`));
            });
            req.end(wire);
          },
          (e: Error) => {
            if (!cancelled) settle(e instanceof UpstreamError ? e : new UpstreamError('error', e.message));
          },
        );
      };
      attempt(false);
      return () => {
        cancelled = true;
        if (stream && !stream.closed) stream.close(NGHTTP2_CANCEL);
      };
    });
  }

  close(): void {
    this.closing = true;
    for (const s of this.all) {
      s.retired = true;
      if (s.h2 && s.streams === 0) s.h2.close();
    }
    this.current = undefined;
  }

  /** The session new queries use: the current one, or a new one when it retired. */
  private session(): Session {
    const cur = this.current;
    if (cur && !cur.retired) return cur;
    const s = new Session();
    this.current = s;
    this.all.add(s);
    this.ctx.stats.connects++;
    s.ready = dialTls({ ...this.target, alpn: ['h2'] }, this.trust, this.ctx.handshakeTimeoutMs, this.sessions).then(
      (sock) => this.open(s, sock),
      (e: Error) => {
        this.warn(e.message);
        this.retire(s);
        this.all.delete(s);
        throw e;
      },
    );
    s.ready.catch(() => {}); // each waiting query handles the failure itself
    return s;
  }

  private open(s: Session, sock: TLSSocket): ClientHttp2Session {
    // The socket is verified (dialTls) before HTTP/2 may write a single frame on it.
    const h2 = http2.connect(this.authority, { createConnection: () => sock, settings: { enablePush: false } });
    s.h2 = h2;
    this.ctx.stats.open++;
    h2.on('goaway', () => this.retire(s));
    h2.on('error', (e) => this.warn(e.message));
    h2.on('close', () => {
      this.ctx.stats.open--;
      this.retire(s);
      clearInterval(s.ping);
      clearTimeout(s.idle);
      this.all.delete(s);
    });
    s.ping = setInterval(() => this.keepalive(s), this.pingMs);
    s.ping.unref();
    h2.unref(); // an idle session must not keep the process alive; streams ref it while in use
    return h2;
  }

  /** PING (RFC 9113 §6.7): an unanswered one means the peer is gone, and the session is dropped. */
  private keepalive(s: Session): void {
    const h2 = s.h2;
    if (!h2 || h2.closed || h2.destroyed || s.pinging) return;
    s.pinging = true;
    const timer = setTimeout(() => h2.destroy(), this.pingTimeoutMs);
    timer.unref();
    const sent = h2.ping((err) => {
      clearTimeout(timer);
      s.pinging = false;
      if (err && !h2.destroyed) h2.destroy();
    });
    if (!sent) {
      clearTimeout(timer);
      s.pinging = false;
    }
  }

  private retire(s: Session): void {
    s.retired = true;
    if (this.current === s) this.current = undefined;
  }

  private started(s: Session): void {
    s.streams++;
    clearTimeout(s.idle);
    s.idle = undefined;
    s.h2?.ref();
  }

  private ended(s: Session): void {
    s.streams--;
    if (s.streams > 0 || !s.h2 || s.h2.closed) return;
    s.h2.unref();
    if (this.closing || s.retired) {
      s.h2.close();
      return;
    }
    s.idle = setTimeout(() => {
      this.retire(s);
      s.h2?.close();
    }, this.idleMs);
    s.idle.unref();
  }
}
