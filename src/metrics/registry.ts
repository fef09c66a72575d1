// Every metric sinkhole exports, defined in this one file (docs/design.md §4
// "Metrics"). Values are read from the plain counters in stats.ts when
// Prometheus scrapes, so the query path never calls prom-client. Labels are
// bounded: fixed sets, or names from the config (lists, exception ids,
// upstreams) — never a client address or a query name.
//
// Over 400 lines on purpose (docs/design.md §5): every metric in one file, so that names, labels, help
// and docs/observability.md's table are checked in one place.
import { collectDefaultMetrics, Registry } from 'prom-client';
import { RCODE, RCODE_NAME } from '../dns/constants.js';
import { stateOf, type ExceptionState } from '../policy/exceptions.js';
import type { Generation } from '../policy/generation.js';
import { policyHash } from '../policy/fingerprint.js';
import { RPZ_ACTIONS } from '../policy/rpz/actions.js';
import { TRIGGER_KINDS } from '../policy/rpz/zone.js';
import type { FeedStats } from '../policy/rpz/feed.js';
import type { LogHealth } from '../querylog/lineWriter.js';
import type { EventCounts } from '../events/announcer.js';
import type { ExportMetrics } from '../rpz/export/service.js';
import { RESULTS, type Result } from '../pipeline/types.js';
import { Slices } from '../slices.js';
import { LATENCY_BUCKETS, PROTOS, QTYPE_SLOTS, RCODE_SLOTS, type Histogram, type Stats, type UpstreamStats } from './stats.js';

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}
type Kind = 'counter' | 'gauge' | 'histogram';

export interface ThreadSample {
  index: number;
  queries: number;
  loopDelay: readonly number[];
}

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
  const { blocking, cache, clients } = g.config;
  const mode = blocking.response.kind;
  const blocked = mode === 'nxdomain' ? RCODE.NXDOMAIN : mode === 'refused' ? RCODE.REFUSED : RCODE.NOERROR;
  const relayed = [RCODE.NOERROR, RCODE.NXDOMAIN];
  const limit = clients.rateLimit;
  return {
    blocked: [blocked], excepted: relayed, cached: relayed, forwarded: relayed, local: [RCODE.NOERROR],
    refused: [RCODE.REFUSED], formerr: [RCODE.FORMERR], notimp: [RCODE.NOTIMP], badvers: [RCODE.BADVERS], servfail: [RCODE.SERVFAIL],
    stale: cache.serveStale.enabled ? relayed : [],
    // clients.rateLimit: truncate answers UDP with an empty NOERROR + TC, and TCP (and refuse) with REFUSED; a dry run answers normally.
    ratelimited: !limit || limit.dryRun ? [] : limit.action === 'truncate' ? [RCODE.NOERROR, RCODE.REFUSED] : [RCODE.REFUSED],
  };
}

/** Per client-facing listener kind: DNS over TCP, TLS, HTTPS, and the HTTP (metrics and probes) listener. */
export interface ConnectionCounts {
  tcp: number;
  dot: number;
  doh: number;
  http: number;
}

export interface MetricSources {
  /** Every query thread's counts, summed (app.ts); the main thread's alone with workers: 1. */
  stats: () => Stats;
  generation: () => Generation;
  cacheEntries: () => number;
  /** Bytes of the cache's off-heap slab (cache/slab.ts), every query thread's. */
  cacheBytes: () => number;
  tcpConnections: () => number;
  /** Issue 8: TCP slots given to newcomers, connections refused, and the logs' lost lines and failures. */
  connectionEvictions: () => ConnectionCounts;
  connectionRefusals: () => ConnectionCounts;
  /** DoH sessions closed for too many HTTP/2 stream resets (CVE-2023-44487). */
  dohCalmed?: () => number;
  logs: () => { name: LogHealth['name']; dropped: number; failing: boolean }[];
  /** dnstap (log.dnstap), summed over the query threads: messages handed to the collector, dropped, streams connected now. */
  dnstap?: () => { sent: number; dropped: number; connected: number };
  /** RPZ zones pulled from a primary (policy/rpz/feed.ts). */
  rpzFeeds?: () => readonly FeedStats[];
  sourcePorts: () => number;
  /** Each query thread: its index, queries received, and event-loop delay p50/p99/max (seconds). */
  threads: () => readonly ThreadSample[];
  workerRestarts: () => number;
  /** Token buckets held by clients.rateLimit (0 when it is off). */
  rateLimitBuckets?: () => number;
  /** Open client connections of the DoT and DoH listeners. */
  encryptedConnections?: () => { dot: number; doh: number };
  now: () => number;
  version: string;
  /** Identity and the report store (issue 11). */
  identityDevices?: () => number;
  reportStore?: () => { up: boolean; spooled: number; dropped: number } | undefined;
  /** Whether the files on disk compiled at the last attempt (start-up or reload). */
  policyFilesOk?: () => boolean;
  /** Compliance events (events:), when configured (issue 20). */
  events?: () => EventCounts | undefined;
  /** The RPZ export (listen.rpz), when configured (issue 21 §2). */
  rpzExport?: () => ExportMetrics | undefined;
}

/** The names and types of every sinkhole metric: the Metrics table of docs/observability.md is checked against this. */
export function createRegistry(src: MetricSources): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register });
  // prom-client names three gauges *_total, which promtool rejects ("non-counter metrics should not
  // have _total suffix"); the same numbers are exported as nodejs_active_{handles,requests,resources}.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    register.removeSingleMetric(name);
  }
  const add = (name: string, help: string, type: Kind, samples: () => Sample[]): void =>
    register.registerMetric(new SnapshotMetric(name, help, type, samples) as unknown as Parameters<Registry['registerMetric']>[0]);

  add('sinkhole_queries_total', 'DNS queries received, by transport and query type.', 'counter', () =>
    PROTOS.flatMap((proto) => QTYPE_SLOTS.map((qtype, slot) => ({ labels: { proto, qtype }, value: src.stats().queryCount(proto, slot) }))),
  );
  add('sinkhole_responses_total', 'Replies sent, by how the answer was reached and its rcode.', 'counter', () => {
    // The pairs that can happen are exported from the start (at 0, so rate() works from the first
    // query); any other pair only once it occurred. Never an impossible one such as servfail/NOERROR.
    const expected = expectedResponses(src.generation());
    const stats = src.stats();
    return RESULTS.flatMap((result) =>
      Array.from({ length: RCODE_SLOTS }, (_, rcode) => ({ result, rcode, value: stats.responseCount(result, rcode) }))
        .filter((x) => x.value > 0 || expected[result].includes(x.rcode))
        .map((x) => ({ labels: { result, rcode: RCODE_NAME[x.rcode] ?? `RCODE${x.rcode}` }, value: x.value })),
    );
  });
  add('sinkhole_blocked_total', 'Queries answered with the sinkhole, by the list that matched.', 'counter', () => {
    const lists = new Set([...src.generation().config.blocking.enforce, ...src.stats().blockedByList.keys()]);
    return [...lists].map((list) => ({ labels: { list }, value: src.stats().blockedByList.get(list) ?? 0 }));
  });
  add('sinkhole_exception_queries_total', 'Queries that an approved exception let through, by exception id.', 'counter', () => {
    const ids = new Set([...src.generation().exceptions.map((e) => e.id), ...src.stats().exceptionQueries.keys()]);
    return [...ids].map((exception) => ({ labels: { exception }, value: src.stats().exceptionQueries.get(exception) ?? 0 }));
  });
  add('sinkhole_request_duration_seconds', 'Time from receiving a query to having its reply, by result.', 'histogram', () =>
    RESULTS.flatMap((result) => {
      const h = src.stats().latency.get(result);
      return h ? histogramSamples('sinkhole_request_duration_seconds', { result }, h) : [];
    }),
  );
  add('sinkhole_cache_hits_total', 'Queries answered from the cache.', 'counter', () => [{ labels: {}, value: src.stats().cacheHits }]);
  add('sinkhole_cache_misses_total', 'Cache lookups that found nothing and went upstream.', 'counter', () => [{ labels: {}, value: src.stats().cacheMisses }]);
  add('sinkhole_cache_entries', 'Answers held in the cache now.', 'gauge', () => [{ labels: {}, value: src.cacheEntries() }]);
  add('sinkhole_cache_bytes', 'Bytes the cache holds off the V8 heap for its answers (slots in size classes; kept for reuse).', 'gauge', () => [
    { labels: {}, value: src.cacheBytes() },
  ]);
  add('sinkhole_upstream_requests_total', 'Exchanges with each upstream, by outcome.', 'counter', () =>
    [...src.stats().upstreams].flatMap(([upstream, u]) =>
      Object.entries(u.outcomes).map(([outcome, value]) => ({ labels: { upstream, outcome }, value })),
    ),
  );
  add('sinkhole_upstream_overload_total', 'Misses answered SERVFAIL at once because upstreams.maxInflight exchanges were in flight.', 'counter', () => [
    { labels: {}, value: src.stats().upstreamOverloads },
  ]);
  add('sinkhole_upstream_local_errors_total', 'Misses answered SERVFAIL because the query could not leave this host (EMSGSIZE, ENOBUFS); not counted against any upstream.', 'counter', () => [
    { labels: {}, value: src.stats().localSendErrors },
  ]);
  add('sinkhole_upstream_duration_seconds', 'Round-trip time of successful upstream exchanges.', 'histogram', () =>
    [...src.stats().upstreams].flatMap(([upstream, u]) => histogramSamples('sinkhole_upstream_duration_seconds', { upstream }, u.latency)),
  );
  add('sinkhole_list_rules', 'Rules loaded per blocklist in the current policy.', 'gauge', () =>
    [...src.generation().ruleCounts].map(([list, value]) => ({ labels: { list }, value })),
  );
  // Response Policy Zones (issue 21): what each zone holds and does.
  add('sinkhole_rpz_serial', 'SOA serial of each RPZ zone in force.', 'gauge', () =>
    src.generation().rpzZones.map((z) => ({ labels: { zone: z.name }, value: z.serial })),
  );
  add('sinkhole_rpz_records', 'Triggers per RPZ zone, by kind; nsdname, nsip and unsupported are counted but never applied by a forwarder.', 'gauge', () =>
    src.generation().rpzZones.flatMap((z) => [
      ...TRIGGER_KINDS.map((trigger) => ({ labels: { zone: z.name, trigger }, value: z.counts[trigger] })),
      { labels: { zone: z.name, trigger: 'unsupported' }, value: z.unsupported },
    ]),
  );
  add('sinkhole_rpz_rewrites_total', 'RPZ matches by zone and what was done (passthru: let through; disabled: logged only).', 'counter', () => {
    const zones = src.generation().rpzZones.map((z) => z.name);
    const seen = src.stats().rpzRewrites;
    const keys = new Set([...zones.flatMap((zone) => [...RPZ_ACTIONS, 'disabled'].map((a) => `${zone}|${a}`)), ...seen.keys()]);
    return [...keys].map((k) => {
      const [zone = '', action = ''] = k.split('|');
      return { labels: { zone, action }, value: seen.get(k) ?? 0 };
    });
  });
  add('sinkhole_rpz_transfers_total', 'Checks of RPZ zones pulled from a primary, by result: axfr (whole zone), ixfr (differences), current (no change), failed.', 'counter', () =>
    (src.rpzFeeds?.() ?? []).flatMap((f) => [
      { labels: { zone: f.zone, result: 'axfr' }, value: f.transfers.full },
      { labels: { zone: f.zone, result: 'ixfr' }, value: f.transfers.incremental },
      { labels: { zone: f.zone, result: 'current' }, value: f.transfers.current },
      { labels: { zone: f.zone, result: 'failed' }, value: f.transfers.failed },
    ]),
  );
  add('sinkhole_rpz_last_check_timestamp_seconds', 'When each RPZ zone pulled from a primary last reached it (Unix seconds; 0 before the first time).', 'gauge', () =>
    (src.rpzFeeds?.() ?? []).map((f) => ({ labels: { zone: f.zone }, value: (f.lastSuccess ?? 0) / 1000 })),
  );
  add('sinkhole_rpz_expired', 'RPZ zones past their SOA expire without reaching the primary (1); they stay in force.', 'gauge', () =>
    (src.rpzFeeds?.() ?? []).map((f) => ({ labels: { zone: f.zone }, value: f.expired ? 1 : 0 })),
  );
  // The RPZ export (listen.rpz): what secondaries are served, and how their requests went.
  const exported = (): ExportMetrics[] => {
    const m = src.rpzExport?.();
    return m ? [m] : [];
  };
  add('sinkhole_rpz_export_serial', 'SOA serial of the zone served on listen.rpz.', 'gauge', () =>
    exported().map((m) => ({ labels: { zone: m.zone }, value: m.serial })),
  );
  add('sinkhole_rpz_export_records', 'Records in the zone served on listen.rpz (SOA, NS and one CNAME per trigger).', 'gauge', () =>
    exported().map((m) => ({ labels: { zone: m.zone }, value: m.records })),
  );
  add('sinkhole_rpz_export_requests_total', 'Requests to listen.rpz by type (axfr, ixfr, soa, other) and result (ok, refused, notauth, busy, failed).', 'counter', () =>
    exported().flatMap((m) => m.transfers.map(([type, result, value]) => ({ labels: { zone: m.zone, type, result }, value }))),
  );
  add('sinkhole_rpz_export_notifies_total', 'NOTIFYs to listen.rpz.notify secondaries: ok (answered) or failed (no answer after every resend, or an error rcode).', 'counter', () =>
    exported().flatMap((m) => [
      { labels: { zone: m.zone, result: 'ok' }, value: m.notifies.ok },
      { labels: { zone: m.zone, result: 'failed' }, value: m.notifies.failed },
    ]),
  );
  add('sinkhole_reloads_total', 'Policy reloads, by what triggered them and whether they applied.', 'counter', () => {
    const out: Sample[] = [];
    for (const kind of ['config', 'list', 'exceptions']) {
      for (const result of ['success', 'failure']) out.push({ labels: { kind, result }, value: src.stats().reloads.get(`${kind}|${result}`) ?? 0 });
    }
    return out;
  });
  add('sinkhole_policy_generation', 'Number of the policy generation in force; increases on each successful reload.', 'gauge', () => [
    { labels: {}, value: src.generation().number },
  ]);
  // Two instances enforce the same policy exactly when their hashes are equal (policy/fingerprint.ts).
  // One series at a time: when the policy changes, the old hash's series ends.
  add('sinkhole_policy_info', 'Always 1; the hash label fingerprints the policy in force (rules, enforced lists, response, clients, exceptions).', 'gauge', () => [
    { labels: { hash: policyHash(src.generation()) }, value: 1 },
  ]);
  add('sinkhole_exceptions', 'Exceptions on record, by state (active, expired or revoked).', 'gauge', () => {
    const now = src.now();
    const count: Record<ExceptionState, number> = { active: 0, expired: 0, revoked: 0 };
    for (const e of src.generation().exceptions) count[stateOf(e, now)]++;
    return Object.entries(count).map(([state, value]) => ({ labels: { state }, value }));
  });
  add('sinkhole_exception_expiry_timestamp_seconds', 'When each exception stops applying (its expiry, or its revocation if earlier), as a Unix time.', 'gauge', () =>
    src.generation().exceptions.map((e) => ({ labels: { exception: e.id }, value: e.endsAt / 1000 })),
  );
  add('sinkhole_build_info', 'Always 1; the version label says which sinkhole is running.', 'gauge', () => [{ labels: { version: src.version }, value: 1 }]);
  add('sinkhole_internal_errors_total', 'Queries that failed inside sinkhole and were answered SERVFAIL (should stay 0).', 'counter', () => [
    { labels: {}, value: src.stats().internalErrors },
  ]);
  // Identity and the shared report (issue 11).
  add('sinkhole_identity_reloads_total', 'Lease file reads, by format and whether the file was accepted (a rejected one keeps its last good version).', 'counter', () =>
    [...src.stats().identityReloads].map(([key, value]) => {
      const [format = '', result = ''] = key.split('|');
      return { labels: { format, result }, value };
    }),
  );
  add('sinkhole_identity_devices', 'Addresses mapped to a device by the lease files now.', 'gauge', () => [{ labels: {}, value: src.identityDevices?.() ?? 0 }]);
  add('sinkhole_identity_options_total', 'Queries carrying EDNS Client Subnet or the MAC option, by whether the sender is a trusted relay (untrusted: ignored and stripped).', 'counter', () => [
    { labels: { source: 'trusted' }, value: src.stats().relayedIdentity },
    { labels: { source: 'untrusted' }, value: src.stats().untrustedIdentityOptions },
  ]);
  add('sinkhole_report_store_up', '1 while the PostgreSQL report store answers (always 1 for the memory store).', 'gauge', () => [
    { labels: {}, value: src.reportStore?.()?.up === false ? 0 : 1 },
  ]);
  add('sinkhole_report_spool_events', 'Blocked-query events waiting for the PostgreSQL report store.', 'gauge', () => [{ labels: {}, value: src.reportStore?.()?.spooled ?? 0 }]);
  add('sinkhole_report_events_dropped_total', 'Blocked-query events the report lost: its intake was full within one event-loop turn, or the spool overflowed while the store was down.', 'counter', () => [
    { labels: { where: 'intake' }, value: src.stats().reportDropped },
    { labels: { where: 'spool' }, value: src.reportStore?.()?.dropped ?? 0 },
  ]);
  // Compliance events (issue 20): per sink, labelled by its kind and configured address (bounded by the config).
  const perSink = (pick: (c: EventCounts['sinks'][number]) => number) => (): Sample[] =>
    (src.events?.()?.sinks ?? []).map((c) => ({ labels: { sink: c.sink }, value: pick(c) }));
  add('sinkhole_event_sink_sent_total', 'Compliance events a sink took (syslog: handed to the kernel; webhook: answered 2xx).', 'counter', perSink((c) => c.sent));
  add('sinkhole_event_sink_failed_total', 'Failed attempts to deliver a compliance event to a sink (each is retried).', 'counter', perSink((c) => c.failed));
  add('sinkhole_event_sink_spooled', 'Compliance events waiting in a sink\'s spool (state.dir/events/).', 'gauge', perSink((c) => c.spooled));
  add('sinkhole_event_sink_dropped_total', 'Compliance events a sink\'s spool dropped because it was full.', 'counter', perSink((c) => c.dropped));
  add('sinkhole_events_announced_total', 'Devices announced (one per device and list per cooldown), by this instance.', 'counter', () => [{ labels: {}, value: src.events?.()?.announced ?? 0 }]);
  add('sinkhole_events_suppressed_total', 'Announcements not sent because another instance had made them (PostgreSQL arbitration).', 'counter', () => [
    { labels: {}, value: src.events?.()?.suppressed ?? 0 },
  ]);
  add('sinkhole_events_tracked', 'Device and list pairs the event tracker holds now (at most events.maxTracked).', 'gauge', () => [{ labels: {}, value: src.events?.()?.tracked ?? 0 }]);
  add('sinkhole_events_untracked_total', 'Blocked queries not counted towards an event because events.maxTracked pairs were already tracked.', 'counter', () => [
    { labels: {}, value: src.events?.()?.untracked ?? 0 },
  ]);
  add('sinkhole_tcp_connections', 'Open client TCP connections.', 'gauge', () => [{ labels: {}, value: src.tcpConnections() }]);
  // Hostile clients and failing disks (issue 8).
  // Issue 23: every listener that takes TCP connections (proto tcp, dot, doh, http) admits them at accept.
  const byProto = (c: ConnectionCounts): { labels: Record<string, string>; value: number }[] =>
    (['tcp', 'dot', 'doh', 'http'] as const).map((proto) => ({ labels: { proto }, value: c[proto] }));
  add('sinkhole_tcp_evictions_total', 'Idle client connections closed to make room for another client, by listener (proto tcp, dot, doh, http).', 'counter', () =>
    byProto(src.connectionEvictions()),
  );
  add('sinkhole_tcp_refused_total', 'Client connections refused at accept, by listener: the caps were reached and no idle connection could give way (doh: or the address is calming down).', 'counter', () =>
    byProto(src.connectionRefusals()),
  );
  add('sinkhole_doh_resets_closed_total', 'DoH connections closed (GOAWAY ENHANCE_YOUR_CALM) for sending more HTTP/2 stream resets than the budget (CVE-2023-44487).', 'counter', () => [
    { labels: {}, value: src.dohCalmed?.() ?? 0 },
  ]);
  add('sinkhole_log_dropped_lines_total', 'Log lines lost: the target failed (full disk, deleted folder) or fell too far behind.', 'counter', () =>
    src.logs().map((h) => ({ labels: { log: h.name }, value: h.dropped })),
  );
  add('sinkhole_log_failing', '1 while a log target cannot be written (retried with backoff), else 0.', 'gauge', () =>
    src.logs().map((h) => ({ labels: { log: h.name }, value: h.failing ? 1 : 0 })),
  );
  add('sinkhole_dnstap_sent_total', 'dnstap messages written to the collector (log.dnstap).', 'counter', () => [{ labels: {}, value: src.dnstap?.().sent ?? 0 }]);
  add('sinkhole_dnstap_dropped_total', 'dnstap messages dropped: the queue was full while the collector was slow or away.', 'counter', () => [
    { labels: {}, value: src.dnstap?.().dropped ?? 0 },
  ]);
  add('sinkhole_dnstap_connected', 'dnstap streams connected to the collector now (one per query thread).', 'gauge', () => [{ labels: {}, value: src.dnstap?.().connected ?? 0 }]);
  add('sinkhole_upstream_source_ports', 'UDP sockets open in the upstream source-port pool (upstreams.sourcePorts).', 'gauge', () => [
    { labels: {}, value: src.sourcePorts() },
  ]);
  add('sinkhole_workers', 'Query threads answering now (workers).', 'gauge', () => [{ labels: {}, value: src.threads().length }]);
  add('sinkhole_worker_restarts_total', 'Query threads restarted after they died.', 'counter', () => [{ labels: {}, value: src.workerRestarts() }]);
  add('sinkhole_worker_queries_total', 'Queries received by each query thread (0 is the main thread): how evenly the kernel spreads them.', 'counter', () =>
    src.threads().map((t) => ({ labels: { worker: String(t.index) }, value: t.queries })),
  );
  // `stat`, not `quantile`: Prometheus reserves that label for summaries (promtool rejects it on a gauge).
  add('sinkhole_event_loop_delay_seconds', 'Event-loop delay of each query thread over the last 10 to 20 s (stat p50, p99, max).', 'gauge', () =>
    src.threads().flatMap((t) =>
      (['p50', 'p99', 'max'] as const).map((stat, i) => ({ labels: { worker: String(t.index), stat }, value: t.loopDelay[i]! })),
    ),
  );

  // Availability (issue 9): serve-stale, failure memory, prefetch, rate limits, the last good policy.
  add('sinkhole_stale_answers_total', 'Answers served from expired cache entries because the upstreams failed or were slow (RFC 8767).', 'counter', () => [
    { labels: {}, value: src.stats().staleAnswers },
  ]);
  add('sinkhole_remembered_servfails_total', 'SERVFAILs answered from memory, without asking upstream, for a name whose upstreams all failed within cache.servfailTtl.', 'counter', () => [
    { labels: {}, value: src.stats().servfailsRemembered },
  ]);
  add('sinkhole_prefetches_total', 'Background refreshes of popular cache entries in the last 10% of their TTL: started, or skipped at the cap.', 'counter', () =>
    Object.entries(src.stats().prefetches).map(([outcome, value]) => ({ labels: { outcome }, value })),
  );
  add('sinkhole_ratelimited_total', 'Queries over clients.rateLimit, by what was done: truncate, refuse, drop (no reply: clients.rateLimit.slip), or dryrun (only counted).', 'counter', () =>
    Object.entries(src.stats().rateLimited).map(([action, value]) => ({ labels: { action }, value })),
  );
  add('sinkhole_ratelimit_buckets', 'Clients (keys) with a rate-limit token bucket now.', 'gauge', () => [{ labels: {}, value: src.rateLimitBuckets?.() ?? 0 }]);
  add('sinkhole_policy_degraded', '1 while the policy in force came from the last good snapshot because the files on disk do not compile; 0 otherwise.', 'gauge', () => [
    { labels: {}, value: src.generation().degraded ? 1 : 0 },
  ]);
  add('sinkhole_policy_files_ok', '1 when the config, lists and exceptions on disk compiled at the last attempt (start-up or reload); 0 while they do not (the last good policy stays in force).', 'gauge', () => [
    { labels: {}, value: (src.policyFilesOk?.() ?? true) ? 1 : 0 },
  ]);
  add('sinkhole_state_write_failures_total', 'Snapshots of the last good policy that could not be written to state.dir (DNS is not affected).', 'counter', () => [
    { labels: {}, value: src.stats().stateWriteFailures },
  ]);
  // Encrypted DNS (issue 12): client connections of the DoT/DoH listeners, and the connections
  // sinkhole keeps to tls:// and https:// upstreams (few and long-lived when reuse works).
  add('sinkhole_encrypted_connections', 'Open client connections of the DNS-over-TLS and DNS-over-HTTPS listeners.', 'gauge', () => {
    const n = src.encryptedConnections?.() ?? { dot: 0, doh: 0 };
    return [
      { labels: { proto: 'dot' }, value: n.dot },
      { labels: { proto: 'doh' }, value: n.doh },
    ];
  });
  const encrypted = (): [string, UpstreamStats][] => [...src.stats().upstreams].filter(([label]) => /^(tls|https):\/\//.test(label));
  add('sinkhole_upstream_connections', 'Open TLS connections (DoT) or HTTP/2 sessions (DoH) to each encrypted upstream.', 'gauge', () =>
    encrypted().map(([upstream, u]) => ({ labels: { upstream }, value: u.open })),
  );
  add('sinkhole_upstream_connects_total', 'TLS connections (DoT) or HTTP/2 sessions (DoH) opened to each encrypted upstream.', 'counter', () =>
    encrypted().map(([upstream, u]) => ({ labels: { upstream }, value: u.connects })),
  );
  return register;
}

/**
 * `registry.metrics()` in the Prometheus text format, one metric at a time with the event loop let run
 * between slices (src/slices.ts): prom-client renders every metric in one go, 4-13 ms here with the
 * query thread waiting. The text is the same, metric for metric (the registry's order, joined as
 * prom-client joins them).
 */
export async function metricsInSlices(registry: Registry): Promise<string> {
  const slices = new Slices();
  const parts: string[] = [];
  for (const metric of registry.getMetricsAsArray()) {
    parts.push(await registry.getSingleMetricAsString(metric.name));
    await slices.next();
  }
  return `${parts.join('\n\n')}\n`;
}
