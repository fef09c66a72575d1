// The stage chain: every query, whatever its transport, goes down this one list, in this order,
// and the first stage that answers ends it (as CoreDNS's plugin.cfg and Blocky's
// createQueryResolver order theirs). Each line says why its stage sits where it does; a stage
// is named, never numbered, in the code, its comments and the docs (docs/design.md).
// To follow one UDP query: transport/udp.ts (the socket), this file, then the stages it names.
import type { CacheLimits, ReplyCache } from '../cache/replyCache.js';
import type { Clock } from '../clock.js';
import type { IdentityHolder } from '../identity/sources.js';
import type { Logger } from '../log.js';
import type { Stats } from '../metrics/stats.js';
import type { Generation } from '../policy/generation.js';
import type { PolicyHolder } from '../policy/holder.js';
import { anyAnswerer } from '../stages/anyAnswer.js';
import { BlocklistStage } from '../stages/blocklist.js';
import { CacheStage } from '../stages/cache.js';
import { chaosAnswerer } from '../stages/chaos.js';
import type { DdrAnswerer } from '../stages/ddr.js';
import { forwardHandler } from '../stages/forward.js';
import { LocalAnswersStage } from '../stages/localAnswers.js';
import { MetricsStage, type Observer } from '../stages/metrics.js';
import type { RateLimitStage } from '../stages/rateLimit.js';
import { RecoverStage } from '../stages/recover.js';
import { RelayStage } from '../stages/relay.js';
import { RpzStage } from '../stages/rpz.js';
import { ValidateStage } from '../stages/validate.js';
import type { Forwarder } from '../upstream/forwarder.js';
import { compose, type Handler, type Stage } from './types.js';

/** What one query thread hands the chain: its counters, logs, policy and the parts that can be swapped on reload. */
export interface ChainParts {
  policy: PolicyHolder;
  identity: IdentityHolder;
  stats: Stats;
  log: Logger;
  clock: Clock;
  observers: Observer[];
  rateLimit: RateLimitStage;
  ddr: DdrAnswerer;
  /** A NOTIFY from an RPZ primary that the validate stage accepted. */
  onNotify: (zone: string, from: string) => void;
  cache: () => ReplyCache;
  forwarder: () => Forwarder;
  cacheLimits: (config: Generation['config']) => CacheLimits;
}

export function buildChain(p: ChainParts): Handler {
  const config = (): Generation['config'] => p.policy.current.config;
  const blocklist = new BlocklistStage(p.policy, p.clock, p.identity);
  const stages: Stage[] = [
    // recover: anything below may throw; a throw is SERVFAIL and a counter, never a dead socket loop.
    new RecoverStage(p.stats, p.log),
    // metrics: sees every outcome, blocked, cached and refused included, for the metrics and the logs.
    new MetricsStage(p.stats, p.observers),
    // validate: FORMERR/NOTIMP/REFUSED (and an RPZ primary's NOTIFY) before any policy or upstream work is spent.
    new ValidateStage(p.policy, p.onNotify),
    // rateLimit: a token bucket per client (clients.rateLimit). Cheap, so a flooding client is turned
    //   away before it costs policy, cache, upstream or local-answer work; after validate, so a client
    //   outside allowFrom never gets a bucket. It decides whether a query is answered, never how.
    p.rateLimit,
    // localAnswers: answered by sinkhole itself, never forwarded or cached; after the limiter, so a flood of them is limited too.
    new LocalAnswersStage([
      // DDR's _dns.resolver.arpa (RFC 9462).
      p.ddr,
      // CHAOS version.bind & co. are about this server, in any qtype, ANY included (issue 8).
      chaosAnswerer(p.policy),
      // RFC 8482 ANY: HINFO, after the blocklist's own check of the name, so a blocked name still gets the sinkhole.
      anyAnswerer((q) => blocklist.blockedOutcome(q)),
    ]),
    // relay: ECS/MAC EDNS options believed from clients.trustedRelays and stripped from every query
    //   before the cache or an upstream sees it; before policy, which needs the real client.
    new RelayStage(p.policy, p.stats),
    // blocklist: client policy (with the device identity) and the lists; above the cache, so policy
    //   applies to cached answers and the cache stays the same for every client.
    blocklist,
    // rpz: Response Policy Zones (docs/rpz.md); below the lists, which judge whatever RPZ lets through,
    //   above the cache, so client-IP rules see the client and response-IP rules see cached answers too.
    new RpzStage(p.policy, p.stats, p.clock, p.identity),
    // cache: upstream answers only, identical queries in flight coalesced; serve-stale and prefetch
    //   live here, below the policy, so a stale answer is judged like any other.
    new CacheStage(p.cache, p.stats, config, p.clock),
  ];
  // forward, the end of the chain: the upstream exchange, with TTLs capped on the way out (cache.maxTtl).
  // The limits are worked out once per config, not per forwarded query.
  let limitsOf: Generation['config'] | undefined;
  let limits: CacheLimits | undefined;
  const currentLimits = (): CacheLimits => {
    const c = config();
    if (c !== limitsOf || !limits) [limitsOf, limits] = [c, p.cacheLimits(c)];
    return limits;
  };
  return compose(stages, forwardHandler(p.forwarder, currentLimits));
}
