// Which RPZ rule applies (draft-vixie-dnsop-dns-rpz §5, "Precedence"):
// zones in config order and the first zone that matches wins (§5.1); within
// a zone the client's address first, then the query name, then an address in
// the answer (§5.2, with NSDNAME/NSIP, which a forwarder never sees, left
// out); within a trigger the most specific match: an exact name before a
// wildcard, the longest wildcard, the longest IP prefix (§5.3).
import type { ParsedAddress } from '../../net/cidr.js';
import { findQname } from './names.js';
import type { TriggerKind } from './triggers.js';
import { ipKey, nameRule, type IpIndex, type RpzRule, type RpzZoneData } from './zone.js';

export interface RpzHit {
  zone: RpzZoneData;
  /** The zone's position in blocking.rpz. */
  index: number;
  rule: RpzRule;
  /** For a response-IP hit: the address in the answer that matched. */
  address?: string;
}

function lookupIp(index: IpIndex, a: ParsedAddress): { rule: number; prefix: number } | undefined {
  const bits = a.v4 ? 32 : 128;
  for (const prefix of index.lengths) {
    const network = (a.value >> BigInt(bits - prefix)) << BigInt(bits - prefix);
    const rule = index.byKey.get(ipKey(prefix, network));
    if (rule !== undefined) return { rule, prefix };
  }
  return undefined;
}

/**
 * The most specific QNAME trigger of `z` for `name` (lower-case, no trailing dot),
 * an index for nameRule. *.example.com covers names strictly below example.com, the nearest parent
 * being the longest wildcard; but, as a wildcard does in any zone (RFC 4592
 * §2.2, the closest encloser), not below a name the zone has a rule for:
 * with `*.bad.example CNAME .` and `pass.bad.example CNAME rpz-passthru.`,
 * www.pass.bad.example matches neither (Unbound and BIND read it so too).
 */
export function qnameRule(z: RpzZoneData, name: string): number | undefined {
  const i = findQname(z.names, name);
  return i === -1 ? undefined : i;
}

/** Rules made per zone at most (nameRule): a scan of a million names cannot grow the cache for ever. */
const MAX_CACHED = 65_536;

export class RpzSet {
  /** The zones that blocking.enforce names, in blocking.rpz order. */
  readonly zones: readonly RpzZoneData[];
  /** Per zone: whether any zone up to and including it has response-IP triggers (so a later hit must wait for the answer). */
  private readonly ipBefore: boolean[];

  /**
   * Per zone: the rules of the QNAME triggers that have matched, made once and kept, as the
   * matcher keeps its rule texts: every rewrite names its rule, and a few rules match most queries.
   */
  private readonly made: Map<number, RpzRule>[];

  constructor(all: readonly RpzZoneData[], enforce: readonly string[]) {
    this.zones = all.filter((z) => enforce.includes(z.name));
    let seen = false;
    this.ipBefore = this.zones.map((z) => (seen ||= z.responseIp.v4.byKey.size + z.responseIp.v6.byKey.size > 0));
    this.made = this.zones.map(() => new Map());
    this.hasClientIp = this.zones.some((z) => z.clientIp.v4.byKey.size + z.clientIp.v6.byKey.size > 0);
  }

  /** Whether any zone has client-IP triggers: without them the client's address need not be parsed per query. */
  readonly hasClientIp: boolean;

  private ruleOf(zone: number, i: number): RpzRule {
    const made = this.made[zone]!;
    let rule = made.get(i);
    if (!rule) {
      rule = nameRule(this.zones[zone]!, i);
      if (made.size >= MAX_CACHED) made.clear();
      made.set(i, rule);
    }
    return rule;
  }

  get active(): boolean {
    return this.zones.length > 0;
  }

  /** Whether a zone before `index` has response-IP triggers: then a hit at `index` can only be applied once the answer is known. */
  ipTriggersBefore(index: number): boolean {
    return index > 0 && this.ipBefore[index - 1] === true;
  }

  /** Whether any zone has response-IP triggers. */
  get hasResponseIp(): boolean {
    return this.ipBefore[this.ipBefore.length - 1] === true;
  }

  /**
   * The first hit from zone `from` on, by the client's address or the query name (the triggers known
   * before the query goes upstream). `client` is undefined for a client that is not an IP (never here).
   */
  beforeAnswer(client: ParsedAddress | undefined, qname: string, from = 0): RpzHit | undefined {
    for (let i = from; i < this.zones.length; i++) {
      const z = this.zones[i]!;
      if (client) {
        const ip = lookupIp(client.v4 ? z.clientIp.v4 : z.clientIp.v6, client);
        if (ip) return { zone: z, index: i, rule: z.ipRules[ip.rule]! };
      }
      const q = findQname(z.names, qname);
      if (q !== -1) return { zone: z, index: i, rule: this.ruleOf(i, q) };
    }
    return undefined;
  }

  /**
   * The first response-IP hit among zones `from` to `to` (exclusive) for the
   * answer's addresses; within a zone the longest prefix over all of them
   * (draft §5.3), the first address in the answer on a tie.
   */
  responseIp(addresses: readonly { text: string; address: ParsedAddress }[], from: number, to = this.zones.length): RpzHit | undefined {
    if (!addresses.length) return undefined;
    for (let i = from; i < Math.min(to, this.zones.length); i++) {
      const z = this.zones[i]!;
      let best: { rule: number; prefix: number; text: string } | undefined;
      for (const a of addresses) {
        const hit = lookupIp(a.address.v4 ? z.responseIp.v4 : z.responseIp.v6, a.address);
        if (hit && (!best || hit.prefix > best.prefix)) best = { ...hit, text: a.text };
      }
      if (best) return { zone: z, index: i, rule: z.ipRules[best.rule]!, address: best.text };
    }
    return undefined;
  }

  /** Every hit in every zone for a name (and optionally a client and answer addresses), in precedence order: for `check`. */
  explain(client: ParsedAddress | undefined, qname: string, addresses: readonly { text: string; address: ParsedAddress }[] = []): RpzHit[] {
    const out: RpzHit[] = [];
    for (let i = 0; i < this.zones.length; i++) {
      const pre = this.beforeAnswer(client, qname, i);
      if (pre && pre.index === i) out.push(pre);
      const ip = this.responseIp(addresses, i, i + 1);
      if (ip) out.push(ip);
    }
    return out;
  }
}

export type { TriggerKind };
