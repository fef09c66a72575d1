// Binding the DNS listeners: UDP and TCP on one port, the exclusive check before SO_REUSEPORT
// (issue 18), and the one SH_LISTEN line a failed bind becomes.
import type { AddressInfo } from 'node:net';
import type { Config, Endpoint } from '../config/config.js';
import { SinkholeError } from '../errors.js';
import { assertAddressFree } from './exclusive.js';
import type { TcpListener } from './tcp.js';
import type { UdpListener } from './udp.js';

/**
 * Binds UDP and TCP to the same port. With port 0 (tests) the kernel picks the
 * UDP port, and TCP takes the same one; if another process has it on TCP, try again.
 */
export async function bindPair(
  ep: { host: string; port: number },
  makeUdp: () => UdpListener,
  t: TcpListener,
  reusePort = false,
): Promise<{ udp: UdpListener; addresses: { udp: AddressInfo; tcp: AddressInfo } }> {
  for (let attempt = 0; ; attempt++) {
    // A new UDP listener per attempt: a closed one stays closed (it drops every query it receives).
    const u = makeUdp();
    let udp: AddressInfo;
    try {
      udp = await u.start(ep.port, reusePort);
    } catch (e) {
      throw listenError('UDP', ep, e);
    }
    try {
      return { udp: u, addresses: { udp, tcp: await t.start(udp.port, reusePort) } };
    } catch (e) {
      await u.close();
      if (ep.port !== 0 || attempt >= 20) throw listenError('TCP', ep, e);
    }
  }
}

/** With several query threads every address is bound with SO_REUSEPORT: first make sure no other process holds one (transport/exclusive.ts). */
export async function claimReusedAddresses(listen: Config['listen']): Promise<void> {
  const claims: [string, 'udp' | 'tcp', Endpoint][] = [
    ...listen.dns.flatMap((ep): [string, 'udp' | 'tcp', Endpoint][] => [['UDP', 'udp', ep], ['TCP', 'tcp', ep]]),
    ...listen.dot.map((ep): [string, 'udp' | 'tcp', Endpoint] => ['TLS', 'tcp', ep]),
    ...listen.doh.map((ep): [string, 'udp' | 'tcp', Endpoint] => ['HTTPS', 'tcp', ep]),
  ];
  for (const [label, proto, ep] of claims) await assertAddressFree(proto, ep.host, ep.port).catch((e: unknown) => Promise.reject(listenError(label, ep, e)));
}

export function listenError(proto: string, ep: { host: string; port: number }, e: unknown): SinkholeError {
  const code = (e as NodeJS.ErrnoException).code ?? String(e);
  const hint = code === 'EADDRINUSE' ? ' (another process has this port)' : code === 'EACCES' ? ' (ports below 1024 need CAP_NET_BIND_SERVICE)' : '';
  return new SinkholeError('SH_LISTEN', `cannot listen for DNS over ${proto} on ${ep.host}:${ep.port}: ${code}${hint}`);
}
