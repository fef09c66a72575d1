// DNS over a stream to an upstream: TLS (RFC 7858, tls.ts) or plain TCP
// (RFC 7766, tcp.ts: tcp:// upstreams, and the retry of a truncated UDP answer).
//
// A small pool of connections per upstream, each carrying many queries at
// once (pipelining, RFC 7766 §6.2.1.1): the replies may come back in any
// order and are matched by ID and question. Every query gets a fresh random
// ID, unique among the queries in flight on its connection, and over TLS is
// padded to a multiple of 128 octets (RFC 8467 §4.1).
//
// Pool sizes: one connection carries up to PIPELINE queries in flight; a
// second is opened only when every open one is that busy, up to CONNECTIONS.
// At the load of a parliament (hundreds of misses a second at peak) that is
// one or two connections, so almost every query rides a warm connection with
// no handshake, and the upstream sees few clients. The caps keep one upstream
// from holding many sockets when it is slow (forwarder maxInflight bounds the
// total anyway).
//
// A connection idle for IDLE_MS is closed by us, below the 30 s that unbound
// and most public resolvers allow, so we rarely write into a connection the
// server is closing. When a connection that was already up when a query was
// written dies before the reply (the server closed an idle connection, or a
// restart), the query is sent once more on a freshly dialed connection,
// within the same deadline; a query that fails on a fresh connection is a
// real failure and counts for health.
import type { Socket } from 'node:net';
import { FrameReader, frame } from '../dns/framing.js';
import { padQuery, unpadReply } from '../dns/padding.js';
import { boundedExchange, isOurReply, UpstreamError, type Settle } from './exchange.js';
import { idHash, randomId } from './random.js';
import { StableTable } from '../stableTable.js';
import type { TransportContext, UpstreamTransport } from './transport.js';

/** Queries in flight on one connection before another is opened. */
export const PIPELINE = 64;
/** Connections per upstream at most. */
export const CONNECTIONS = 4;
/** A connection with nothing in flight for this long is closed. */
export const IDLE_MS = 20_000;

/** A query on its way through the pool. */
interface Pending {
  wire: Buffer;
  qend: number;
  id: number;
  settle: Settle;
  conn: Conn | undefined;
  /** Written on a connection that was already up: a dead connection gets it one re-dial. */
  reused: boolean;
  retried: boolean;
}

class Conn {
  sock: Socket | undefined;
  ready = false;
  /** No new queries: it closes once those in flight are answered. */
  draining = false;
  closed = false;
  /** Written and awaiting a reply, by the ID we gave them. Not a Map: see stableTable.ts. */
  readonly inflight = new StableTable<number, Pending>(idHash, 16);
  /** Waiting for the handshake: nothing is written before the server is verified. */
  readonly queued: Pending[] = [];
  idle: NodeJS.Timeout | undefined;

  get load(): number {
    return this.inflight.size + this.queued.length;
  }
}

export interface StreamOptions {
  idleMs?: number;
  pipeline?: number;
  connections?: number;
}

export interface StreamKind {
  /** "DoT", "TCP": for messages. */
  name: string;
  /** A connected (and, for TLS, verified) socket, or a rejection with the reason. */
  dial: () => Promise<Socket>;
  /** EDNS padding of queries and its removal from replies (RFC 8467: over encrypted transports only). */
  pad: boolean;
  /** Says why a connection failed, at most once per interval. */
  warn: (message: string) => void;
}

export class StreamUpstream implements UpstreamTransport {
  private readonly conns: Conn[] = [];
  private closing = false;
  private readonly idleMs: number;
  private readonly pipeline: number;
  private readonly maxConns: number;

  constructor(
    private readonly kind: StreamKind,
    private readonly ctx: TransportContext,
    opts: StreamOptions = {},
  ) {
    this.idleMs = opts.idleMs ?? IDLE_MS;
    this.pipeline = opts.pipeline ?? PIPELINE;
    this.maxConns = opts.connections ?? CONNECTIONS;
  }

  exchange(query: Buffer, qend: number, timeoutMs: number): Promise<Buffer> {
    // A copy either way: each write puts the connection's own ID in it.
    const { wire, addedOpt } = this.kind.pad ? padQuery(query) : { wire: Buffer.from(query), addedOpt: false };
    return boundedExchange(timeoutMs, `no ${this.kind.name} reply from ${this.ctx.label} in ${Math.round(timeoutMs)}ms`, (settle) => {
      const q: Pending = {
        wire, qend, id: 0, conn: undefined, reused: false, retried: false,
        // The reply leaves the frame buffer as a buffer of its own (unpadReply copies it too): the forwarder writes into it.
        settle: (err, reply) => settle(err, reply && (this.kind.pad ? unpadReply(reply, addedOpt) : Buffer.from(reply))),
      };
      this.assign(q, this.pick());
      return () => this.forget(q);
    });
  }

  close(): void {
    this.closing = true;
    for (const c of [...this.conns]) this.maybeIdle(c);
  }

  /**
   * The oldest usable connection with room, so the load is packed onto as few connections as it
   * needs and the others go idle and close. Spreading it instead kept every connection of a past
   * burst open with sparse traffic on each, and sparse traffic is what meets an upstream's Nagle
   * delay: a reply held until our delayed ACK (40 ms on Linux; Unbound before 1.23 did not set
   * TCP_NODELAY on TLS sockets). A new connection only when all are full and the pool has room.
   */
  private pick(): Conn {
    let pending: Conn | undefined; // still shaking hands, with room
    let any: Conn | undefined; // usable at all: the least busy, for when every one is full
    for (const c of this.conns) {
      if (c.closed || c.draining) continue;
      if (!any || c.load < any.load) any = c;
      if (c.load >= this.pipeline) continue;
      if (c.ready) return c;
      pending ??= c;
    }
    // Past the cap, queries share the least busy connection rather than open more sockets.
    return pending ?? (this.conns.length < this.maxConns ? this.dial() : (any ?? this.dial()));
  }

  private assign(q: Pending, c: Conn): void {
    q.conn = c;
    q.reused = c.ready;
    if (c.ready) this.write(c, q);
    else c.queued.push(q);
  }

  private write(c: Conn, q: Pending): void {
    let id = randomId();
    while (c.inflight.has(id)) id = randomId(); // unique among this connection's queries in flight
    q.id = id;
    q.wire.writeUInt16BE(id, 0);
    c.inflight.set(id, q);
    clearTimeout(c.idle);
    c.idle = undefined;
    c.sock!.write(frame(q.wire));
  }

  /** A query that settled or timed out leaves its connection. */
  private forget(q: Pending): void {
    const c = q.conn;
    if (!c) return;
    q.conn = undefined;
    if (c.inflight.get(q.id) === q) c.inflight.delete(q.id);
    else {
      const i = c.queued.indexOf(q);
      if (i !== -1) c.queued.splice(i, 1);
    }
    this.maybeIdle(c);
  }

  private dial(): Conn {
    const c = new Conn();
    this.conns.push(c);
    this.ctx.stats.connects++;
    this.kind.dial().then(
      (sock) => {
        if (c.closed) return void sock.destroy();
        c.sock = sock;
        c.ready = true;
        this.ctx.stats.open++;
        const reader = new FrameReader((msg) => this.onReply(c, msg));
        sock.on('data', (chunk: Buffer) => reader.push(chunk));
        sock.on('error', () => {}); // 'close' follows and settles what was in flight
        sock.on('close', () => this.lost(c, 'the upstream closed the connection'));
        for (const q of c.queued.splice(0)) this.write(c, q);
        this.maybeIdle(c);
      },
      (e: Error) => {
        this.kind.warn(e.message);
        this.lost(c, e.message);
      },
    );
    return c;
  }

  private onReply(c: Conn, msg: Buffer): void {
    if (msg.length < 12) return;
    const id = msg.readUInt16BE(0);
    const q = c.inflight.get(id);
    // An unknown ID or another question: a stale or lying reply, ignored (RFC 5452 §9.1, RFC 7766 §7).
    if (!q || !isOurReply(msg, id, q.wire, q.qend)) return;
    q.settle(undefined, msg);
  }

  /** Closes a connection with nothing in flight when the pool is closing, or after IDLE_MS. */
  private maybeIdle(c: Conn): void {
    if (c.closed || c.load > 0 || !c.ready) return;
    if (this.closing || c.draining) {
      c.draining = true;
      c.sock!.end();
      return;
    }
    if (c.idle) return;
    c.idle = setTimeout(() => {
      c.draining = true;
      c.sock!.end();
    }, this.idleMs);
    c.idle.unref();
  }

  /** The connection is gone: queries on it get their one re-dial, or fail. */
  private lost(c: Conn, reason: string): void {
    if (c.closed) return;
    c.closed = true;
    clearTimeout(c.idle);
    const i = this.conns.indexOf(c);
    if (i !== -1) this.conns.splice(i, 1);
    if (c.ready) this.ctx.stats.open--;
    const orphans = [...c.inflight.values(), ...c.queued];
    c.inflight.clear();
    c.queued.length = 0;
    let fresh: Conn | undefined;
    for (const q of orphans) {
      q.conn = undefined;
      if (q.reused && !q.retried) {
        q.retried = true;
        fresh ??= this.dial();
        this.assign(q, fresh);
      } else {
        q.settle(new UpstreamError('error', `${this.ctx.label}: ${reason}`));
      }
    }
  }
}
