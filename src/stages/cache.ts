// The cache stage (pipeline/chain.ts). Sits below the blocklist and the rpz stage, so the cache holds upstream answers only
// and stays client-independent: policy is applied to every hit on its way
// out, per client (docs/design.md §2). That includes the stale answers served
// here, so serve-stale never bypasses policy.
//
// What this stage does for availability (issue 9), in the order a query meets it:
// - a fresh hit is answered; in the last 10 % of its TTL it also starts one
//   background refresh (prefetch, as Unbound's `prefetch: yes`);
// - a miss for a name whose upstreams all failed recently is answered at once:
//   stale when there is an expired entry (RFC 8767 §5 failure recheck timer,
//   30 s), else the remembered SERVFAIL (RFC 2308 §7.1, cache.servfailTtl);
// - any other miss goes upstream (identical queries in flight share one
//   exchange). With an expired entry at hand, the client waits at most
//   serveStale.clientTimeout, or until the upstreams fail, and then gets the
//   stale answer; the exchange goes on and refreshes the cache if it succeeds
//   (RFC 8767 §5 "client response timer", the "verify" behaviour).
import { LRUCache } from 'lru-cache';
import { cacheKey, copyForClient, hashQuestion, sameQuestion, type CacheHit, type ReplyCache } from '../cache/replyCache.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config/config.js';
import { RCODE } from '../dns/constants.js';
import { EDE_STALE_ANSWER, withEde } from '../dns/ede.js';
import type { Query } from '../dns/query.js';
import { errorReply, type Ede } from '../dns/reply.js';
import type { Stats } from '../metrics/stats.js';
import { StableTable } from '../stableTable.js';
import { Later } from '../later.js';
import type { Handler, Outcome, Stage } from '../pipeline/types.js';

/** RFC 8767 §5 failure recheck timer: a name whose upstreams failed is asked again at most this often. */
export const FAILURE_RECHECK_MS = 30_000;
/** Names whose failure is remembered; past this the least recent are forgotten (and simply asked again). */
const MAX_FAILURES = 20_000;
/** Prefetch may use at most this share of upstreams.maxInflight, so client misses always keep the rest. */
const PREFETCH_SHARE = 10;

const STALE_EDE: Ede = { infoCode: EDE_STALE_ANSWER, text: '' };

export class CacheStage implements Stage {
  readonly name = 'cache';
  /**
   * Identical queries in flight share one upstream exchange (coalescing). Not a Map: see stableTable.ts.
   * Keyed by the query that started the exchange, compared by question (sameQuestion): a miss makes no
   * key string, and its question is hashed once, for the cache's lookup and insert and this table.
   */
  private readonly inflight = new StableTable<Query, Promise<Outcome>>(hashQuestion, 1024, sameQuestion);
  /** Cache key → when its upstreams last all failed (clock ms). Rarely non-empty: only then is a key string made. */
  private readonly failures = new LRUCache<string, number>({ max: MAX_FAILURES });
  private prefetching = 0;

  constructor(
    private readonly cache: () => ReplyCache,
    private readonly stats: Stats,
    private readonly config: () => Config,
    private readonly clock: Clock,
  ) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    const cache = this.cache();
    // No key string: the reply cache and the table of misses in flight take the query and this hash.
    const h = hashQuestion(q);
    const hit = cache.get(q, h);
    if (hit) {
      this.stats.cacheHits++;
      if (hit.refreshDue) this.prefetch(q, h, next, cache);
      return { wire: hit.wire, result: 'cached', targets: hit.targets };
    }
    this.stats.cacheMisses++;
    const settings = this.config().cache;
    const stale = settings.serveStale.enabled ? cache.getStale(q, settings.serveStale.answerTtl, h) : undefined;
    if (this.failures.size) {
      const failedAt = this.failures.get(cacheKey(q));
      if (failedAt !== undefined) {
        const age = this.clock.now() - failedAt;
        if (stale && age < FAILURE_RECHECK_MS) return this.serveStale(q, stale);
        if (!stale && age < settings.servfailTtlMs) {
          this.stats.servfailsRemembered++;
          return { wire: errorReply(q, RCODE.SERVFAIL), result: 'servfail' };
        }
      }
    }
    const pending = this.inflight.get(q, h);
    const upstream = pending ? pending.then((o) => forClient(q, o)) : this.fetch(q, h, next, cache);
    return stale ? this.raceStale(q, upstream, stale, settings.serveStale.clientTimeoutMs) : upstream;
  }

  /**
   * One upstream exchange for `q`'s question (`h`: its hash), shared by every query for it until it settles; it updates the
   * cache and the failure memory. A Later (later.ts): the stages above react to it in the call that
   * settles it, not one microtask each.
   */
  private fetch(q: Query, h: number, next: Handler, cache: ReplyCache): Later<Outcome> {
    // A Later that has settled already runs these reactions inside then(), before p exists: the
    // exchange is then over before it could be registered, and must not be (it would answer every
    // later query for the name with this outcome, for good). The forward stage settles at once when
    // no socket can be had, or when a send fails synchronously (EPERM, a closed socket).
    let over = false;
    const p = Later.of(next(q)).then(
      (o) => {
        over = true;
        this.inflight.delete(q, h);
        if (o.scan) {
          cache.set(q, o.wire, o.scan, h);
          if (this.failures.size) this.failures.delete(cacheKey(q));
        } else if (o.result === 'servfail' && !o.local) {
          // Only the upstreams' failure is remembered: one the query caused itself is its own.
          this.failures.set(cacheKey(q), this.clock.now());
        }
        return o;
      },
      (e: unknown) => {
        over = true;
        this.inflight.delete(q, h);
        throw e;
      },
    );
    if (!over) this.inflight.set(q, p, h);
    return p;
  }

  /**
   * The upstream answer if it comes within `timeoutMs` and is not a failure;
   * otherwise the stale answer, at once. The exchange is not cancelled: when
   * it succeeds later it still refreshes the cache (fetch above).
   */
  private raceStale(q: Query, upstream: Promise<Outcome>, stale: CacheHit, timeoutMs: number): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const settle = (o: Outcome | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(o ?? this.serveStale(q, stale));
      };
      const timer = setTimeout(() => settle(undefined), timeoutMs);
      upstream.then(
        (o) => settle(o.result === 'servfail' ? undefined : o),
        () => settle(undefined),
      );
    });
  }

  private serveStale(q: Query, stale: CacheHit): Outcome {
    this.stats.staleAnswers++;
    return { wire: withEde(q, stale.wire, STALE_EDE), result: 'stale', targets: stale.targets };
  }

  /**
   * One background refresh of a popular entry before it expires. Skipped when
   * the name is already being fetched, when its upstreams failed within the
   * recheck interval, or when a tenth of upstreams.maxInflight is already
   * prefetching: background work never crowds out clients' own misses.
   */
  private prefetch(q: Query, h: number, next: Handler, cache: ReplyCache): void {
    const config = this.config();
    if (!config.cache.prefetch || this.inflight.has(q, h)) return;
    if (this.failures.size) {
      const failedAt = this.failures.get(cacheKey(q));
      if (failedAt !== undefined && this.clock.now() - failedAt < FAILURE_RECHECK_MS) return;
    }
    if (this.prefetching >= Math.max(1, Math.floor(config.upstreams.maxInflight / PREFETCH_SHARE))) {
      this.stats.prefetches.skipped++;
      return;
    }
    this.prefetching++;
    this.stats.prefetches.started++;
    this.fetch(q, h, next, cache).then(
      () => this.prefetching--,
      () => this.prefetching--,
    );
  }
}

/** A shared outcome, for one of the clients that waited on it. */
function forClient(q: Query, o: Outcome): Outcome {
  return { ...o, wire: copyForClient(q, o.wire), scan: undefined };
}
