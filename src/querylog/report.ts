// The compliance report: which client addresses sent blocked queries, how
// many, first and last seen, and their top lists — the devices that still
// have the app. Clients that went over clients.rateLimit are listed too,
// with how many of their queries were limited. Bounded: a client silent for longer than the window is
// forgotten, and past maxClients the least active are evicted.
import type { Config } from '../config/config.js';
import type { Query } from '../dns/query.js';
import type { Outcome } from '../pipeline/types.js';
import type { Observer } from '../stages/metrics.js';

interface ClientRecord {
  count: number;
  first: number;
  last: number;
  lists: Map<string, number>;
  /** Queries over clients.rateLimit (issue 9; counted in dry run too). */
  rateLimited: number;
}

export interface ReportRow {
  client: string;
  blocked: number;
  firstSeen: string;
  lastSeen: string;
  topLists: { list: string; count: number }[];
  /** Queries over clients.rateLimit in the window (acted on, or only counted in dry run). */
  rateLimited: number;
}

/** One blocked query, as a query thread reports it to the thread that keeps the report. */
export interface ReportEvent {
  client: string;
  /** The list that blocked it; undefined for a query that was only rate-limited. */
  list: string | undefined;
  limited: boolean;
  at: number;
}

/**
 * The report's stand-in in a worker query thread: it batches blocked queries and hands them
 * to the main thread (which holds the one report) every REPORT_FLUSH_MS or REPORT_BATCH events.
 */
export class ReportBatcher implements Observer {
  private events: ReportEvent[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly send: (events: ReportEvent[]) => void,
    private readonly now: () => number,
  ) {}

  observe(q: Query, o: Outcome): void {
    if (o.result !== 'blocked' && !o.limited) return;
    this.events.push({ client: q.client, list: o.result === 'blocked' ? o.list : undefined, limited: o.limited !== undefined, at: this.now() });
    if (this.events.length >= REPORT_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), REPORT_FLUSH_MS).unref();
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.events.length) return;
    const batch = this.events;
    this.events = [];
    this.send(batch);
  }
}

const REPORT_FLUSH_MS = 250;
const REPORT_BATCH = 1024;

export class ComplianceReport implements Observer {
  private readonly clients = new Map<string, ClientRecord>();
  private settings!: Config['report'];

  constructor(settings: Config['report'], private readonly now: () => number) {
    this.configure(settings);
  }

  configure(settings: Config['report']): void {
    this.settings = settings;
  }

  get size(): number {
    return this.clients.size;
  }

  observe(q: Query, o: Outcome): void {
    if (o.result === 'blocked' || o.limited) this.record(q.client, o.result === 'blocked' ? o.list : undefined, o.limited !== undefined, this.now());
  }

  /** Blocked and rate-limited queries seen by the other query threads (workers), batched by ReportBatcher. */
  ingest(events: readonly ReportEvent[]): void {
    for (const e of events) this.record(e.client, e.list, e.limited, e.at);
  }

  /** `list`: the query was blocked by it; `limited`: it went over clients.rateLimit. */
  private record(client: string, list: string | undefined, limited: boolean, now: number): void {
    let r = this.clients.get(client);
    if (!r) {
      if (this.clients.size >= this.settings.maxClients) this.evict(now);
      r = { count: 0, first: now, last: now, lists: new Map(), rateLimited: 0 };
      this.clients.set(client, r);
    }
    if (now > r.last) r.last = now;
    if (limited) r.rateLimited++;
    if (list === undefined) return;
    r.count++;
    r.lists.set(list, (r.lists.get(list) ?? 0) + 1);
  }

  /** Drops clients outside the window, then the least active tenth, so eviction is amortised. */
  private evict(now: number): void {
    this.expire(now);
    if (this.clients.size < this.settings.maxClients) return;
    const byActivity = [...this.clients].sort((a, b) => a[1].count + a[1].rateLimited - (b[1].count + b[1].rateLimited) || a[1].last - b[1].last);
    const drop = Math.max(1, Math.ceil(this.settings.maxClients / 10));
    for (const [client] of byActivity.slice(0, drop)) this.clients.delete(client);
  }

  private expire(now: number): void {
    const oldest = now - this.settings.windowMs;
    for (const [client, r] of this.clients) if (r.last < oldest) this.clients.delete(client);
  }

  snapshot(): { windowSeconds: number; clients: ReportRow[] } {
    this.expire(this.now());
    const rows = [...this.clients].map(([client, r]) => ({
      client,
      blocked: r.count,
      firstSeen: new Date(r.first).toISOString(),
      lastSeen: new Date(r.last).toISOString(),
      topLists: [...r.lists].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([list, count]) => ({ list, count })),
      rateLimited: r.rateLimited,
    }));
    rows.sort((a, b) => b.blocked - a.blocked || b.rateLimited - a.rateLimited);
    return { windowSeconds: this.settings.windowMs / 1000, clients: rows };
  }
}
