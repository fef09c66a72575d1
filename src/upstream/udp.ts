// UDP exchange with an upstream, hardened as RFC 5452 asks: a fresh random
// ID and a fresh source port for every query, and a reply is accepted only
// from the address and port queried, with our ID and our question. Anything
// else is dropped and the real reply (or the timeout) is awaited.
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { sameQuestion } from '../dns/message.js';
import { randomId } from './random.js';

export class UpstreamError extends Error {
  override name = 'UpstreamError';
  constructor(readonly outcome: 'timeout' | 'error', message: string) {
    super(message);
  }
}

/**
 * Sends `query` (whose ID is replaced by a fresh one) and resolves with the
 * reply bytes, their ID still ours. A socket is opened per query: the kernel
 * picks a random ephemeral source port each time (RFC 5452 §9.2).
 */
export function udpExchange(host: string, port: number, query: Buffer, qend: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    const out = Buffer.from(query);
    const id = randomId();
    out.writeUInt16BE(id, 0);
    let settled = false;
    const done = (err: Error | undefined, reply?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => done(new UpstreamError('timeout', `no reply from ${host}:${port} in ${timeoutMs}ms`)), timeoutMs);
    sock.on('error', (e) => done(new UpstreamError('error', e.message)));
    sock.on('message', (msg, rinfo) => {
      // Spoofed or stray packets are ignored, not treated as failures.
      if (rinfo.port !== port || rinfo.address !== host) return;
      if (msg.length < 12 || msg.readUInt16BE(0) !== id || (msg[2]! & 0x80) === 0) return;
      if (!sameQuestion(msg, out, qend)) return;
      done(undefined, msg);
    });
    sock.send(out, port, host, (e) => {
      if (e) done(new UpstreamError('error', e.message));
    });
  });
}
