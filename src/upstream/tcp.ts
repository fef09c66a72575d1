// TCP exchange with an upstream: used when a UDP reply comes back truncated
// (RFC 7766 §5) and for tcp:// upstreams. One connection per query keeps it
// simple and isolates queries; the ID and question checks match udp.ts.
import net from 'node:net';
import { sameQuestion } from '../dns/message.js';
import { FrameReader, frame } from '../dns/framing.js';
import { randomId } from './random.js';
import { UpstreamError } from './udp.js';

export function tcpExchange(host: string, port: number, query: Buffer, qend: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out = Buffer.from(query);
    const id = randomId();
    out.writeUInt16BE(id, 0);
    let settled = false;
    const sock = net.connect({ host, port });
    const done = (err: Error | undefined, reply?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new UpstreamError('timeout', `no TCP reply from ${host}:${port} in ${timeoutMs}ms`)), timeoutMs);
    const reader = new FrameReader((msg) => {
      if (msg.length >= 12 && msg.readUInt16BE(0) === id && (msg[2]! & 0x80) !== 0 && sameQuestion(msg, out, qend)) {
        done(undefined, Buffer.from(msg));
      }
    });
    sock.on('connect', () => sock.write(frame(out)));
    sock.on('data', (chunk) => reader.push(chunk));
    sock.on('error', (e) => done(new UpstreamError('error', e.message)));
    sock.on('close', () => done(new UpstreamError('error', `${host}:${port} closed the TCP connection without a reply`)));
  });
}
