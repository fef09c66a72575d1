// Stage 5 (with stage 4, client policy, folded in: the client's groups and
// exceptions are looked up only when a name matches an enforced list, so the
// ~all queries that match nothing never pay for it).
//
// The qname is checked first; if it is not blocked the query goes on, and the
// names the answer points at (CNAME chain, HTTPS/SVCB targets) are checked the
// same way, so a CNAME into a blocked domain is sinkholed too. Cached answers
// pass here as well: the cache below is client-independent.
import type { Query } from '../dns/query.js';
import type { Clock } from '../clock.js';
import { decide, type Decision, type Generation } from '../policy/generation.js';
import type { PolicyHolder } from '../policy/holder.js';
import { isPromise, type Handler, type Outcome, type Stage } from '../pipeline/types.js';

export class BlocklistStage implements Stage {
  readonly name = 'blocklist';

  constructor(
    private readonly policy: PolicyHolder,
    private readonly clock: Clock,
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
    return decide(g, name, g.clients.view(q.client), this.now, first);
  }

  private after(g: Generation, q: Query, o: Outcome, d: Decision | undefined): Outcome {
    if (g.config.blocking.inspectCnames && o.targets && (o.result === 'forwarded' || o.result === 'cached')) {
      for (const target of o.targets) {
        const t = this.verdict(g, q, target);
        if (t?.decision === 'blocked') return { ...this.sinkhole(g, q, t), viaTarget: target };
        if (t?.decision === 'excepted' && !d) d = t;
      }
    }
    if (d?.decision === 'excepted' && (o.result === 'forwarded' || o.result === 'cached')) {
      return { ...o, result: 'excepted', list: d.match.list, rule: d.match.rule, exception: d.exception.id, viaTarget: d.match.name === q.qname ? undefined : d.match.name };
    }
    return o;
  }

  private sinkhole(g: Generation, q: Query, d: Extract<Decision, { decision: 'blocked' }>): Outcome {
    return { wire: g.responder.reply(q, d.match.list), result: 'blocked', list: d.match.list, rule: d.match.rule };
  }
}
