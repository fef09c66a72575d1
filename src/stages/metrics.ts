// The metrics stage, second in the chain (pipeline/chain.ts). Sees every outcome — blocked, cached and refused included — and
// counts it in plain numbers (metrics/stats.ts), then hands it to the
// observers: query log, audit log, compliance report.
import { performance } from 'node:perf_hooks';
import type { Query } from '../dns/query.js';
import { bump, type Stats } from '../metrics/stats.js';
import { isPromise, type Handler, type Outcome, type Stage } from '../pipeline/types.js';

export interface Observer {
  observe(q: Query, o: Outcome): void;
}

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
    s.countQuery(q.proto, q.qtype);
    // A dropped query (NO_REPLY) is no response: sinkhole_ratelimited_total{action="drop"} counts it.
    if (o.wire.length !== 0) {
      s.countResponse(o.result, o.rcode ?? (o.wire.length >= 4 ? o.wire[3]! & 0x0f : 0));
      s.histogram(o.result).observe((performance.now() - q.arrived) / 1000);
    }
    if (o.result === 'blocked') bump(s.blockedByList, o.list!);
    else if (o.result === 'excepted') bump(s.exceptionQueries, o.exception!);
    for (const obs of this.observers) obs.observe(q, o);
    return o;
  }
}
