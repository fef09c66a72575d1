// IP and CIDR matching for clients.allowFrom, groups and exceptions. Compiled
// once per policy generation; the per-query cost is paid once per client
// address thanks to the client cache in clientPolicy.ts.
import { isIPv4, isIPv6 } from 'node:net';

export interface ParsedAddress {
  v4: boolean;
  /** IPv4 as a 32-bit number, IPv6 as a 128-bit bigint. */
  value: bigint;
}

/**
 * Dual-stack sockets report IPv4 clients as `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2);
 * they are the same client as `a.b.c.d`, so every rule sees the IPv4 form.
 */
export function normalizeAddress(address: string): string {
  if (address.length > 7 && address.charCodeAt(0) === 58 /* : */ && address.startsWith('::ffff:') && address.includes('.')) {
    return address.slice(7);
  }
  const zone = address.indexOf('%');
  return zone === -1 ? address : address.slice(0, zone);
}

/**
 * The wire form of an address (4 or 16 bytes, network order), or undefined when it is not one
 * (RFC 1035 §3.4.1, RFC 3596 §2.2). `v4` fixes the size: an AAAA record of ::ffff:192.0.2.1 (which
 * parseAddress reads as the IPv4 address) still takes 16 bytes.
 */
export function addressBytes(text: string, v4?: boolean): Buffer | undefined {
  const a = parseAddress(text);
  if (!a) return undefined;
  const b = Buffer.alloc((v4 ?? a.v4) ? 4 : 16);
  let v = a.value;
  for (let i = b.length - 1; i >= 0; i--, v >>= 8n) b[i] = Number(v & 0xffn);
  return b;
}

export function parseAddress(text: string): ParsedAddress | undefined {
  const address = normalizeAddress(text);
  if (isIPv4(address)) {
    let v = 0n;
    for (const part of address.split('.')) v = (v << 8n) | BigInt(Number(part));
    return { v4: true, value: v };
  }
  if (!isIPv6(address)) return undefined;
  const [head = '', tail] = address.split('::') as [string, string | undefined];
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const expand = (parts: string[]): number[] =>
    parts.flatMap((p) => {
      if (!p.includes('.')) return [parseInt(p, 16)];
      const [a = 0, b = 0, c = 0, d = 0] = p.split('.').map(Number);
      return [(a << 8) | b, (c << 8) | d];
    });
  const h = expand(groups(head));
  const t = tail === undefined ? [] : expand(groups(tail));
  const words = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  let v = 0n;
  for (const w of words) v = (v << 16n) | BigInt(w);
  return { v4: false, value: v };
}

export interface Net {
  v4: boolean;
  network: bigint;
  mask: bigint;
  prefix: number;
}

/** Whether every address of `inner` is in `outer`. */
function within(inner: Net, outer: Net): boolean {
  return inner.v4 === outer.v4 && outer.prefix <= inner.prefix && (inner.network & outer.mask) === outer.network;
}

/** `a.b.c.d`, `a.b.c.d/n`, `x::y`, `x::/n`; returns an error message instead of a Net when invalid. */
export function parseCidr(text: string): Net | string {
  const slash = text.indexOf('/');
  const addr = parseAddress(slash === -1 ? text : text.slice(0, slash));
  if (!addr) return `expected an IP address or CIDR like 10.0.0.0/8 or 2001:db8::/32, got "${text}"`;
  const bits = addr.v4 ? 32 : 128;
  const prefixText = slash === -1 ? String(bits) : text.slice(slash + 1);
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= bits)) return `prefix length must be 0 to ${bits}, got "${prefixText}"`;
  const all = (1n << BigInt(bits)) - 1n;
  const mask = all ^ ((1n << BigInt(bits - prefix)) - 1n);
  // 10.20.1.17/16 is almost always a typo for a /32 or for 10.20.0.0/16; guessing either could widen access.
  if ((addr.value & ~mask & all) !== 0n) return `"${text}" has host bits set below /${prefix}; write the network address, or the address alone`;
  return { v4: addr.v4, network: addr.value & mask, mask, prefix };
}

export class CidrSet {
  private readonly nets: Net[] = [];

  add(net: Net): void {
    this.nets.push(net);
  }

  get size(): number {
    return this.nets.length;
  }

  contains(addr: ParsedAddress): boolean {
    for (const n of this.nets) if (n.v4 === addr.v4 && (addr.value & n.mask) === n.network) return true;
    return false;
  }

  /** How much of `net` the set covers: all of it (some entry contains it), part, or none. */
  coverage(net: Net): 'all' | 'part' | 'none' {
    if (this.nets.some((n) => within(net, n))) return 'all';
    return this.nets.some((n) => within(n, net)) ? 'part' : 'none';
  }
}
