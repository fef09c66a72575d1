// The relay stage (pipeline/chain.ts), before policy. EDNS identity options: Client Subnet (RFC 7871) and dnsmasq's
// MAC option 65001. A DHCP server's resolver relay (dnsmasq with add-mac,
// add-subnet) puts the real client's address and MAC there; from a relay in
// clients.trustedRelays they name the client for policy and the report.
// From anyone else they are a device claiming to be another: ignored.
// Either way they never go upstream: the forwarder sends its own OPT, without
// the client's options (dns/ownQuery.ts), so a MAC or a member's subnet never
// leaves the network, and the cache below stays client-independent (an
// ECS-tailored answer must not be shared; RFC 7871 §7.3).
// Only queries that carry one of these options pay anything here: the rest
// pass on one boolean test.
import { parseAddress } from '../net/cidr.js';
import type { PolicyHolder } from '../policy/holder.js';
import { OPTION_ECS, OPTION_MAC, type Query } from '../dns/query.js';
import { macFromBytes, normalizeMac } from '../net/mac.js';
import { isPromise, type Handler, type Outcome, type Stage } from '../pipeline/types.js';
import type { Stats } from '../metrics/stats.js';

export class RelayStage implements Stage {
  readonly name = 'relay';
  constructor(
    private readonly policy: PolicyHolder,
    private readonly stats: Stats,
  ) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    if (!q.identityOptions) return next(q);
    const inner = this.rewrite(q);
    if (inner.client === q.client && inner.mac === undefined) return next(inner);
    // The stages above (metrics, logs, report) hold the query as received: tell them who asked.
    const relayed = { client: inner.client, mac: inner.mac };
    const r = next(inner);
    return isPromise(r) ? r.then((o) => ({ ...o, relayed })) : { ...r, relayed };
  }

  private rewrite(q: Query): Query {
    const addr = parseAddress(q.client);
    const trusted = addr !== undefined && this.policy.current.relays.contains(addr);
    if (trusted) this.stats.relayedIdentity++;
    else this.stats.untrustedIdentityOptions++;
    const found = readIdentityOptions(q.buf, q.optRdata);
    return {
      ...q,
      client: trusted && found.client !== undefined ? found.client : q.client,
      mac: trusted ? found.mac : undefined,
      identityOptions: false,
    };
  }
}

/**
 * The client address from ECS (only when the source prefix is a whole
 * address: a /24 names a subnet, not a device) and the MAC from option 65001
 * (six bytes, or dnsmasq's add-mac=text form).
 */
export function readIdentityOptions(buf: Buffer, rdata: number): { client?: string; mac?: string } {
  const out: { client?: string; mac?: string } = {};
  const end = rdata + buf.readUInt16BE(rdata - 2);
  for (let off = rdata; off + 4 <= end; ) {
    const code = buf.readUInt16BE(off);
    const len = buf.readUInt16BE(off + 2);
    const data = off + 4;
    if (data + len > end) break;
    if (code === OPTION_ECS && len >= 4) {
      // RFC 7871 §6: FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, ADDRESS (only the prefix's bytes).
      const family = buf.readUInt16BE(data);
      const prefix = buf[data + 2]!;
      const bytes = buf.subarray(data + 4, data + len);
      if (family === 1 && prefix === 32 && bytes.length === 4) out.client = [...bytes].join('.');
      else if (family === 2 && prefix === 128 && bytes.length === 16) {
        const words: string[] = [];
        for (let i = 0; i < 16; i += 2) words.push(bytes.readUInt16BE(i).toString(16));
        const text = words.join(':');
        out.client = parseAddress(text) ? text : undefined;
      }
    } else if (code === OPTION_MAC) {
      if (len === 6) out.mac = macFromBytes(buf, data);
      else out.mac = normalizeMac(buf.toString('latin1', data, data + len));
    }
    off = data + len;
  }
  return out;
}
