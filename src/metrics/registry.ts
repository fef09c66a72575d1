// Every metric sinkhole exports, defined in this one file (DESIGN.md §3
// "Metrics"). Values are read from the plain counters in stats.ts when
// Prometheus scrapes, so the query path never calls prom-client. Labels are
// bounded: fixed sets, or names from the config (lists, exception ids,
// upstreams) — never a client address or a query name.
import { collectDefaultMetrics, Registry } from 'prom-client';
import { RCODE, RCODE_NAME } from '../dns/constants.js';
import { isActive } from '../policy/exceptions.js';
import type { Generation } from '../policy/generation.js';
import type { LogHealth } from '../querylog/lineWriter.js';
import { RESULTS, type Result } from '../pipeline/types.js';
import { LATENCY_BUCKETS, PROTOS, QTYPE_SLOTS, RCODE_SLOTS, type Histogram, type Stats } from './stats.js';

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}
type Kind = 'counter' | 'gauge' | 'histogram';

/** A metric whose samples are computed at scrape time; prom-client's Registry formats it. */
class SnapshotMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: Kind,
    private readonly samples: () => Sample[],
  ) {}

  get(): { name: string; help: string; type: Kind; values: Sample[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.samples(), aggregator: this.aggregator };
  }

  reset(): void {}
}

function histogramSamples(name: string, labels: Labels, h: Histogram): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  LATENCY_BUCKETS.forEach((le, i) => {
    cumulative += h.counts[i]!;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: String(le) }, value: cumulative });
  });
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
  return out;
}

/**
 * The rcodes each result can carry: fixed for the replies sinkhole writes
 * itself, the sinkhole mode's for blocked, and the two common upstream ones
 * for relayed answers (a rarer upstream rcode appears once it happened).
 */
function expectedResponses(g: Generation): Record<Result, number[]> {
  const mode = g.config.blocking.response.kind;
  const blocked = mode === 'nxdomain' ? RCODE.NXDOMAIN : mode === 'refused' ? RCODE.REFUSED : RCODE.NOERROR;
  const relayed = [RCODE.NOERROR, RCODE.NXDOMAIN];
  return {
    blocked: [blocked], excepted: relayed, cached: relayed, forwarded: relayed, local: [RCODE.NOERROR],
    refused: [RCODE.REFUSED], formerr: [RCODE.FORMERR], notimp: [RCODE.NOTIMP], badvers: [RCODE.BADVERS], servfail: [RCODE.SERVFAIL],
  };
}

export interface MetricSources {
  stats: Stats;
  generation: () => Generation;
  cacheEntries: () => number;
  tcpConnections: () => number;
  tcpEvictions: () => number;
  tcpRefused: () => number;
  logs: () => LogHealth[];
  now: () => number;
  version: string;
}

/** The names and types of every sinkhole metric: the README's Metrics table is checked against this. */
export function createRegistry(src: MetricSources): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register });
  // prom-client names three gauges *_total, which promtool rejects ("non-counter metrics should not
  // have _total suffix"); the same numbers are exported as nodejs_active_{handles,requests,resources}.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    register.removeSingleMetric(name);
  }
  const { stats } = src;
  const add = (name: string, help: string, type: Kind, samples: () => Sample[]): void =>
    register.registerMetric(new SnapshotMetric(name, help, type, samples) as unknown as Parameters<Registry['registerMetric']>[0]);

  add('sinkhole_queries_total', 'DNS queries received, by transport and query type.', 'counter', () =>
    PROTOS.flatMap((proto) => QTYPE_SLOTS.map((qtype, slot) => ({ labels: { proto, qtype }, value: stats.queryCount(proto, slot) }))),
  );
  add('sinkhole_responses_total', 'Replies sent, by how the answer was reached and its rcode.', 'counter', () => {
    // The pairs that can happen are exported from the start (at 0, so rate() works from the first
    // query); any other pair only once it occurred. Never an impossible one such as servfail/NOERROR.
    const expected = expectedResponses(src.generation());
    return RESULTS.flatMap((result) =>
      Array.from({ length: RCODE_SLOTS }, (_, rcode) => ({ result, rcode, value: stats.responseCount(result, rcode) }))
        .filter((x) => x.value > 0 || expected[result].includes(x.rcode))
        .map((x) => ({ labels: { result, rcode: RCODE_NAME[x.rcode] ?? `RCODE${x.rcode}` }, value: x.value })),
    );
  });
  add('sinkhole_blocked_total', 'Queries answered with the sinkhole, by the list that matched.', 'counter', () => {
    const lists = new Set([...src.generation().config.blocking.enforce, ...stats.blockedByList.keys()]);
    return [...lists].map((list) => ({ labels: { list }, value: stats.blockedByList.get(list) ?? 0 }));
  });
  add('sinkhole_exception_queries_total', 'Queries that an approved exception let through, by exception id.', 'counter', () => {
    const ids = new Set([...src.generation().exceptions.map((e) => e.id), ...stats.exceptionQueries.keys()]);
    return [...ids].map((exception) => ({ labels: { exception }, value: stats.exceptionQueries.get(exception) ?? 0 }));
  });
  add('sinkhole_request_duration_seconds', 'Time from receiving a query to having its reply, by result.', 'histogram', () =>
    RESULTS.flatMap((result) => {
      const h = stats.latency.get(result);
      return h ? histogramSamples('sinkhole_request_duration_seconds', { result }, h) : [];
    }),
  );
  add('sinkhole_cache_hits_total', 'Queries answered from the cache.', 'counter', () => [{ labels: {}, value: stats.cacheHits }]);
  add('sinkhole_cache_misses_total', 'Cache lookups that found nothing and went upstream.', 'counter', () => [{ labels: {}, value: stats.cacheMisses }]);
  add('sinkhole_cache_entries', 'Answers held in the cache now.', 'gauge', () => [{ labels: {}, value: src.cacheEntries() }]);
  add('sinkhole_upstream_requests_total', 'Exchanges with each upstream, by outcome.', 'counter', () =>
    [...stats.upstreams].flatMap(([upstream, u]) =>
      Object.entries(u.outcomes).map(([outcome, value]) => ({ labels: { upstream, outcome }, value })),
    ),
  );
  add('sinkhole_upstream_overload_total', 'Misses answered SERVFAIL at once because upstreams.maxInflight exchanges were in flight.', 'counter', () => [
    { labels: {}, value: stats.upstreamOverloads },
  ]);
  add('sinkhole_upstream_duration_seconds', 'Round-trip time of successful upstream exchanges.', 'histogram', () =>
    [...stats.upstreams].flatMap(([upstream, u]) => histogramSamples('sinkhole_upstream_duration_seconds', { upstream }, u.latency)),
  );
  add('sinkhole_list_rules', 'Rules loaded per blocklist in the current policy.', 'gauge', () =>
    [...src.generation().ruleCounts].map(([list, value]) => ({ labels: { list }, value })),
  );
  add('sinkhole_reloads_total', 'Policy reloads, by what triggered them and whether they applied.', 'counter', () => {
    const out: Sample[] = [];
    for (const kind of ['config', 'list', 'exceptions']) {
      for (const result of ['success', 'failure']) out.push({ labels: { kind, result }, value: stats.reloads.get(`${kind}|${result}`) ?? 0 });
    }
    return out;
  });
  add('sinkhole_policy_generation', 'Number of the policy generation in force; increases on each successful reload.', 'gauge', () => [
    { labels: {}, value: src.generation().number },
  ]);
  add('sinkhole_exceptions', 'Exceptions on record, by state (active or expired).', 'gauge', () => {
    const now = src.now();
    const all = src.generation().exceptions;
    const active = all.filter((e) => isActive(e, now)).length;
    return [
      { labels: { state: 'active' }, value: active },
      { labels: { state: 'expired' }, value: all.length - active },
    ];
  });
  add('sinkhole_exception_expiry_timestamp_seconds', 'When each exception lapses, as a Unix time.', 'gauge', () =>
    src.generation().exceptions.map((e) => ({ labels: { exception: e.id }, value: e.expiresAt / 1000 })),
  );
  add('sinkhole_build_info', 'Always 1; the version label says which sinkhole is running.', 'gauge', () => [{ labels: { version: src.version }, value: 1 }]);
  add('sinkhole_internal_errors_total', 'Queries that failed inside sinkhole and were answered SERVFAIL (should stay 0).', 'counter', () => [
    { labels: {}, value: stats.internalErrors },
  ]);
  add('sinkhole_tcp_connections', 'Open client TCP connections.', 'gauge', () => [{ labels: {}, value: src.tcpConnections() }]);
  add('sinkhole_log_dropped_lines_total', 'Log lines lost: the target failed (full disk, deleted folder) or fell too far behind.', 'counter', () =>
    src.logs().map((h) => ({ labels: { log: h.name }, value: h.dropped })),
  );
  add('sinkhole_log_failing', '1 while a log target cannot be written (retried with backoff), else 0.', 'gauge', () =>
    src.logs().map((h) => ({ labels: { log: h.name }, value: h.failure ? 1 : 0 })),
  );
  add('sinkhole_tcp_evictions_total', 'Idle client TCP connections closed to make room for another client.', 'counter', () => [
    { labels: {}, value: src.tcpEvictions() },
  ]);
  add('sinkhole_tcp_refused_total', 'Client TCP connections refused: the connection caps were reached and no idle connection could give way.', 'counter', () => [
    { labels: {}, value: src.tcpRefused() },
  ]);
  return register;
}
