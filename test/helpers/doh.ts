// A DNS-over-HTTPS client: an HTTP/2 session to the harness's DoH listener and a request on it, shared by
// the DoH listener tests and DDR's.
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { Harness } from './sinkhole.js';

export interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export function h2request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: !body });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    if (body) req.end(body);
  });
}

/** An HTTP/2 session to the harness's first DoH listener, trusting `ca`, optionally from a given loopback address. */
export function h2connect(h: Harness, ca: string, from?: string): Promise<http2.ClientHttp2Session> {
  const port = h.running.doh[0]!.port;
  const s = http2.connect(`https://dns.test:${port}`, {
    ca,
    createConnection: () => tls.connect({ socket: net.connect({ host: '127.0.0.1', port, localAddress: from }), servername: 'dns.test', ca, ALPNProtocols: ['h2'] }),
  });
  return once(s, 'connect').then(() => s);
}

/** The headers of an RFC 8484 GET for `q` (base64url in ?dns=). */
export const dohGet = (q: Buffer, path = '/dns-query'): http2.OutgoingHttpHeaders => ({ ':method': 'GET', ':path': `${path}?dns=${q.toString('base64url')}` });
