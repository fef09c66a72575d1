// The rateLimit stage, right after validate (pipeline/chain.ts): a token bucket per client (clients.rateLimit).
// Off when the key is absent. Over the limit, a client gets what `action` says:
//   truncate: over UDP an empty reply with TC set (header + question), so a
//             real client retries over TCP and a spoofed source gets nothing
//             bigger than its query back (the "slip" of BIND's RRL);
//   refuse:   REFUSED.
// Over UDP only one over-limit query in `slip` (default 2) gets that reply;
// the others get none, as with BIND's RRL. Sending a reply costs as much as
// answering from the cache (the send is most of a cached answer's cost), so
// answering every flooded query left other clients queued behind the flood
// (bench/flood.sh); a dropped query costs only its receive. A real client
// whose query is dropped retries, and gets the TC or REFUSED at most one
// retry later.
// Over TCP there is nothing to truncate, and the client has already proved
// its address with the handshake, so a TCP query over the limit is REFUSED
// whatever the action: the limit is per client, not per transport, or a
// flooder would only have to switch to TCP.
import { isDeepStrictEqual } from 'node:util';
import type { Clock } from '../clock.js';
import type { RateLimitConfig } from '../config/config.js';
import { FLAG_TC, RCODE } from '../dns/constants.js';
import type { Query } from '../dns/query.js';
import { buildReply, errorReply } from '../dns/reply.js';
import type { Logger } from '../log.js';
import type { Stats } from '../metrics/stats.js';
import type { PolicyHolder } from '../policy/holder.js';
import { isPromise, NO_REPLY, type Handler, type Outcome, type Stage } from '../pipeline/types.js';
import { RateLimiter } from '../ratelimit/limiter.js';

/** A client over its limit is logged at most this often. */
const WARN_EVERY_MS = 60_000;

export class RateLimitStage implements Stage {
  readonly name = 'ratelimit';
  private limiter: RateLimiter | undefined;
  /** The settings object the limiter was last checked against. */
  private seen: RateLimitConfig | undefined;

  constructor(
    private readonly policy: PolicyHolder,
    private readonly stats: Stats,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Buckets held now (the sinkhole_ratelimit_buckets gauge). */
  get buckets(): number {
    return this.limiter?.size ?? 0;
  }

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    const g = this.policy.current;
    const settings = g.config.clients.rateLimit;
    if (!settings) {
      this.limiter &&= undefined; // turned off by a reload: let the buckets go
      return next(q);
    }
    const now = this.clock.now();
    const over = this.limiterFor(settings).take(q.client, now);
    if (!over) return next(q);
    // Exemptions are looked up only for a client that is over: the common case pays nothing for them.
    if (settings.exempt.length && g.clients.view(q.client).groups.some((grp) => settings.exempt.includes(grp))) return next(q);
    if (now - over.warnedAt >= WARN_EVERY_MS) {
      over.warnedAt = now;
      this.log.warn('SH_RATELIMIT', settings.dryRun ? 'client over the rate limit (dry run: answered anyway)' : 'client over the rate limit', {
        client: q.client, qps: settings.qps, burst: settings.burst, action: settings.dryRun ? 'dryrun' : q.proto === 'udp' ? settings.action : 'refuse',
        ...(settings.dryRun || q.proto !== 'udp' ? {} : { slip: settings.slip }),
      });
    }
    if (settings.dryRun) {
      this.stats.rateLimited.dryrun++;
      const r = next(q);
      return isPromise(r) ? r.then(dryRun) : dryRun(r);
    }
    if (q.proto === 'udp') {
      // TCP, DoT and DoH are always answered: the client proved its address, and an unanswered
      // query would only hold its connection open.
      if (settings.slip === 0 || ++over.slipped < settings.slip) {
        this.stats.rateLimited.drop++;
        return { wire: NO_REPLY, result: 'ratelimited', limited: 'drop' };
      }
      over.slipped = 0;
    }
    if (settings.action === 'truncate' && q.proto === 'udp') {
      this.stats.rateLimited.truncate++;
      const wire = buildReply(q, RCODE.NOERROR);
      wire[2] = wire[2]! | FLAG_TC;
      return { wire, result: 'ratelimited', limited: 'truncate' };
    }
    this.stats.rateLimited.refuse++;
    return { wire: errorReply(q, RCODE.REFUSED), result: 'ratelimited', limited: 'refuse' };
  }

  /** Buckets survive a reload that leaves clients.rateLimit as it was; a changed limit starts afresh. */
  private limiterFor(settings: RateLimitConfig): RateLimiter {
    if (settings !== this.seen) {
      // Once per reload, not per query: a reload makes a new (frozen) config object.
      if (!this.limiter || !isDeepStrictEqual(this.limiter.settings, settings)) this.limiter = new RateLimiter(settings);
      this.seen = settings;
    }
    return this.limiter!;
  }
}

function dryRun(o: Outcome): Outcome {
  return { ...o, limited: 'dryrun' };
}
