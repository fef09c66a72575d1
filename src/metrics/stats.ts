// Plain-number counters for the hot path. A labelled prom-client inc() costs
// ~300-450 ns (PACKAGES.md §3) and cost the calibration prototype 10-20% of
// its throughput (docs/design.md §2), so queries bump numbers here and
// metrics/registry.ts publishes them when Prometheus scrapes.
import { RESULTS, type Result } from '../pipeline/types.js';
import type { Proto } from '../dns/query.js';

/**
 * Seconds. From 10 µs (a cache hit or a sinkhole answer takes ~10–30 µs in process) to past
 * the upstream timeout; the sub-millisecond buckets are where local answers live.
 */
export const LATENCY_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

export interface HistogramData {
  counts: Float64Array;
  sum: number;
  count: number;
}

export class Histogram implements HistogramData {
  /** counts[i] = observations ≤ LATENCY_BUCKETS[i] but above the previous bound; the last slot is +Inf. */
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  add(d: HistogramData): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += d.counts[i] ?? 0;
    this.sum += d.sum;
    this.count += d.count;
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** qtype label: a fixed set, so the series count never depends on what clients send. */
export const QTYPE_LABELS: Readonly<Record<number, string>> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 43: 'DS', 48: 'DNSKEY',
  64: 'SVCB', 65: 'HTTPS', 255: 'ANY',
};

/** Slot of each qtype label in Stats.queries; every other qtype shares the last slot (`other`). */
export const QTYPE_SLOTS: readonly string[] = [...Object.values(QTYPE_LABELS), 'other'];
const QTYPE_SLOT = new Uint8Array(65536).fill(QTYPE_SLOTS.length - 1);
Object.keys(QTYPE_LABELS).forEach((qtype, i) => (QTYPE_SLOT[Number(qtype)] = i));
export const PROTOS = ['udp', 'tcp', 'dot', 'doh'] as const;
/** First slot of each transport's row in Stats.queries: a property read, not an indexOf, per query. */
const PROTO_BASE: Readonly<Record<Proto, number>> = { udp: 0, tcp: QTYPE_SLOTS.length, dot: 2 * QTYPE_SLOTS.length, doh: 3 * QTYPE_SLOTS.length };
const RESULT_SLOT = new Map<Result, number>(RESULTS.map((r, i) => [r, i]));
/** Header rcodes are 4 bits (0-15); slot 16 is BADVERS, the one extended rcode sinkhole sends (RFC 6891 §6.1.3). */
export const RCODE_SLOTS = 17;

export type UpstreamOutcome = 'ok' | 'timeout' | 'error' | 'truncated';

export class UpstreamStats {
  readonly outcomes: Record<UpstreamOutcome, number> = { ok: 0, timeout: 0, error: 0, truncated: 0 };
  readonly latency = new Histogram();
  /** Encrypted upstreams: connections (TLS) or sessions (HTTP/2) opened, and open now. */
  connects = 0;
  open = 0;
}

/**
 * A Stats as plain data, to cross from a query thread to the one that serves /metrics
 * (app.ts: each data-plane thread counts on its own, and a scrape sums them).
 */
export interface StatsData {
  queries: Float64Array;
  responses: Float64Array;
  latency: [Result, HistogramData][];
  upstreams: [string, { outcomes: Record<UpstreamOutcome, number>; latency: HistogramData; connects: number; open: number }][];
  /** Every plain counter (a number field) and group of counters (an object of numbers), by field name. */
  scalars: Record<string, number | Record<string, number>>;
  /** Every counter keyed by a name from the config (a Map of numbers: reloads, lease reads...), by field name. */
  maps: Record<string, [string, number][]>;
}

type Counters = Record<string, number>;

function isCounters(v: unknown): v is Counters {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype && Object.values(v).every((x) => typeof x === 'number');
}

export class Stats {
  /** [proto][qtype slot] → count: a typed array, so counting a query hashes nothing. */
  readonly queries = new Float64Array(PROTOS.length * QTYPE_SLOTS.length);
  /** [result][rcode] → count */
  readonly responses = new Float64Array(RESULTS.length * RCODE_SLOTS);
  readonly blockedByList = new Map<string, number>();
  readonly exceptionQueries = new Map<string, number>();
  /** RPZ matches by `${zone}|${action}` (passthru and disabled included: docs/rpz.md). */
  readonly rpzRewrites = new Map<string, number>();
  readonly latency = new Map<Result, Histogram>();
  cacheHits = 0;
  cacheMisses = 0;
  /** Misses answered SERVFAIL because upstreams.maxInflight exchanges were already in flight. */
  upstreamOverloads = 0;
  /** Misses answered SERVFAIL because the query could not be sent (EMSGSIZE, ENOBUFS): no upstream's fault. */
  localSendErrors = 0;
  readonly upstreams = new Map<string, UpstreamStats>();
  /** `${kind}|${result}` → count */
  readonly reloads = new Map<string, number>();
  /** Errors thrown inside the pipeline and turned into SERVFAIL by the recover stage. */
  internalErrors = 0;

  // Availability (issue 9).
  /** Answers served from expired cache entries (RFC 8767). */
  staleAnswers = 0;
  /** SERVFAILs answered from the failure memory (RFC 2308 §7.1) without asking upstream. */
  servfailsRemembered = 0;
  /** Background refreshes of hits in the last 10 % of their TTL: started, and skipped at the cap. */
  readonly prefetches = { started: 0, skipped: 0 };
  /** Queries over clients.rateLimit, by what was done with them. */
  readonly rateLimited = { truncate: 0, refuse: 0, drop: 0, dryrun: 0 };
  /** Snapshots of the last good policy that could not be written to state.dir. */
  stateWriteFailures = 0;
  // Identity (issue 11): lease file reads by `${format}|${result}`, and EDNS identity options.
  readonly identityReloads = new Map<string, number>();
  /** Queries from clients.trustedRelays whose ECS/MAC option named the client. */
  relayedIdentity = 0;
  /** Queries with ECS/MAC options from anyone else: ignored and stripped. */
  untrustedIdentityOptions = 0;
  /** Blocked-query events the report could not take (its intake was full within one event-loop turn). */
  reportDropped = 0;


  countQuery(proto: Proto, qtype: number): void {
    this.queries[PROTO_BASE[proto] + QTYPE_SLOT[qtype]!]!++;
  }

  countResponse(result: Result, rcode: number): void {
    this.responses[RESULT_SLOT.get(result)! * RCODE_SLOTS + (rcode === 16 ? 16 : rcode & 15)]!++;
  }

  queryCount(proto: (typeof PROTOS)[number], slot: number): number {
    return this.queries[PROTOS.indexOf(proto) * QTYPE_SLOTS.length + slot]!;
  }

  responseCount(result: Result, rcode: number): number {
    return this.responses[RESULT_SLOT.get(result)! * RCODE_SLOTS + rcode]!;
  }

  upstream(label: string): UpstreamStats {
    let s = this.upstreams.get(label);
    if (!s) this.upstreams.set(label, (s = new UpstreamStats()));
    return s;
  }

  histogram(result: Result): Histogram {
    let h = this.latency.get(result);
    if (!h) this.latency.set(result, (h = new Histogram()));
    return h;
  }

  reload(kind: 'config' | 'list' | 'exceptions', result: 'success' | 'failure'): void {
    bump(this.reloads, `${kind}|${result}`);
  }

  toData(): StatsData {
    const hist = (h: Histogram): HistogramData => ({ counts: h.counts.slice(), sum: h.sum, count: h.count });
    return {
      queries: this.queries.slice(),
      responses: this.responses.slice(),
      latency: [...this.latency].map(([r, h]) => [r, hist(h)]),
      // Every number field and object of numbers, so a counter added later crosses threads without a line here.
      scalars: Object.fromEntries(
        Object.entries(this).flatMap(([k, v]): [string, number | Counters][] => (typeof v === 'number' ? [[k, v]] : isCounters(v) ? [[k, { ...v }]] : [])),
      ),
      maps: Object.fromEntries(
        Object.entries(this).flatMap(([k, v]): [string, [string, number][]][] =>
          v instanceof Map && [...v.values()].every((x) => typeof x === 'number') ? [[k, [...(v as Map<string, number>)]]] : [],
        ),
      ),
      upstreams: [...this.upstreams].map(([l, u]) => [l, { outcomes: { ...u.outcomes }, latency: hist(u.latency), connects: u.connects, open: u.open }]),
    };
  }

  /** Adds another thread's counts to these. */
  add(d: StatsData): void {
    for (let i = 0; i < this.queries.length; i++) this.queries[i]! += d.queries[i] ?? 0;
    for (let i = 0; i < this.responses.length; i++) this.responses[i]! += d.responses[i] ?? 0;
    for (const [field, entries] of Object.entries(d.maps)) {
      const map = (this as unknown as Record<string, Map<string, number>>)[field]!;
      for (const [k, v] of entries) bump(map, k, v);
    }
    for (const [r, h] of d.latency) this.histogram(r).add(h);
    // The same field names as toData() found them (a Stats of this very class, in another thread).
    const mine = this as unknown as Record<string, number | Counters>;
    for (const [k, v] of Object.entries(d.scalars)) {
      if (typeof v === 'number') (mine[k] as number) += v;
      else for (const [sub, n] of Object.entries(v)) (mine[k] as Counters)[sub] = ((mine[k] as Counters)[sub] ?? 0) + n;
    }
    for (const [label, u] of d.upstreams) {
      const up = this.upstream(label);
      for (const k of Object.keys(u.outcomes) as UpstreamOutcome[]) up.outcomes[k] += u.outcomes[k];
      up.latency.add(u.latency);
      up.connects += u.connects;
      up.open += u.open;
    }
  }
}

export function bump(map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}
