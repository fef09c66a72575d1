// Upstream server specifications as written in upstreams.servers.
import { readFileSync } from 'node:fs';
import { isIP, SocketAddress } from 'node:net';

export interface UpstreamSpec {
  /** As configured: the `upstream` metric label and the name in logs. */
  label: string;
  host: string;
  port: number;
  /**
   * udp: UDP first, TCP when the answer is truncated (RFC 7766 §5). tcp: TCP only.
   * tls: DNS over TLS (RFC 7858). https: DNS over HTTPS (RFC 8484).
   */
  transport: 'udp' | 'tcp' | 'tls' | 'https';
  /** tls, https: the name the upstream's certificate must carry, also sent as SNI; undefined = its IP address. */
  authName?: string;
  /** https: the path of the DoH endpoint, e.g. /dns-query. */
  path?: string;
}

/** Host name → IP address for encrypted upstreams written with a name (upstreams.tls.bootstrap). */
export type Bootstrap = ReadonlyMap<string, string>;

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)*$/;

/**
 * Parses `host`, `host:port`, `[v6]:port`, `v6`, `tcp://host:port`, and the
 * encrypted forms (parseEncrypted); returns an error message when invalid.
 */
export function parseUpstream(text: string, bootstrap: Bootstrap = new Map()): UpstreamSpec | string {
  const enc = /^(tls|https):\/\//.exec(text);
  if (enc) return parseEncrypted(text, enc[1] as 'tls' | 'https', text.slice(enc[0].length), bootstrap);
  let rest = text;
  let transport: UpstreamSpec['transport'] = 'udp';
  const scheme = /^([a-z]+):\/\//.exec(rest);
  if (scheme) {
    if (scheme[1] === 'udp') transport = 'udp';
    else if (scheme[1] === 'tcp') transport = 'tcp';
    else return `unsupported upstream scheme "${scheme[1]}://" in "${text}"; expected host[:port], udp://, tcp://, tls:// or https://`;
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
 * `tls://IP[:853][#name]` and `https://IP[:443][/path][#name]` (path default
 * /dns-query). The address avoids a bootstrap lookup; `#name` is what the
 * certificate is checked against (RFC 8310 §8: an authentication domain name
 * and an address, both configured). `tls://name` and `https://name/path` are
 * accepted when upstreams.tls.bootstrap gives the name's address: resolving
 * it through DNS would make reaching the upstream depend on DNS.
 */
function parseEncrypted(text: string, transport: 'tls' | 'https', rest: string, bootstrap: Bootstrap): UpstreamSpec | string {
  const m = /^(\[[^\]]+\]|[^/:#[\]]+)(?::(\d+))?(\/[^#\s]*)?(?:#(.*))?$/.exec(rest);
  const form = transport === 'tls' ? 'tls://IP[:port]#name' : 'https://IP[:port]/path#name';
  if (!m) return `expected ${form} (an IPv6 address in brackets), got "${text}"`;
  let host = m[1]!.replace(/^\[|\]$/g, '');
  const port = m[2] ? Number(m[2]) : transport === 'tls' ? 853 : 443;
  let path = m[3];
  let authName = m[4]?.toLowerCase().replace(/\.$/, '');
  if (!(port >= 1 && port <= 65535)) return `port must be 1 to 65535 in "${text}"`;
  if (transport === 'tls' && path) return `a tls:// upstream has no path: expected ${form}, got "${text}"`;
  // An RFC 6570 template as DoH providers print it ("/dns-query{?dns}") means the same path.
  path = (path ?? '/dns-query').replace(/\{\?dns\}$/, '');
  if (authName !== undefined && !HOSTNAME.test(authName)) return `"#${m[4]}" in "${text}" is not a host name to check the certificate against`;
  if (!isIP(host)) {
    const name = host.toLowerCase().replace(/\.$/, '');
    if (!HOSTNAME.test(name)) return `expected an IP address or a host name in "${text}"`;
    const address = bootstrap.get(name);
    if (!address) {
      return `"${name}" needs its address in upstreams.tls.bootstrap (e.g. bootstrap: { ${name}: 192.0.2.53 }), or write ${transport}://ADDRESS${transport === 'https' ? path : ''}#${name}: upstreams are never looked up in DNS`;
    }
    authName ??= name;
    host = address;
  }
  return { label: text, host: canonical(host), port, transport, authName, ...(transport === 'https' ? { path } : {}) };
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
