// Stage 2. Sees every outcome — blocked, cached and refused included — and
// counts it in plain numbers (metrics/stats.ts), then hands it to the
// observers: query log, audit log, compliance report.
import { performance } from 'node:perf_hooks';
import type { Query } from '../dns/query.js';
import { bump, QTYPE_LABELS, type Stats } from '../metrics/stats.js';
import { isPromise, RESULTS, type Handler, type Outcome, type Result, type Stage } from '../pipeline/types.js';

export interface Observer {
  observe(q: Query, o: Outcome): void;
}

// Label keys are built once, so counting a query concatenates no strings.
const QUERY_KEYS = {
  udp: keysByQtype('udp'),
  tcp: keysByQtype('tcp'),
};
function keysByQtype(proto: string): Map<number, string> {
  return new Map(Object.entries(QTYPE_LABELS).map(([n, label]) => [Number(n), `${proto}|${label}`]));
}
const RESPONSE_KEYS = new Map<Result, string[]>(RESULTS.map((r) => [r, Array.from({ length: 24 }, (_, rcode) => `${r}|${rcode}`)]));

export class MetricsStage implements Stage {
  readonly name = 'metrics';

  constructor(
    private readonly stats: Stats,
    private readonly observers: readonly Observer[],
  ) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    const r = next(q);
    return isPromise(r) ? r.then((o) => this.record(q, o)) : this.record(q, r);
  }

  private record(q: Query, o: Outcome): Outcome {
    const s = this.stats;
    bump(s.queries, QUERY_KEYS[q.proto].get(q.qtype) ?? `${q.proto}|other`);
    const rcode = o.wire.length >= 4 ? o.wire[3]! & 0x0f : 0;
    bump(s.responses, RESPONSE_KEYS.get(o.result)![rcode]!);
    s.histogram(o.result).observe((performance.now() - q.arrived) / 1000);
    if (o.result === 'blocked') bump(s.blockedByList, o.list!);
    else if (o.result === 'excepted') bump(s.exceptionQueries, o.exception!);
    for (const obs of this.observers) obs.observe(q, o);
    return o;
  }
}
