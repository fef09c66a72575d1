// dgram resolves every destination (and bind address) through a `lookup`
// function. Node's default defers an IP literal to the next tick, which costs
// a tick, a closure and a copy of the send arguments per datagram (it was a
// visible share of every reply in the profile, bench/profile.sh). sinkhole
// only ever sends to IP literals: the address a query came from, or an
// upstream, which config validation requires to be an IP. So the literal is
// handed back at once, and dgram sends in the same call.
import { isIP } from 'node:net';
import { lookup, type LookupOneOptions } from 'node:dns';

type Callback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * dgram calls it as (address, 4 | 6, callback) (lib/internal/dgram.js lookup4/lookup6), although
 * @types/node declares the dns.lookup options form; both are accepted.
 */
export function literalLookup(address: string, options: number | LookupOneOptions, callback: Callback): void {
  const family = typeof options === 'number' ? options : options.family === 6 || options.family === 'IPv6' ? 6 : 4;
  // One char test keeps the common case free of isIP's regular expressions: a literal of the
  // socket's family always has a '.' (IPv4) or a ':' (IPv6), and a name that reached us by mistake
  // still goes through the resolver.
  if (family === 4 ? address.charCodeAt(0) <= 57 && isIPv4Fast(address) : address.includes(':')) callback(null, address, family);
  else lookup(address, family, callback);
}

/** True for a dotted quad (digits and three dots); isIP would run two regular expressions. */
function isIPv4Fast(a: string): boolean {
  let dots = 0;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c === 46) dots++;
    else if (c < 48 || c > 57) return isIP(a) === 4;
  }
  return dots === 3;
}
