import { isIPv4 } from 'node:net';
import { parseAddress } from '../net/cidr.js';

/**
 * Truncates a client address for logs: IPv4 to its /24, IPv6 to its /56.
 * Members' browsing is sensitive; the truncated form still shows which
 * network segment a device is on.
 */
export function anonymize(address: string): string {
  if (isIPv4(address)) return address.replace(/\.\d+$/, '.0');
  const a = parseAddress(address);
  if (!a) return address;
  const kept = (a.value >> 72n) << 72n;
  const words: string[] = [];
  for (let i = 7; i >= 0; i--) words.push(((kept >> BigInt(i * 16)) & 0xffffn).toString(16));
  return words.join(':').replace(/(^|:)0(:0)+$/, '::');
}
