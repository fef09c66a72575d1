// sinkhole.yaml `clients:`: who may ask (allowFrom), the groups exceptions name, the relays whose EDNS
// identity options are believed, and the per-client rate limit. Every problem names file:line:col.
import { parseCidr } from '../net/cidr.js';
import { parseSelector } from '../net/mac.js';
import type { Config, RateLimitConfig } from './schema.js';
import type { YamlReader, YNode } from './yamlReader.js';

/** A name in clients.rateLimit.exempt, checked against clients.groups once the whole file is read (config.ts). */
export interface PendingName {
  value: string;
  node: YNode;
  q: string;
}

export function readClients(r: YamlReader, n: YNode, p: string, c: Config, pendingExempt: PendingName[]): void {
  r.map(n, p, {
    allowFrom: (v, q) => (c.clients.allowFrom = cidrs(r, v, q)),
    groups: (v, q) => {
      c.clients.groups = r.entries(v, q).map(({ key, value }) => ({ name: key, members: selectors(r, value, `${q}.${key}`) }));
    },
    rateLimit: (v, q) => (c.clients.rateLimit = readRateLimit(r, v, q, pendingExempt)),
    trustedRelays: (v, q) => (c.clients.trustedRelays = cidrs(r, v, q)),
  });
}

function readRateLimit(r: YamlReader, node: YNode, path: string, pendingExempt: PendingName[]): RateLimitConfig {
  // Generous for a LAN (docs/configuration.md "Rate limiting" says why); present means on.
  const out: RateLimitConfig = { qps: 500, burst: 2000, action: 'truncate', exempt: [], dryRun: false, ipv4Prefix: 32, ipv6Prefix: 56, slip: 2 };
  r.map(node, path, {
    qps: (v, q) => (out.qps = r.integer(v, q, 1, 1_000_000) ?? out.qps),
    burst: (v, q) => (out.burst = r.integer(v, q, 1, 10_000_000) ?? out.burst),
    action: (v, q) => (out.action = r.oneOf(v, q, ['truncate', 'refuse'] as const) ?? out.action),
    exempt: (v, q) => {
      out.exempt = r.strings(v, q).map(({ value, node: n }) => {
        pendingExempt.push({ value, node: n, q });
        return value;
      });
    },
    dryRun: (v, q) => (out.dryRun = r.boolean(v, q) ?? out.dryRun),
    ipv4Prefix: (v, q) => (out.ipv4Prefix = r.integer(v, q, 8, 32) ?? out.ipv4Prefix),
    ipv6Prefix: (v, q) => (out.ipv6Prefix = r.integer(v, q, 16, 128) ?? out.ipv6Prefix),
    slip: (v, q) => (out.slip = r.integer(v, q, 0, 10) ?? out.slip),
  });
  return out;
}

/** Group members: IPs/CIDRs, mac:... or host:... */
function selectors(r: YamlReader, node: YNode, path: string): string[] {
  return r.strings(node, path).map(({ value, node: n }) => {
    const sel = parseSelector(value);
    if (typeof sel === 'string') r.fail(n, path, sel);
    return value;
  });
}

function cidrs(r: YamlReader, node: YNode, path: string): string[] {
  return r.strings(node, path).map(({ value, node: n }) => {
    const net = parseCidr(value);
    if (typeof net === 'string') r.fail(n, path, net);
    return value;
  });
}
