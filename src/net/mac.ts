// MAC addresses and client selectors. A MAC is kept in one canonical form,
// lower-case hex pairs joined by ':', so "AA-BB-CC-DD-EE-FF" from a Windows
// export and "aa:bb:cc:dd:ee:ff" from Kea name the same device.
import { parseCidr } from './cidr.js';

const CANONICAL_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
const MAC_RE = /^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/i;

/** The canonical form of a 48-bit MAC, or undefined when `text` is not one. */
export function normalizeMac(text: string): string | undefined {
  if (CANONICAL_RE.test(text)) return text; // what Kea and dnsmasq write: nothing to change (and the common case)
  const t = text.trim();
  if (!MAC_RE.test(t)) return undefined;
  const hex = t.replace(/[:-]/g, '').toLowerCase();
  return hex.match(/../g)!.join(':');
}

/** Six bytes (e.g. dnsmasq's EDNS option 65001) as a canonical MAC. */
export function macFromBytes(buf: Buffer, off: number): string {
  let s = '';
  for (let i = 0; i < 6; i++) s += (i ? ':' : '') + buf[off + i]!.toString(16).padStart(2, '0');
  return s;
}

/** Hostnames from leases are compared case-insensitively, without a trailing dot (RFC 4343). */
export function normalizeHost(text: string): string {
  return text.trim().toLowerCase().replace(/\.$/, '');
}

export type Selector = { kind: 'mac'; mac: string } | { kind: 'host'; host: string } | { kind: 'net'; text: string };

/**
 * A client as written in an exception or a group: `mac:aa:bb:cc:dd:ee:ff`,
 * `host:NAME` (exact hostname from a lease or identity.static), or an IP/CIDR.
 * Returns an error message when it is none of them.
 */
export function parseSelector(text: string): Selector | string {
  if (text.startsWith('mac:')) {
    const mac = normalizeMac(text.slice(4));
    return mac ? { kind: 'mac', mac } : `"${text}": expected mac: and a MAC address like mac:aa:bb:cc:dd:ee:ff`;
  }
  if (text.startsWith('host:')) {
    const host = normalizeHost(text.slice(5));
    return host && /^[a-z0-9_]([a-z0-9_.-]{0,252})$/.test(host) ? { kind: 'host', host } : `"${text}": expected host: and a hostname like host:speaker-ipad`;
  }
  const net = parseCidr(text);
  return typeof net === 'string' ? net : { kind: 'net', text };
}
