// What `sinkhole check` was asked about. Admins paste what they have: a name,
// a URL from a browser or a ticket (https://www.tiktok.com/@x), or host:port
// from a firewall log. DNS only ever sees the host, so that is what is
// checked, and check says so: a URL that looked allowed only because its path
// was taken for part of the name would be a false all-clear.
import { isIP } from 'node:net';
import { SinkholeError } from './errors.js';
import { toRuleDomain } from './policy/listParser.js';

export interface CheckTarget {
  /** Lower-case, punycode, no trailing dot: what a DNS query would carry. */
  name: string;
  /** The input, when the name had to be taken out of a URL or host:port. */
  from?: string;
}

export function checkTarget(input: string): CheckTarget {
  const host = hostOf(input.trim());
  if (isIP(host)) {
    throw new SinkholeError('SH_USAGE', `check takes a domain name, a URL or host:port; "${input}" is an IP address, which DNS blocking cannot see`);
  }
  const name = toRuleDomain(host);
  if (!name) throw new SinkholeError('SH_USAGE', `check takes a domain name (www.tiktok.com), a URL or host:port; cannot read a host name from "${input}"`);
  return host === input.trim() ? { name } : { name, from: input };
}

function hostOf(input: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(input)) {
    try {
      return new URL(input).hostname.replace(/^\[(.*)\]$/, '$1');
    } catch {
      throw new SinkholeError('SH_USAGE', `"${input}" looks like a URL but cannot be read as one`);
    }
  }
  // www.tiktok.com/@x, www.tiktok.com:443, [2001:db8::1]:53
  const hostPort = input.split(/[/?#]/, 1)[0]!;
  const m = /^\[(.+)\]:\d+$/.exec(hostPort) ?? /^([^:]+):\d+$/.exec(hostPort);
  return m ? m[1]! : hostPort;
}
