// Upstream server specifications as written in upstreams.servers.
import { readFileSync } from 'node:fs';
import { isIP, SocketAddress } from 'node:net';

export interface UpstreamSpec {
  /** As configured: the `upstream` metric label and the name in logs. */
  label: string;
  host: string;
  port: number;
  /** udp: UDP first, TCP when the answer is truncated (RFC 7766 §5). tcp: TCP only. */
  transport: 'udp' | 'tcp';
}

/** Parses `host`, `host:port`, `[v6]:port`, `v6`, `tcp://host:port`; returns an error message when invalid. */
export function parseUpstream(text: string): UpstreamSpec | string {
  let rest = text;
  let transport: UpstreamSpec['transport'] = 'udp';
  const scheme = /^([a-z]+):\/\//.exec(rest);
  if (scheme) {
    if (scheme[1] === 'udp') transport = 'udp';
    else if (scheme[1] === 'tcp') transport = 'tcp';
    else return `unsupported upstream scheme "${scheme[1]}://" in "${text}"; expected host[:port], udp://host:port or tcp://host:port`;
    rest = rest.slice(scheme[0].length);
  }
  let host = rest;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
  if (bracket) {
    host = bracket[1]!;
    if (bracket[2]) port = Number(bracket[2]);
  } else if (isIP(rest) !== 6) {
    const colon = rest.lastIndexOf(':');
    if (colon !== -1) {
      host = rest.slice(0, colon);
      port = /^\d+$/.test(rest.slice(colon + 1)) ? Number(rest.slice(colon + 1)) : NaN;
    }
  }
  if (!isIP(host)) return `expected an IP address (with an optional :port), got "${text}"; upstreams are addresses so that resolving them never needs DNS`;
  if (!(port >= 1 && port <= 65535)) return `port must be 1 to 65535 in "${text}"`;
  return { label: text, host: canonical(host), port, transport };
}

/**
 * Replies are matched on the sender's address as the kernel reports it, which is
 * canonical: "2001:DB8:0::53" must be stored as "2001:db8::53" or nothing would match.
 */
function canonical(host: string): string {
  return isIP(host) === 6 ? new SocketAddress({ address: host, family: 'ipv6' }).address : host;
}

/** The nameservers of /etc/resolv.conf, as `system` means. */
export function systemResolvers(resolvConf = '/etc/resolv.conf'): UpstreamSpec[] {
  let text = '';
  try {
    text = readFileSync(resolvConf, 'utf8');
  } catch {
    return [];
  }
  const out: UpstreamSpec[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const host = m?.[1]?.replace(/%.*$/, '');
    if (host && isIP(host)) out.push({ label: `system:${host}`, host: canonical(host), port: 53, transport: 'udp' });
  }
  return out;
}
