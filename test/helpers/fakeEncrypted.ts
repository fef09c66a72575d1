// Encrypted fronts for a FakeUpstream, on 127.0.0.1 port 0: a DoT server
// (RFC 7858, node:tls) and a DoH server (RFC 8484, node:http2), answering
// with the FakeUpstream's scripts. Each can misbehave on cue, as a real
// server or a network does: close a connection mid-pipeline, die under a
// reused connection, send GOAWAY, refuse a stream, or never finish a handshake.
import { once } from 'node:events';
import http2, { type ServerHttp2Session } from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { FakeUpstream } from './fakeUpstream.js';

export interface KeyPair {
  certPem: string;
  keyPem: string;
}

/** RFC 8467 §4.1: a server pads its responses to a multiple of 468 octets. Adds an OPT with Padding to a reply without one. */
export function padResponse(reply: Buffer): Buffer {
  if (reply.readUInt16BE(10) !== 0) return reply;
  const len = reply.length + 11 + 4;
  const pad = (468 - (len % 468)) % 468;
  const opt = Buffer.alloc(11 + 4 + pad);
  opt.writeUInt16BE(41, 1); // root, TYPE OPT
  opt.writeUInt16BE(1232, 3);
  opt.writeUInt16BE(4 + pad, 9);
  opt.writeUInt16BE(12, 11); // Padding
  opt.writeUInt16BE(pad, 13);
  const out = Buffer.concat([reply, opt]);
  out.writeUInt16BE(1, 10);
  return out;
}

export interface DotQuery {
  /** Which accepted connection (1, 2, ...) carried it. */
  conn: number;
  id: number;
  raw: Buffer;
}

export class FakeDot {
  readonly queries: DotQuery[] = [];
  /** TLS handshakes completed. */
  connections = 0;
  /** TCP connections accepted (a client that drops right after its handshake may never count above). */
  accepted = 0;
  /** Replies per connection, after which the server closes it (mid-pipeline when more are in flight). */
  closeAfter = Infinity;
  /** The next query kills its connection unanswered (a server that closed a connection we still thought alive). */
  killNext = false;
  padReplies = true;
  port = 0;
  private readonly sockets = new Set<tls.TLSSocket>();

  private constructor(
    private readonly up: FakeUpstream,
    private readonly server: tls.Server,
  ) {}

  static async start(up: FakeUpstream, pair: KeyPair): Promise<FakeDot> {
    let fake!: FakeDot;
    const server = tls.createServer({ cert: pair.certPem, key: pair.keyPem }, (s) => fake.onConnection(s));
    server.on('tlsClientError', () => {});
    server.on('connection', () => fake.accepted++);
    fake = new FakeDot(up, server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    fake.port = (server.address() as net.AddressInfo).port;
    return fake;
  }

  /** Open connections now. */
  get open(): number {
    return this.sockets.size;
  }

  private onConnection(sock: tls.TLSSocket): void {
    const conn = ++this.connections;
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    let replies = 0;
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const raw = Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + raw.length);
        if (this.killNext) {
          this.killNext = false;
          sock.destroy();
          return;
        }
        this.queries.push({ conn, id: raw.readUInt16BE(0), raw });
        void this.up.respond(raw, 'dot', sock.remotePort ?? 0, (out) => {
          if (sock.destroyed || replies >= this.closeAfter) return;
          const reply = this.padReplies ? padResponse(out) : out;
          const framed = Buffer.alloc(2 + reply.length);
          framed.writeUInt16BE(reply.length, 0);
          reply.copy(framed, 2);
          sock.write(framed);
          if (++replies >= this.closeAfter) sock.end();
        });
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

export interface DohRequest {
  session: number;
  method: string;
  path: string;
  contentType: string;
  body: Buffer;
}

export class FakeDoh {
  readonly requests: DohRequest[] = [];
  /** HTTP/2 sessions accepted. */
  sessions = 0;
  pings = 0;
  /** After this many answered streams on a session, send GOAWAY (RFC 9113 §6.8). */
  goawayAfter = Infinity;
  /** Refuse the first stream of every session (RST_STREAM REFUSED_STREAM). */
  refuseFirst = false;
  /** Reply with this status instead of 200. */
  status = 200;
  port = 0;
  private readonly open = new Set<ServerHttp2Session>();

  private constructor(
    private readonly up: FakeUpstream,
    private readonly server: http2.Http2SecureServer,
  ) {}

  static async start(up: FakeUpstream, pair: KeyPair): Promise<FakeDoh> {
    const server = http2.createSecureServer({ cert: pair.certPem, key: pair.keyPem });
    const fake = new FakeDoh(up, server);
    server.on('session', (s) => fake.onSession(s));
    server.on('tlsClientError', () => {});
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    fake.port = (server.address() as net.AddressInfo).port;
    return fake;
  }

  /** Sessions open now. */
  get live(): number {
    return this.open.size;
  }

  private onSession(s: ServerHttp2Session): void {
    const n = ++this.sessions;
    this.open.add(s);
    s.on('close', () => this.open.delete(s));
    s.on('error', () => {});
    s.on('ping', () => this.pings++);
    let streams = 0;
    let answered = 0;
    s.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      if (this.refuseFirst && streams++ === 0) {
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const body = Buffer.concat(chunks);
        this.requests.push({
          session: n, method: String(headers[':method']), path: String(headers[':path']),
          contentType: String(headers['content-type'] ?? ''), body,
        });
        void this.up.respond(body, 'doh', 0, (out) => {
          if (stream.destroyed) return;
          stream.respond({ ':status': this.status, 'content-type': 'application/dns-message' });
          stream.end(padResponse(out));
          if (++answered >= this.goawayAfter && !s.closed) s.goaway(0);
        });
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.open) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** A TCP server that accepts and then says nothing: a TLS handshake with it never completes. */
export async function silentServer(): Promise<{ port: number; accepted: () => number; closed: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  let closed = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    accepted++;
    socks.add(s);
    s.resume(); // read (and ignore) the ClientHello, so the client's close is seen
    s.on('error', () => {});
    s.on('close', () => {
      closed++;
      socks.delete(s);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    closed: () => closed,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
