// Ports for the few tests whose server cannot be given port 0 (a peer's config, PostgreSQL, a fixed
// `listen` address). The kernel picks the port; the caller still retries when it is taken in between.
import dgram from 'node:dgram';
import net from 'node:net';

/** A TCP port the kernel just handed out on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * A port free for both UDP and TCP on 127.0.0.1 just now, as a DNS listener needs: the kernel's TCP
 * pick, held while UDP binds it too. A UDP port alone may be a TCP connection's port at that moment.
 */
export async function freeDnsPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const tcp = net.createServer();
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    const port = (tcp.address() as net.AddressInfo).port;
    const udp = dgram.createSocket('udp4');
    const bound = await new Promise<boolean>((r) => {
      udp.once('error', () => r(false));
      udp.bind(port, '127.0.0.1', () => r(true));
    });
    if (bound) await new Promise<void>((r) => udp.close(() => r()));
    await new Promise<void>((r) => tcp.close(() => r()));
    if (bound) return port;
  }
  throw new Error('no port on 127.0.0.1 was free for both UDP and TCP in 50 tries');
}
