// The rpz stage, right below the blocklist and above the cache (pipeline/chain.ts): Response Policy
// Zones (docs/rpz.md, draft-vixie-dnsop-dns-rpz). Above the cache, so a
// client-IP rule sees every client and a response-IP rule inspects cached
// answers as well as fresh ones; the cache itself stays client-independent
// and is never bypassed. Below the blocklist, so sinkhole's own lists (and
// their CNAME inspection) still judge whatever RPZ lets through.
//
// Precedence (draft §5): zones in blocking.rpz order, the first that matches
// wins; within a zone client IP, then QNAME, then an address in the answer.
// A QNAME hit in zone k is applied at once unless a zone before k has
// response-IP rules: then the answer is fetched first, since one of its
// addresses may be matched by an earlier zone, which wins.
//
// A match that an active exception covers (by the zone's name or by domain) is
// skipped for that client, and the search goes on in the next zone.
// `override: disabled` only counts and logs a match, and goes on too.
import { deviceFor } from '../identity/whoAsked.js';
import type { Clock } from '../clock.js';
import type { Query } from '../dns/query.js';
import { withTtlsAtMost } from '../dns/ttl.js';
import { scanReply } from '../dns/message.js';
import type { IdentityHolder } from '../identity/sources.js';
import { bump, type Stats } from '../metrics/stats.js';
import { parseAddress } from '../net/cidr.js';
import { covers, type Generation } from '../policy/generation.js';
import { isActive, type Exception } from '../policy/exceptions.js';
import type { PolicyHolder } from '../policy/holder.js';
import { answerAddresses, rewriteReply, rpzEde } from '../policy/rpz/answer.js';
import type { RpzAction } from '../policy/rpz/actions.js';
import type { RpzHit } from '../policy/rpz/evaluate.js';
import { isPromise, NO_REPLY, type Handler, type Outcome, type Stage } from '../pipeline/types.js';

type Applied = RpzAction | 'disabled';

export class RpzStage implements Stage {
  readonly name = 'rpz';

  constructor(
    private readonly policy: PolicyHolder,
    private readonly stats: Stats,
    private readonly clock: Clock,
    private readonly identity: IdentityHolder,
  ) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    const g = this.policy.current;
    const rpz = g.rpz;
    if (!rpz.active) return next(q);
    // Parsing the address was 5% of a blocked RPZ answer (bench/profile.sh RPZ=1): only when a zone has client-IP rules.
    const client = rpz.hasClientIp ? parseAddress(q.client) : undefined;
    const excepted: { hit?: RpzHit; exception?: Exception } = {};
    let pre: RpzHit | undefined;
    for (let from = 0; ; from = pre.index + 1) {
      pre = rpz.beforeAnswer(client, q.qname, from);
      if (!pre || this.usable(g, q, pre, excepted)) break;
    }
    if (pre && !rpz.ipTriggersBefore(pre.index)) return this.apply(g, q, pre, next, undefined);
    if (!pre && !rpz.hasResponseIp) return this.finish(g, q, next(q), excepted);
    const limit = pre ? pre.index : rpz.zones.length;
    const r = next(q);
    const after = (o: Outcome): Outcome | Promise<Outcome> => {
      const upstream = o.result === 'forwarded' || o.result === 'cached' || o.result === 'stale';
      if (upstream) {
        const addresses = answerAddresses(o.wire);
        let ip: RpzHit | undefined;
        for (let from = 0; from < limit; from = ip.index + 1) {
          ip = rpz.responseIp(addresses, from, limit);
          if (!ip || this.usable(g, q, ip, excepted)) break;
        }
        if (ip) return this.apply(g, q, ip, undefined, o);
      }
      return pre ? this.apply(g, q, pre, undefined, o) : this.finish(g, q, o, excepted);
    };
    return isPromise(r) ? r.then(after) : after(r);
  }

  /** Whether a hit applies to this client: not covered by an active exception, and not log-only. */
  private usable(g: Generation, q: Query, hit: RpzHit, excepted: { hit?: RpzHit; exception?: Exception }): boolean {
    if (hit.zone.override === 'disabled') {
      bump(this.stats.rpzRewrites, `${hit.zone.name}|disabled`);
      return false;
    }
    const view = g.clients.byDevice ? g.clients.viewOf(q.client, this.device(q)) : g.clients.view(q.client);
    if (view.exceptions.length) {
      const now = this.clock.now();
      const exception = view.exceptions.find((e) => isActive(e, now) && covers(e, hit.zone.name, q.qname));
      if (exception) {
        excepted.hit ??= hit;
        excepted.exception ??= exception;
        return false;
      }
    }
    return true;
  }

  private device(q: Query): ReturnType<IdentityHolder['current']['lookup']> {
    const table = this.identity.current;
    return deviceFor(table, q.client, q.mac, this.clock.now());
  }

  /**
   * Applies a hit's action. Before the answer (`o` undefined) a passthru, or a
   * tcp-only over TCP, goes upstream with `next`; after it, the answer is kept.
   */
  private apply(g: Generation, q: Query, hit: RpzHit, next: Handler | undefined, o: Outcome | undefined): Outcome | Promise<Outcome> {
    const z = hit.zone;
    const written = hit.rule.action;
    const action: RpzAction = z.override === 'none' || z.override === 'disabled' ? written : z.override;
    const stream = q.proto !== 'udp';
    const pass = action === 'passthru' || (action === 'tcp-only' && stream);
    this.count(z.name, pass ? 'passthru' : action);
    if (pass) {
      // draft §4.3: no rewrite, and no later zone is consulted; sinkhole's lists above still judge the answer.
      if (o) return o;
      return next!(q);
    }
    const base = { result: 'blocked' as const, list: z.name, rule: hit.rule.owner, ...(hit.address ? { viaTarget: hit.address } : {}) };
    // draft §4.4: no answer at all. An HTTP request (DoH) cannot go unanswered: there it is NXDOMAIN.
    if (action === 'drop' && q.proto !== 'doh') return { ...base, wire: NO_REPLY };
    const ede = rpzEde(z.name, hit.rule);
    return { ...base, wire: rewriteReply(q, action === 'drop' ? 'nxdomain' : action, hit.rule, ede, g.config.blocking.ttl) };
  }

  /** No rewrite: the answer as it came, marked excepted when an exception let an RPZ match through. */
  private finish(g: Generation, q: Query, r: Outcome | Promise<Outcome>, excepted: { hit?: RpzHit; exception?: Exception }): Outcome | Promise<Outcome> {
    if (!excepted.hit) return r;
    const mark = (o: Outcome): Outcome => {
      if (!(o.result === 'forwarded' || o.result === 'cached' || o.result === 'stale')) return o;
      // As for lists (stages/blocklist.ts): an excepted answer lives no longer than blocking.ttl, so a revoked exception bites within it.
      const offsets = o.scan?.ttlOffsets ?? scanReply(o.wire)?.ttlOffsets;
      const wire = offsets ? withTtlsAtMost(o.wire, offsets, g.config.blocking.ttl) : o.wire;
      return { ...o, wire, result: 'excepted', list: excepted.hit!.zone.name, rule: excepted.hit!.rule.owner, exception: excepted.exception!.id };
    };
    return isPromise(r) ? r.then(mark) : mark(r);
  }

  private count(zone: string, action: Applied): void {
    bump(this.stats.rpzRewrites, `${zone}|${action}`);
  }
}
