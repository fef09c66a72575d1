// Before the query threads bind an address with SO_REUSEPORT (`workers: N`), make sure no other
// process holds it. Linux lets any process of the same user join a SO_REUSEPORT group, and then
// the kernel splits the queries between the two: a second `sinkhole serve` with another policy
// silently answered half of them (issue 18). A plain bind without SO_REUSEPORT is refused with
// EADDRINUSE while anyone holds the port, reuse-port or not, so one exclusive bind, released at
// once, tells. Port 0 needs no check: the kernel hands out a port nobody holds.
import dgram from 'node:dgram';
import { once } from 'node:events';
import net, { isIPv6 } from 'node:net';
import { literalLookup } from '../net/lookup.js';

/** Resolves when nobody holds host:port for `proto`; rejects with the bind's error (EADDRINUSE) otherwise. */
export async function assertAddressFree(proto: 'udp' | 'tcp', host: string, port: number): Promise<void> {
  if (port === 0) return;
  if (proto === 'udp') {
    const s = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', lookup: literalLookup });
    try {
      // Listen first: with literalLookup the bind completes, and 'listening' is emitted, inside bind().
      const bound = Promise.race([once(s, 'listening'), once(s, 'error').then(([e]) => Promise.reject(e as Error))]);
      s.bind(port, host);
      await bound;
    } finally {
      s.close();
    }
    return;
  }
  const server = net.createServer();
  server.listen({ port, host, exclusive: true });
  try {
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => Promise.reject(e as Error))]);
  } finally {
    if (server.listening) await new Promise<void>((r) => server.close(() => r()));
  }
}
