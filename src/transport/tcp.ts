// The TCP listener (RFC 7766): several queries per connection, pipelined and
// answered as each completes (§6.2.1.1, out of order), an idle timeout
// (§6.2.3), a cap on connections (§6.2.2) and on queries in flight per
// connection. A malformed message gets FORMERR and the connection lives on.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FrameReader, frame } from '../dns/framing.js';
import { decodeQuery, type Proto } from '../dns/query.js';
import { normalizeAddress } from '../policy/cidr.js';
import { isPromise, type Handler, type Outcome } from '../pipeline/types.js';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';

/** Queries one connection may have in flight before we stop reading from it (back-pressure). */
const MAX_INFLIGHT_PER_CONNECTION = 100;
/** Answers a connection may leave unread before it is dropped. */
const MAX_UNREAD_BYTES = 1 << 20;

/**
 * How the listening server is made: plain TCP by default; DoT (transport/dot.ts)
 * passes a TLS server, so every limit here applies to DoT connections too.
 */
export interface StreamServerOptions {
  createServer?: (onConnection: (sock: net.Socket) => void) => net.Server;
  /** The `proto` of the queries read (the metric label and the query log). */
  proto?: Proto;
}

export class TcpListener {
  private server: net.Server | undefined;
  /** Open connections → queries in flight on each; `closing` once shutdown began. */
  private readonly sockets = new Map<net.Socket, { pending: number; closing: boolean }>();

  constructor(
    private readonly endpoint: Endpoint,
    private readonly handler: Handler,
    private readonly idleTimeoutMs: number,
    private readonly maxConnections: number,
    private readonly log: Logger,
    /** Whether an address is inside clients.allowFrom (current policy). */
    private readonly allowed: (client: string) => boolean = () => true,
    private readonly stream: StreamServerOptions = {},
  ) {}

  /** `reusePort`: several query threads listen on the same address and the kernel spreads connections (SO_REUSEPORT). */
  async start(port = this.endpoint.port, reusePort = false): Promise<net.AddressInfo> {
    const onConnection = (sock: net.Socket): void => this.onConnection(sock);
    const server = this.stream.createServer ? this.stream.createServer(onConnection) : net.createServer(onConnection);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: this.endpoint.host, reusePort }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.log.warn('SH_TCP', 'TCP server error', { error: e.message }));
    this.server = server;
    return server.address() as net.AddressInfo;
  }

  get connections(): number {
    return this.sockets.size;
  }

  private onConnection(sock: net.Socket): void {
    if (this.sockets.size >= this.maxConnections) {
      sock.destroy(); // over the cap: refuse rather than let one client exhaust descriptors
      return;
    }
    const state = { pending: 0, closing: false };
    this.sockets.set(sock, state);
    const client = normalizeAddress(sock.remoteAddress ?? '');
    // A client outside allowFrom still gets its REFUSED answer, but cannot hold a slot: one reply, then close.
    const untrusted = !this.allowed(client);
    let reading = true;
    sock.setNoDelay(true);
    const drop = (): void => {
      sock.end();
      setTimeout(() => sock.destroy(), 1000).unref(); // a peer that never closes its side loses the slot anyway
    };
    sock.setTimeout(untrusted ? Math.min(1000, this.idleTimeoutMs) : this.idleTimeoutMs, () => {
      if (state.pending === 0) drop(); // idle (RFC 7766 §6.2.3)
    });
    const write = (o: Outcome): void => {
      if (sock.destroyed || !sock.writable) return;
      sock.write(frame(o.wire));
      // A client that pipelines queries but does not read its answers would grow this buffer without end.
      if (sock.writableLength > MAX_UNREAD_BYTES) sock.destroy();
      else if (untrusted) drop();
    };
    const settle = (): void => {
      state.pending--;
      if (state.closing && state.pending === 0) sock.end();
      if (!reading && state.pending < MAX_INFLIGHT_PER_CONNECTION / 2) {
        reading = true;
        sock.resume();
        reader.resume();
      }
    };
    const reader = new FrameReader((msg) => {
      try {
        // Copy: the frame is a view into a chunk the reader may release.
        const q = decodeQuery(Buffer.from(msg), client, this.stream.proto ?? 'tcp', performance.now());
        if (!q) return true; // shorter than a header, or a response: nothing to answer
        const r = this.handler(q);
        if (!isPromise(r)) {
          write(r);
          return true;
        }
        state.pending++;
        r.then(write).finally(settle);
        if (state.pending >= MAX_INFLIGHT_PER_CONNECTION) {
          // Back-pressure: stop reading, and stop framing what was already read, until answers go out.
          reading = false;
          sock.pause();
          return false;
        }
      } catch (e) {
        this.log.error('SH_INTERNAL', 'TCP query dropped', { error: String(e) });
      }
      return true;
    });
    // A frame must complete within the idle timeout of its first byte: dripping one byte at a time
    // keeps the idle timer alive but must not hold a slot forever (slowloris).
    let partial: NodeJS.Timeout | undefined;
    let framesSeen = 0;
    sock.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      if (reader.frames !== framesSeen || reader.buffered === 0) {
        framesSeen = reader.frames;
        clearTimeout(partial);
        partial = undefined;
      }
      if (reader.buffered > 0 && !partial) partial = setTimeout(drop, this.idleTimeoutMs);
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      clearTimeout(partial);
      this.sockets.delete(sock);
    });
  }

  /** Stops accepting connections; open ones are closed once their in-flight queries are answered. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const [s, st] of this.sockets) {
      st.closing = true;
      if (st.pending === 0) s.end();
    }
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
