// The TCP listener (RFC 7766): several queries per connection, pipelined and
// answered as each completes (§6.2.1.1, out of order), an idle timeout
// (§6.2.3), a cap on connections (§6.2.2) and on queries in flight per
// connection. A malformed message gets FORMERR and the connection lives on.
//
// Hostile clients are bounded too (issue 8): each client may hold
// tcpMaxConnectionsPerClient slots, and a full table gives an idle slot of
// the biggest holder to a newcomer (transport/tcpSlots.ts); a connection
// lives at most tcpConnectionLifetime; and a pipelined burst is taken a few
// frames per connection per event-loop turn, so 200 connections × 500 frames
// cannot hold the loop while UDP clients wait.
import { listenOnce } from '../net/listen.js';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FrameReader, frame } from '../dns/framing.js';
import { padReply, queryPadded } from '../dns/padding.js';
import { decodeQuery, type LocalAddress, type Proto } from '../dns/query.js';
import { normalizeAddress } from '../net/cidr.js';
import { isPromise, type Handler, type Outcome } from '../pipeline/types.js';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';
import { Accepted, admitAtAccept, SlotTable, type Holder } from './tcpSlots.js';

/** Queries one connection may have in flight before we stop reading from it (back-pressure). */
const MAX_INFLIGHT_PER_CONNECTION = 32;
/**
 * Frames one connection may have handled in one event-loop turn; the rest
 * wait for the next turn, after every other socket had its go. Small, so
 * that even a few hundred busy connections leave the loop within
 * milliseconds; a pipelining client loses nothing but a turn per 8 queries.
 */
const MAX_FRAMES_PER_TURN = 8;
/** Answers a connection may leave unread before it is dropped. */
const MAX_UNREAD_BYTES = 1 << 20;
/** A connection asked to close gracefully (lifetime, shutdown) that still has not, after this, is destroyed. */
const CLOSE_GRACE_MS = 1000;

/**
 * How the listening server is made: plain TCP by default; DoT (transport/dot.ts)
 * passes a TLS server, so every limit here applies to DoT connections too.
 */
export interface StreamServerOptions {
  createServer?: (onConnection: (sock: net.Socket) => void) => net.Server;
  /** The `proto` of the queries read (the metric label and the query log). */
  proto?: Proto;
  /**
   * The server hands onConnection a socket only after a handshake (TLS): admit the raw socket into
   * the slots at accept instead, so a handshake that never ends holds an evictable slot, not a free one.
   */
  handshake?: boolean;
}

export interface TcpLimits {
  idleTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerClient: number;
  /** A connection is closed (after answering what it asked) this long after it opened. */
  lifetimeMs: number;
}

export class TcpListener {
  private server: net.Server | undefined;
  /** Connections, and (TLS) raw sockets still in their handshake: opening and idle, the first to evict. */
  private readonly slots: SlotTable<Connection | Accepted>;
  private handshaking: ((peer: net.Socket) => Connection | Accepted | undefined) | undefined;

  constructor(
    private readonly endpoint: Endpoint,
    private readonly handler: Handler,
    private readonly limits: TcpLimits,
    private readonly log: Logger,
    /** Whether an address is inside clients.allowFrom (current policy). */
    private readonly allowed: (client: string) => boolean = () => true,
    private readonly stream: StreamServerOptions = {},
  ) {
    this.slots = new SlotTable(limits.maxConnections, limits.maxConnectionsPerClient);
  }

  /** `reusePort`: several query threads listen on the same address and the kernel spreads connections (SO_REUSEPORT). */
  async start(port = this.endpoint.port, reusePort = false): Promise<net.AddressInfo> {
    const onConnection = (sock: net.Socket): void => this.onConnection(sock);
    const server = this.stream.createServer ? this.stream.createServer(onConnection) : net.createServer(onConnection);
    if (this.stream.handshake) {
      this.handshaking = admitAtAccept(server, this.slots, (client, sock) => new Accepted(client, sock), () => this.refused++);
    }
    const bound = await listenOnce(server, { port, host: this.endpoint.host, reusePort });
    server.on('error', (e) => this.log.warn('SH_TCP', 'TCP server error', { error: e.message }));
    this.server = server;
    return bound;
  }

  get connections(): number {
    return this.slots.size;
  }

  /** Idle connections closed to make room for another (metrics). */
  get evictions(): number {
    return this.slots.evictions;
  }

  /** Connections refused: the caps were reached and nothing idle could give way (metrics). */
  refused = 0;

  private onConnection(sock: net.Socket): void {
    const client = normalizeAddress(sock.remoteAddress ?? '');
    if (this.handshaking) {
      // Admitted at accept: the connection takes over the slot its handshake held.
      const accepted = this.handshaking(sock);
      if (!this.server || !(accepted instanceof Accepted)) {
        sock.destroy(); // evicted while its handshake finished, or shutting down
        return;
      }
      this.slots.remove(accepted);
    } else if (!this.server || !this.slots.admit(client)) {
      this.refused++;
      sock.destroy(); // over the caps with nothing idle to give up: refuse rather than exhaust descriptors
      return;
    }
    const conn = new Connection(sock, client, this.stream.proto ?? 'tcp', this.handler, this.limits, this.log, !this.allowed(client), () => this.slots.remove(conn));
    this.slots.add(conn);
  }

  /** Stops accepting connections; open ones are closed once their in-flight queries are answered. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.slots.all()) {
      if (c instanceof Connection) c.retire();
      else c.evict();
    }
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** One client connection: framing, back-pressure, its timers and how it ends. */
class Connection implements Holder {
  lastActive = performance.now();
  private pending = 0;
  private framesThisTurn = 0;
  /** Reading stops while either is set: too many answers owed, or this turn's share used up. */
  private blockedByInflight = false;
  private blockedByTurn = false;
  private retiring = false;
  private readonly reader: FrameReader;
  private partial: NodeJS.Timeout | undefined;
  private framesSeen = 0;
  private readonly lifetime: NodeJS.Timeout;
  /** The client's port and where it connected to, for dnstap: one object per connection. */
  private readonly port: number;
  private readonly local: LocalAddress;

  constructor(
    private readonly sock: net.Socket,
    readonly client: string,
    private readonly proto: Proto,
    private readonly handler: Handler,
    private readonly limits: TcpLimits,
    private readonly log: Logger,
    /** Outside allowFrom: it gets its REFUSED answer, but cannot hold a slot (one reply, then close). */
    private readonly untrusted: boolean,
    release: () => void,
  ) {
    sock.setNoDelay(true);
    this.port = sock.remotePort ?? 0;
    this.local = { address: normalizeAddress(sock.localAddress ?? ''), port: sock.localPort ?? 0 };
    const idle = untrusted ? Math.min(1000, limits.idleTimeoutMs) : limits.idleTimeoutMs;
    sock.setTimeout(idle, () => {
      if (this.pending === 0) this.retire(); // idle (RFC 7766 §6.2.3)
    });
    this.lifetime = setTimeout(() => this.retire(), limits.lifetimeMs).unref();
    this.reader = new FrameReader((msg) => this.onFrame(msg));
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      clearTimeout(this.partial);
      clearTimeout(this.lifetime);
      release();
    });
  }

  get idle(): boolean {
    return this.pending === 0;
  }

  evict(): void {
    this.sock.destroy();
  }

  /** Takes no more queries, answers those in flight, then closes; a peer that never closes its side loses the slot anyway. */
  retire(): void {
    if (this.retiring) return;
    this.retiring = true;
    this.sock.pause();
    if (this.pending === 0) this.sock.end();
    setTimeout(() => this.sock.destroy(), this.pending === 0 ? CLOSE_GRACE_MS : this.limits.idleTimeoutMs).unref();
  }

  private onData(chunk: Buffer): void {
    // The answers written while these frames are taken (blocked, cached) leave in one write.
    this.sock.cork();
    this.reader.push(chunk);
    this.sock.uncork();
    // A frame must complete within the idle timeout of its first byte: dripping one byte at a time
    // keeps the idle timer alive but must not hold a slot forever (slowloris, lying length prefixes).
    if (this.reader.frames !== this.framesSeen || this.reader.buffered === 0) {
      this.framesSeen = this.reader.frames;
      clearTimeout(this.partial);
      this.partial = undefined;
    }
    if (this.reader.buffered > 0 && !this.partial) this.partial = setTimeout(() => this.retire(), this.limits.idleTimeoutMs);
  }

  /** Returns false to stop framing (the rest stays buffered until resume()). */
  private onFrame(msg: Buffer): boolean {
    if (this.retiring) return false;
    this.lastActive = performance.now();
    try {
      // Copy: the frame is a view into a chunk the reader may release.
      const q = decodeQuery(Buffer.from(msg), this.client, this.proto, this.lastActive, this.port, this.local);
      const r = q && this.handler(q);
      // DoT: a padded query gets a padded reply (RFC 7830 §4).
      const padded = this.proto === 'dot' && q !== undefined && queryPadded(q);
      if (!r) {
        // Shorter than a header, or a response: nothing to answer (the per-turn bound below still counts it).
      } else if (!isPromise(r)) {
        this.write(r, padded);
      } else {
        this.pending++;
        r.then((o) => this.write(o, padded)).finally(() => this.settle());
        if (this.pending >= MAX_INFLIGHT_PER_CONNECTION) {
          // Back-pressure: stop reading, and stop framing what was already read, until answers go out.
          this.blockedByInflight = true;
          this.sock.pause();
          return false;
        }
      }
    } catch (e) {
      this.log.error('SH_INTERNAL', 'TCP query dropped', { error: String(e) });
    }
    if (++this.framesThisTurn >= MAX_FRAMES_PER_TURN) {
      // This connection had its share of the turn: the rest waits until every other socket had its go.
      this.blockedByTurn = true;
      this.sock.pause();
      setImmediate(() => {
        this.framesThisTurn = 0;
        this.blockedByTurn = false;
        this.resume();
      });
      return false;
    }
    return true;
  }

  private write(o: Outcome, padded: boolean): void {
    const sock = this.sock;
    if (sock.destroyed || !sock.writable) return;
    // NO_REPLY (an RPZ rpz-drop, docs/rpz.md): nothing is sent, and the connection stays open.
    if (o.wire.length === 0) return;
    sock.write(frame(padded ? padReply(o.wire) : o.wire));
    // A client that pipelines queries but does not read its answers would grow this buffer without end.
    if (sock.writableLength > MAX_UNREAD_BYTES) sock.destroy();
    else if (this.untrusted) this.retire();
  }

  private settle(): void {
    this.pending--;
    if (this.retiring) {
      if (this.pending === 0) this.sock.end();
      return;
    }
    if (this.blockedByInflight && this.pending < MAX_INFLIGHT_PER_CONNECTION / 2) {
      this.blockedByInflight = false;
      this.resume();
    }
  }

  private resume(): void {
    if (this.retiring || this.blockedByInflight || this.blockedByTurn || this.sock.destroyed) return;
    this.sock.resume();
    this.sock.cork();
    this.reader.resume();
    this.sock.uncork();
  }
}
