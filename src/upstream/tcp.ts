// TCP exchange with an upstream: used when a UDP reply comes back truncated
// (RFC 7766 §5) and for tcp:// upstreams. One connection per query keeps it
// simple and isolates queries; the ID and question checks match udp.ts.
import net from 'node:net';
import { FrameReader, frame } from '../dns/framing.js';
import { boundedExchange, isOurReply, UpstreamError, withFreshId } from './exchange.js';

export function tcpExchange(host: string, port: number, query: Buffer, qend: number, timeoutMs: number): Promise<Buffer> {
  const { out, id } = withFreshId(query);
  return boundedExchange(timeoutMs, `no TCP reply from ${host}:${port} in ${timeoutMs}ms`, (settle) => {
    const sock = net.connect({ host, port });
    const reader = new FrameReader((msg) => {
      if (isOurReply(msg, id, out, qend)) settle(undefined, Buffer.from(msg));
    });
    sock.on('connect', () => sock.write(frame(out)));
    sock.on('data', (chunk) => reader.push(chunk));
    sock.on('error', (e) => settle(new UpstreamError('error', e.message)));
    sock.on('close', () => settle(new UpstreamError('error', `${host}:${port} closed the TCP connection without a reply`)));
    return () => sock.destroy();
  });
}
