// The last hour's queries, blocks and upstream exchanges, for the admin page. The counters in
// Stats only ever grow, so one sample of them a minute (a timer, off the query path) and a
// difference give the last 60 minutes: no work per query, and ~61 small samples kept.
import { RESULTS } from '../pipeline/types.js';
import { RCODE_SLOTS, type Stats } from '../metrics/stats.js';

export const HOUR_MS = 3_600_000;
export const SAMPLE_EVERY_MS = 60_000;

export interface Totals {
  queries: number;
  blocked: number;
  /** Per upstream label: exchanges answered, and timeouts plus errors. */
  upstreams: Record<string, { ok: number; failed: number }>;
}

/** What changed over `ms` (up to an hour; less while the server has run for less). */
export interface Recent extends Totals {
  ms: number;
}

const BLOCKED = RESULTS.indexOf('blocked') * RCODE_SLOTS;

export function totalsOf(stats: Stats): Totals {
  let queries = 0;
  for (const n of stats.queries) queries += n;
  let blocked = 0;
  for (let i = 0; i < RCODE_SLOTS; i++) blocked += stats.responses[BLOCKED + i]!;
  const upstreams: Totals['upstreams'] = {};
  for (const [label, u] of stats.upstreams) upstreams[label] = { ok: u.outcomes.ok, failed: u.outcomes.timeout + u.outcomes.error };
  return { queries, blocked, upstreams };
}

export class RecentTotals {
  private samples: { at: number; t: Totals }[] = [];

  record(at: number, t: Totals): void {
    this.samples.push({ at, t });
    // Keep the newest sample at least an hour old, as the base of a full hour.
    while (this.samples.length > 1 && this.samples[1]!.at <= at - HOUR_MS) this.samples.shift();
  }

  /** From the sample nearest an hour before `now` (the first one, if younger) to `current`. */
  since(now: number, current: Totals): Recent | undefined {
    const base = this.samples.find((s) => s.at >= now - HOUR_MS) ?? this.samples.at(-1);
    if (!base) return undefined;
    const upstreams: Totals['upstreams'] = {};
    for (const [label, u] of Object.entries(current.upstreams)) {
      const b = base.t.upstreams[label] ?? { ok: 0, failed: 0 };
      upstreams[label] = { ok: u.ok - b.ok, failed: u.failed - b.failed };
    }
    return { ms: Math.max(0, now - base.at), queries: current.queries - base.t.queries, blocked: current.blocked - base.t.blocked, upstreams };
  }
}
