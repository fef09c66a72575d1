// DNS over TCP to an upstream (RFC 7766): for tcp:// upstreams, and when a UDP
// answer comes back truncated (§5). The pipelined connection pool of stream.ts
// over plain TCP: a warm connection carries many queries, so a truncated answer
// or a tcp:// upstream costs no handshake per query, and a connection the
// upstream closed while idle is re-dialed once (§6.2.3 lets either end close).
// No padding: it only hides sizes inside an encrypted stream (RFC 8467).
import net, { type Socket } from 'node:net';
import { StreamUpstream, type StreamOptions } from './stream.js';
import { UpstreamError } from './exchange.js';
import type { TransportContext } from './transport.js';

export class TcpUpstream extends StreamUpstream {
  constructor(host: string, port: number, ctx: TransportContext, opts: StreamOptions = {}) {
    super({ name: 'TCP', pad: false, dial: () => dialTcp(host, port, ctx.handshakeTimeoutMs), warn: () => {} }, ctx, opts);
  }
}

/** A connected socket within `timeoutMs`, or a rejection. */
function dialTcp(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    sock.setNoDelay(true);
    const fail = (message: string): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(new UpstreamError('error', message));
    };
    const timer = setTimeout(() => fail(`TCP connect to ${host}:${port} took over ${Math.round(timeoutMs)}ms`), timeoutMs);
    sock.once('error', (e) => fail(e.message));
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
  });
}
