// Discovery of Designated Resolvers (RFC 9462): a device that knows sinkhole
// only as "the DNS server from DHCP" asks `_dns.resolver.arpa` SVCB and learns
// that the same server speaks DoT and DoH, then upgrades to them (Windows 11,
// iOS/macOS, Android). It stays on sinkhole, under the same policy, rather
// than on a public resolver of its own choosing.
//
// Names under resolver.arpa are answered here and never forwarded (RFC 9462
// §8.2: a resolver must not ask anyone else about its own designations).
import { isIP } from 'node:net';
import { CLASS_IN, RCODE, TYPE } from '../dns/constants.js';
import { buildReply } from '../dns/reply.js';
import type { Query } from '../dns/query.js';
import type { Outcome } from '../pipeline/types.js';
import type { LocalAnswerer } from './localAnswers.js';
import { parseAddress } from '../net/cidr.js';

export const DDR_NAME = '_dns.resolver.arpa';
const ZONE = 'resolver.arpa';
/** Long enough to spare the query, short enough that turning DoT/DoH off is noticed within minutes. */
export const DDR_TTL = 300;

/** SvcParamKeys (RFC 9460 §14.3.2, RFC 9461 §5). */
const KEY_ALPN = 1;
const KEY_PORT = 3;
const KEY_IPV4HINT = 4;
const KEY_IPV6HINT = 6;
const KEY_DOHPATH = 7;

export interface DdrEndpoint {
  /** ALPN of the protocol: "dot" (RFC 7858) or "h2" (DoH, RFC 8484). */
  alpn: 'dot' | 'h2';
  host: string;
  port: number;
}

function wireName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

function param(key: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + value.length);
  b.writeUInt16BE(key, 0);
  b.writeUInt16BE(value.length, 2);
  value.copy(b, 4);
  return b;
}

/** The RDATA of one ServiceMode SVCB record (RFC 9460 §2.2), params in increasing key order. */
export function svcbRdata(priority: number, target: string, alpn: string, port: number, hosts: string[], dohpath?: string): Buffer {
  const prio = Buffer.alloc(2);
  prio.writeUInt16BE(priority, 0);
  const v4 = hosts.filter((h) => isIP(h) === 4);
  const v6 = hosts.filter((h) => isIP(h) === 6);
  const portBuf = Buffer.alloc(2);
  portBuf.writeUInt16BE(port, 0);
  const parts = [
    prio,
    wireName(target), // RFC 9460 §2.2: TargetName is never compressed
    param(KEY_ALPN, Buffer.concat([Buffer.from([alpn.length]), Buffer.from(alpn, 'ascii')])),
    param(KEY_PORT, portBuf),
  ];
  if (v4.length) parts.push(param(KEY_IPV4HINT, Buffer.from(v4.flatMap((h) => h.split('.').map(Number)))));
  if (v6.length) parts.push(param(KEY_IPV6HINT, Buffer.concat(v6.map(ipv6Bytes))));
  // RFC 9461 §5: the URI template of the DoH endpoint, relative to the TargetName.
  if (dohpath) parts.push(param(KEY_DOHPATH, Buffer.from(dohpath, 'utf8')));
  return Buffer.concat(parts);
}

function ipv6Bytes(h: string): Buffer {
  const out = Buffer.alloc(16);
  out.writeBigUInt64BE((parseAddress(h)!.value >> 64n) & 0xffffffffffffffffn, 0);
  out.writeBigUInt64BE(parseAddress(h)!.value & 0xffffffffffffffffn, 8);
  return out;
}

export class DdrAnswerer implements LocalAnswerer {
  /** The answer section, compiled once: owner names point at the question (0xC00C). */
  private body: { bytes: Buffer; an: number; ns: number } | undefined;

  /**
   * `target` is the name clients will check the certificate against (its DNS
   * name); `undefined` or no endpoint leaves `_dns.resolver.arpa` with no record.
   * Addresses that mean "every interface" (0.0.0.0, ::) give no hint: the
   * client then uses the address it already asks (RFC 9462 §4.2).
   */
  configure(target: string | undefined, endpoints: DdrEndpoint[], dohPath: string): void {
    if (!target || endpoints.length === 0) {
      this.body = undefined;
      return;
    }
    const groups = new Map<string, { alpn: 'dot' | 'h2'; port: number; hosts: string[] }>();
    for (const e of [...endpoints].sort((a, b) => (a.alpn === b.alpn ? a.port - b.port : a.alpn === 'dot' ? -1 : 1))) {
      const key = `${e.alpn}|${e.port}`;
      const g = groups.get(key) ?? { alpn: e.alpn, port: e.port, hosts: [] };
      groups.set(key, g);
      if (e.host !== '0.0.0.0' && e.host !== '::' && !g.hosts.includes(e.host)) g.hosts.push(e.host);
    }
    const records: Buffer[] = [];
    let priority = 1;
    for (const g of groups.values()) {
      const rdata = svcbRdata(priority++, target, g.alpn, g.port, g.hosts, g.alpn === 'h2' ? `${dohPath}{?dns}` : undefined);
      const rr = Buffer.alloc(12 + rdata.length);
      rr.writeUInt16BE(0xc00c, 0); // the question's name, at offset 12
      rr.writeUInt16BE(TYPE.SVCB, 2);
      rr.writeUInt16BE(CLASS_IN, 4);
      rr.writeUInt32BE(DDR_TTL, 6);
      rr.writeUInt16BE(rdata.length, 10);
      rdata.copy(rr, 12);
      records.push(rr);
    }
    this.body = { bytes: Buffer.concat(records), an: records.length, ns: 0 };
  }

  answer(q: Query): Outcome | undefined {
    const n = q.qname;
    // Hot path: one endsWith for every name that is not ours.
    if (!n.endsWith(ZONE) || (n.length > ZONE.length && n.charCodeAt(n.length - ZONE.length - 1) !== 0x2e)) return undefined;
    if (n === DDR_NAME) {
      if (q.qtype === TYPE.SVCB && q.qclass === CLASS_IN && this.body) return { wire: buildReply(q, RCODE.NOERROR, this.body), result: 'local' };
      return { wire: buildReply(q, RCODE.NOERROR), result: 'local' }; // NODATA
    }
    // resolver.arpa itself exists (it holds _dns); nothing else below it does.
    return { wire: buildReply(q, n === ZONE ? RCODE.NOERROR : RCODE.NXDOMAIN), result: 'local' };
  }
}
