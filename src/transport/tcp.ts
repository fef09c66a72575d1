// The TCP listener (RFC 7766): several queries per connection, pipelined and
// answered as each completes (§6.2.1.1, out of order), an idle timeout
// (§6.2.3), a cap on connections (§6.2.2) and on queries in flight per
// connection. A malformed message gets FORMERR and the connection lives on.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FrameReader, frame } from '../dns/framing.js';
import { decodeQuery } from '../dns/query.js';
import { normalizeAddress } from '../policy/cidr.js';
import { isPromise, type Handler, type Outcome } from '../pipeline/types.js';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';

/** Queries one connection may have in flight before we stop reading from it (back-pressure). */
const MAX_INFLIGHT_PER_CONNECTION = 100;

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
  ) {}

  async start(port = this.endpoint.port): Promise<net.AddressInfo> {
    const server = net.createServer((sock) => this.onConnection(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: this.endpoint.host }, () => {
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
    let reading = true;
    sock.setNoDelay(true);
    sock.setTimeout(this.idleTimeoutMs, () => {
      if (state.pending === 0) sock.end(); // idle: close gently (RFC 7766 §6.2.3)
    });
    const write = (o: Outcome): void => {
      if (!sock.destroyed && sock.writable) sock.write(frame(o.wire));
    };
    const settle = (): void => {
      state.pending--;
      if (state.closing && state.pending === 0) sock.end();
      if (!reading && state.pending < MAX_INFLIGHT_PER_CONNECTION / 2) {
        reading = true;
        sock.resume();
      }
    };
    const reader = new FrameReader((msg) => {
      try {
        // Copy: the frame is a view into a chunk the reader may release.
        const q = decodeQuery(Buffer.from(msg), client, 'tcp', performance.now());
        if (!q) return; // shorter than a header, or a response: nothing to answer
        const r = this.handler(q);
        if (!isPromise(r)) return write(r);
        state.pending++;
        r.then(write).finally(settle);
        if (state.pending >= MAX_INFLIGHT_PER_CONNECTION && reading) {
          reading = false;
          sock.pause();
        }
      } catch (e) {
        this.log.error('SH_INTERNAL', 'TCP query dropped', { error: String(e) });
      }
    });
    sock.on('data', (chunk: Buffer) => reader.push(chunk));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.sockets.delete(sock));
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
