// Plain-number counters for the hot path. A labelled prom-client inc() costs
// ~300-450 ns (PACKAGES.md §3) and cost the calibration prototype 10-20% of
// its throughput (DESIGN.md §2), so queries bump numbers here and
// metrics/registry.ts publishes them when Prometheus scrapes.
import { RESULTS, type Result } from '../pipeline/types.js';

/** Seconds. From 100 µs (cache hits and sinkhole answers) to past the upstream timeout. */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Histogram {
  /** counts[i] = observations ≤ LATENCY_BUCKETS[i] but above the previous bound; the last slot is +Inf. */
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;

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
export const PROTOS = ['udp', 'tcp'] as const;
const RESULT_SLOT = new Map<Result, number>(RESULTS.map((r, i) => [r, i]));
/** Header rcodes are 4 bits (0-15); slot 16 is BADVERS, the one extended rcode sinkhole sends (RFC 6891 §6.1.3). */
export const RCODE_SLOTS = 17;

export type UpstreamOutcome = 'ok' | 'timeout' | 'error' | 'truncated';

export class UpstreamStats {
  readonly outcomes: Record<UpstreamOutcome, number> = { ok: 0, timeout: 0, error: 0, truncated: 0 };
  readonly latency = new Histogram();
}

export class Stats {
  /** [proto][qtype slot] → count: a typed array, so counting a query hashes nothing. */
  readonly queries = new Float64Array(PROTOS.length * QTYPE_SLOTS.length);
  /** [result][rcode] → count */
  readonly responses = new Float64Array(RESULTS.length * RCODE_SLOTS);
  readonly blockedByList = new Map<string, number>();
  readonly exceptionQueries = new Map<string, number>();
  readonly latency = new Map<Result, Histogram>();
  cacheHits = 0;
  cacheMisses = 0;
  /** Misses answered SERVFAIL because upstreams.maxInflight exchanges were already in flight. */
  upstreamOverloads = 0;
  readonly upstreams = new Map<string, UpstreamStats>();
  /** `${kind}|${result}` → count */
  readonly reloads = new Map<string, number>();
  /** Errors thrown inside the pipeline and turned into SERVFAIL by the recover stage. */
  internalErrors = 0;

  countQuery(proto: 'udp' | 'tcp', qtype: number): void {
    this.queries[(proto === 'udp' ? 0 : QTYPE_SLOTS.length) + QTYPE_SLOT[qtype]!]!++;
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
}

export function bump(map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}
