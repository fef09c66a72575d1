// A fingerprint of what a policy generation enforces, so that instances run
// from one repository can be compared at a glance (sinkhole_policy_info,
// `validate`). It covers what decides answers: the rules of every list and
// which lists are enforced, the sinkhole response and its TTL, CNAME
// inspection, who may ask (allowFrom, groups) and the exceptions as instants
// (a date read in another zone is another policy). It leaves out what does
// not: file paths and line numbers, upstreams, cache, listeners, logs, and the
// reason and approver texts of exceptions.
import { createHash } from 'node:crypto';
import type { Generation } from './generation.js';
import type { LocalRecord } from './rpz/actions.js';
import { digestNames } from './rpz/names.js';

const memo = new WeakMap<Generation, string>();

/** 16 hex digits of SHA-256; computed once per generation (hashing a million rules takes tens of ms). */
export function policyHash(g: Generation): string {
  let hash = memo.get(g);
  if (hash === undefined) {
    const h = createHash('sha256');
    const { blocking, clients } = g.config;
    h.update(JSON.stringify({
      enforce: [...blocking.enforce].sort(),
      response: blocking.response,
      ttl: blocking.ttl,
      inspectCnames: blocking.inspectCnames,
      allowFrom: clients.allowFrom,
      groups: clients.groups,
      exceptions: g.exceptions.map((e) => ({
        id: e.id, clients: e.clients, allowLists: [...e.allowLists].sort(), allowDomains: e.allowDomains, endsAt: e.endsAt, expiresAt: e.expiresAt,
      })),
    }));
    g.matcher.digest((chunk) => h.update(chunk));
    // RPZ rules in zone order (docs/rpz.md): what they trigger on and do, and each zone's override; not its file or lines.
    for (const z of g.rpzZones) {
      h.update(JSON.stringify({ rpz: z.name, override: z.override, origin: z.origin }));
      digestNames(z.names, (chunk) => h.update(chunk));
      const records = (rs: readonly LocalRecord[] | undefined): string => (rs ?? []).map((x) => `${x.type}:${Buffer.from(x.rdata).toString('hex')}`).join(',');
      for (const [i, rs] of z.local) h.update(`${i}\t${records(rs)}\n`);
      for (const r of z.ipRules) h.update(`${r.owner}\t${r.action}\t${records(r.records)}\n`);
    }
    hash = h.digest('hex').slice(0, 16);
    memo.set(g, hash);
  }
  return hash;
}
