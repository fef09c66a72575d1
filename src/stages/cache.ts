// Stage 6. Sits below the blocklist, so the cache holds upstream answers only
// and stays client-independent: policy is applied to every hit on its way
// out, per client (DESIGN.md §2).
import { cacheKey, copyForClient, type ReplyCache } from '../cache/replyCache.js';
import type { Query } from '../dns/query.js';
import type { Stats } from '../metrics/stats.js';
import type { Handler, Outcome, Stage } from '../pipeline/types.js';

export class CacheStage implements Stage {
  readonly name = 'cache';
  /** Identical queries in flight share one upstream exchange (coalescing). */
  private readonly inflight = new Map<string, Promise<Outcome>>();

  constructor(
    private readonly cache: () => ReplyCache,
    private readonly stats: Stats,
  ) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    const key = cacheKey(q);
    const cache = this.cache();
    const hit = cache.get(key, q);
    if (hit) {
      this.stats.cacheHits++;
      return { wire: hit.wire, result: 'cached', targets: hit.targets, ttlOffsets: hit.ttlOffsets };
    }
    this.stats.cacheMisses++;
    const pending = this.inflight.get(key);
    if (pending) return pending.then((o) => forClient(q, o));
    const p = Promise.resolve(next(q))
      .then((o) => {
        if (o.scan) cache.set(key, o.wire, o.scan);
        return o;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }
}

/** A shared outcome, for one of the clients that waited on it. */
function forClient(q: Query, o: Outcome): Outcome {
  return { ...o, wire: copyForClient(q, o.wire), scan: undefined, ttlOffsets: o.scan?.ttlOffsets ?? o.ttlOffsets };
}
