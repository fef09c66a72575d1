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
    if (o.result !== 'blocked' && !o.limited) return;
    const now = this.now();
    let r = this.clients.get(q.client);
    if (!r) {
      if (this.clients.size >= this.settings.maxClients) this.evict(now);
      r = { count: 0, first: now, last: now, lists: new Map(), rateLimited: 0 };
      this.clients.set(q.client, r);
    }
    r.last = now;
    if (o.limited) r.rateLimited++;
    if (o.result !== 'blocked') return;
    r.count++;
    r.lists.set(o.list!, (r.lists.get(o.list!) ?? 0) + 1);
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
