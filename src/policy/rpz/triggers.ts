// What an RPZ record's owner name triggers on (draft-vixie-dnsop-dns-rpz §3):
// its name relative to the zone's origin ends in a special label, or is a
// query name.
//   bad.example              QNAME, exactly this name (§3.1)
//   *.bad.example            QNAME, every name below bad.example, not itself (§3.1)
//   32.1.2.0.192.rpz-ip      response IP, an A/AAAA in the answer within 192.0.2.1/32 (§3.2)
//   24.0.2.0.192.rpz-client-ip   the client's address within 192.0.2.0/24 (§3.5)
//   ns.example.rpz-nsdname   NS name of the answer's delegation (§3.3): never seen by a forwarder
//   32.1.2.0.192.rpz-nsip    NS address of the delegation (§3.4): likewise
// Addresses are written reversed, prefix length first (§3.2): IPv4 as four
// decimal octets, IPv6 as eight hex words with `zz` standing once for the
// longest run of zero words (as `::` does).

export type TriggerKind = 'qname' | 'wildcard' | 'response-ip' | 'client-ip' | 'nsdname' | 'nsip';

/** An IP prefix: `bits` holds the network, IPv4 in the low 32 bits of a bigint. */
export interface IpPrefix {
  v4: boolean;
  prefix: number;
  network: bigint;
}

export type Trigger =
  | { kind: 'qname' | 'wildcard'; name: string }
  | { kind: 'response-ip' | 'client-ip'; net: IpPrefix }
  | { kind: 'nsdname' | 'nsip' };

const SUFFIX: Record<string, TriggerKind> = { 'rpz-ip': 'response-ip', 'rpz-client-ip': 'client-ip', 'rpz-nsdname': 'nsdname', 'rpz-nsip': 'nsip' };

/**
 * The reversed-label prefix (labels before `.rpz-ip`), or what was expected.
 * Bits below the prefix must be zero: `24.1.2.0.192` is almost always a typo
 * for a /32 or for 24.0.2.0.192, and guessing either changes what is blocked.
 */
export function parseReversedPrefix(labels: readonly string[]): IpPrefix | string {
  const [lenText, ...rest] = labels;
  const prefix = lenText !== undefined && /^\d{1,3}$/.test(lenText) ? Number(lenText) : NaN;
  const words = rest.reverse();
  const v6 = words.includes('zz') || words.length === 8;
  if (!v6) {
    if (words.length !== 4 || !words.every((w) => /^\d{1,3}$/.test(w) && Number(w) <= 255)) {
      return 'expected an address written reversed with its prefix length first, like 32.1.2.0.192 (192.0.2.1/32) or 128.1.zz.db8.2001 (2001:db8::1/128)';
    }
    if (!(prefix >= 1 && prefix <= 32)) return `expected an IPv4 prefix length from 1 to 32, got "${lenText}"`;
    let v = 0n;
    for (const w of words) v = (v << 8n) | BigInt(Number(w));
    return checkHostBits({ v4: true, prefix, network: v }, 32);
  }
  const zz = words.indexOf('zz');
  if (zz !== words.lastIndexOf('zz')) return 'expected at most one "zz" (it stands for one run of zero words, as "::" does)';
  if (!words.every((w) => w === 'zz' || /^[0-9a-f]{1,4}$/.test(w))) return 'expected IPv6 words of 1 to 4 hex digits, reversed, with "zz" for a run of zeros';
  const fill = zz === -1 ? 0 : 8 - (words.length - 1);
  if ((zz === -1 && words.length !== 8) || (zz !== -1 && fill < 1)) return `expected eight IPv6 words (or fewer with one "zz"), got ${words.length}`;
  const full = zz === -1 ? words : [...words.slice(0, zz), ...new Array<string>(fill).fill('0'), ...words.slice(zz + 1)];
  if (!(prefix >= 1 && prefix <= 128)) return `expected an IPv6 prefix length from 1 to 128, got "${lenText}"`;
  let v = 0n;
  for (const w of full) v = (v << 16n) | BigInt(parseInt(w, 16));
  return checkHostBits({ v4: false, prefix, network: v }, 128);
}

function checkHostBits(net: IpPrefix, bits: number): IpPrefix | string {
  const host = (1n << BigInt(bits - net.prefix)) - 1n;
  return (net.network & host) === 0n ? net : `the address has bits set below /${net.prefix}; write the network address (${formatPrefix({ ...net, network: net.network & ~host })})`;
}

/** 192.0.2.0/24 or 2001:db8::/32, for messages and `check`. */
export function formatPrefix(net: IpPrefix): string {
  if (net.v4) return `${[24n, 16n, 8n, 0n].map((s) => (net.network >> s) & 255n).join('.')}/${net.prefix}`;
  const words: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) words.push(((net.network >> s) & 0xffffn).toString(16));
  // The longest run of zero words becomes "::" (RFC 5952 §4.2).
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (words[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > best.len && j - i > 1) best = { at: i, len: j - i };
    i = j;
  }
  const text = best.at === -1 ? words.join(':') : `${words.slice(0, best.at).join(':')}::${words.slice(best.at + best.len).join(':')}`;
  return `${text}/${net.prefix}`;
}

/** The trigger of a record whose owner is `relative` (the owner without the zone's origin), or what was expected. */
export function triggerOf(relative: string): Trigger | string {
  // Nearly every owner of a big feed is a plain name or its wildcard: no label to split for those.
  if (!relative.includes('rpz-')) {
    const star = relative.lastIndexOf('*');
    if (star === -1) return { kind: 'qname', name: relative };
    if (star === 0 && relative.length > 2 && relative.charCodeAt(1) === 0x2e) return { kind: 'wildcard', name: relative.slice(2) };
  }
  const labels = relative.split('.');
  const last = labels[labels.length - 1]!;
  const kind = SUFFIX[last];
  if (kind === 'response-ip' || kind === 'client-ip') {
    const net = parseReversedPrefix(labels.slice(0, -1));
    return typeof net === 'string' ? net : { kind, net };
  }
  if (kind) return { kind } as Trigger;
  if (labels.some((l, i) => l === '*' && i > 0) || labels.some((l) => l.includes('*') && l !== '*')) {
    return 'expected "*" only as the whole first label (a wildcard, *.example.com)';
  }
  if (labels.some((l) => l.startsWith('rpz-'))) return `expected a query name; "${relative}" has an rpz- label this sinkhole does not know`;
  if (labels[0] === '*') return labels.length > 1 ? { kind: 'wildcard', name: labels.slice(1).join('.') } : 'expected a name after "*." (a bare * would match every name)';
  return { kind: 'qname', name: relative };
}
