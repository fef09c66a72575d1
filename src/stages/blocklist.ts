// The blocklist stage (pipeline/chain.ts), with client policy folded in (the client's groups and
// exceptions are looked up only when a name matches an enforced list, so the
// ~all queries that match nothing never pay for it).
//
// The qname is checked first; if it is not blocked the query goes on, and the
// names the answer points at (CNAME chain, HTTPS/SVCB targets) are checked the
// same way, so a CNAME into a blocked domain is sinkholed too. Cached answers
// pass here as well: the cache below is client-independent.
import { deviceFor } from '../identity/whoAsked.js';
import type { Query } from '../dns/query.js';
import { withTtlsAtMost } from '../dns/ttl.js';
import { scanReply } from '../dns/message.js';
import type { Clock } from '../clock.js';
import { decide, type Decision, type Generation } from '../policy/generation.js';
import type { PolicyHolder } from '../policy/holder.js';
import type { IdentityHolder } from '../identity/sources.js';
import type { Device } from '../identity/table.js';
import { isPromise, type Handler, type Outcome, type Stage } from '../pipeline/types.js';

export class BlocklistStage implements Stage {
  readonly name = 'blocklist';

  constructor(
    private readonly policy: PolicyHolder,
    private readonly clock: Clock,
    private readonly identity: IdentityHolder,
  ) {}

  /** Read only when the client has exceptions: most blocked queries never need the time. */
  private readonly now = (): number => this.clock.now();

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    const g = this.policy.current;
    const d = this.verdict(g, q, q.qname);
    if (d?.decision === 'blocked') return this.sinkhole(g, q, d);
    const r = next(q);
    if (!g.config.blocking.inspectCnames && !d) return r;
    return isPromise(r) ? r.then((o) => this.after(g, q, o, d)) : this.after(g, q, r, d);
  }

  /** The sinkhole answer when the query's own name is blocked for this client (local answers ask it: ANY). */
  blockedOutcome(q: Query): Outcome | undefined {
    const g = this.policy.current;
    const d = this.verdict(g, q, q.qname);
    return d?.decision === 'blocked' ? this.sinkhole(g, q, d) : undefined;
  }

  /** undefined when no enforced list matches (the common case: one hash probe per label). */
  private verdict(g: Generation, q: Query, name: string): Decision | undefined {
    const first = g.matcher.find(name, g.enforced);
    if (first === -1) return undefined;
    // Identity only when a name matched and the policy names a device somewhere (mac:/host:).
    const view = g.clients.byDevice ? g.clients.viewOf(q.client, this.device(q)) : g.clients.view(q.client);
    return decide(g, name, view, this.now, first);
  }

  /** The device behind the query: the MAC a trusted relay sent, else whoever holds the address now. */
  private device(q: Query): Device | undefined {
    // Below the relay stage, the query already carries the relayed client and MAC.
    return deviceFor(this.identity.current, q.client, q.mac, this.clock.now());
  }

  private after(g: Generation, q: Query, o: Outcome, d: Decision | undefined): Outcome {
    // A stale answer (RFC 8767) is judged like any other: serve-stale never bypasses policy.
    const upstreamAnswer = o.result === 'forwarded' || o.result === 'cached' || o.result === 'stale';
    if (g.config.blocking.inspectCnames && o.targets && upstreamAnswer) {
      for (const target of o.targets) {
        const t = this.verdict(g, q, target);
        if (t?.decision === 'blocked') return { ...this.sinkhole(g, q, t), viaTarget: target };
        if (t?.decision === 'excepted' && !d) d = t;
      }
    }
    if (d?.decision === 'excepted' && upstreamAnswer) {
      // An excepted answer is kept no longer than a sinkhole answer (blocking.ttl): when the exception
      // is revoked or lapses, the device asks again within that time and is blocked. A copy: the
      // cache's bytes serve every client. A fresh answer's scan has the TTL offsets; a cached or stale
      // one is scanned again here, on this rare path, rather than carrying offsets on every cache hit.
      const offsets = o.scan?.ttlOffsets ?? scanReply(o.wire)?.ttlOffsets;
      const wire = offsets ? withTtlsAtMost(o.wire, offsets, g.config.blocking.ttl) : o.wire;
      return { ...o, wire, result: 'excepted', list: d.match.list, rule: d.match.rule, exception: d.exception.id, viaTarget: d.match.name === q.qname ? undefined : d.match.name };
    }
    return o;
  }

  private sinkhole(g: Generation, q: Query, d: Extract<Decision, { decision: 'blocked' }>): Outcome {
    return { wire: g.responder.reply(q, d.match.list), result: 'blocked', list: d.match.list, rule: d.match.rule };
  }
}
