// The compliance report: which client addresses sent blocked queries, how
// many, first and last seen, and their top lists — the devices that still
// have the app. Bounded: a client silent for longer than the window is
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
}

export interface ReportRow {
  client: string;
  blocked: number;
  firstSeen: string;
  lastSeen: string;
  topLists: { list: string; count: number }[];
}

export class ComplianceReport implements Observer {
  private readonly clients = new Map<string, ClientRecord>();
  private settings!: Config['report'];
  /** The clients, most active first, as of `at` (clock time); rebuilt at most once per RANKING_MAX_AGE_MS. */
  private ranking: Ranking | undefined;

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
    if (o.result !== 'blocked') return;
    const now = this.now();
    let r = this.clients.get(q.client);
    if (!r) {
      if (this.clients.size >= this.settings.maxClients) this.evict(now);
      r = { count: 0, first: now, last: now, lists: new Map() };
      this.clients.set(q.client, r);
    }
    r.count++;
    r.last = now;
    r.lists.set(o.list!, (r.lists.get(o.list!) ?? 0) + 1);
  }

  /** Drops clients outside the window, then the least active tenth, so eviction is amortised. */
  private evict(now: number): void {
    this.expire(now);
    if (this.clients.size < this.settings.maxClients) return;
    const byActivity = [...this.clients].sort((a, b) => a[1].count - b[1].count || a[1].last - b[1].last);
    const drop = Math.max(1, Math.ceil(this.settings.maxClients / 10));
    for (const [client] of byActivity.slice(0, drop)) this.clients.delete(client);
  }

  private expire(now: number): void {
    const oldest = now - this.settings.windowMs;
    for (const [client, r] of this.clients) if (r.last < oldest) this.clients.delete(client);
  }

  /**
   * One page of the report, most active clients first. The ranking is built
   * at most once per RANKING_MAX_AGE_MS (a sort of up to maxClients records),
   * so a flood of report requests costs one sort a second and each request
   * builds only its page: with 20,000 clients a single answer used to be
   * 5 MB, and a flood of them took the process to 1.4 GB.
   */
  snapshot(page: { offset?: number; limit?: number } = {}): ReportPage {
    return this.cut(this.rank(), page.offset ?? 0, Math.min(page.limit ?? DEFAULT_PAGE, MAX_PAGE));
  }

  /**
   * The same page as JSON text, rendered once per ranking: a flood of
   * requests for one page costs one render a second, as /metrics does. (A
   * ranking keeps at most a second's worth of pages: HTTP allows 100 requests a second.)
   */
  pageJson(page: { offset: number; limit: number }): string {
    const ranking = this.rank();
    const key = `${page.offset}|${page.limit}`;
    let json = ranking.pages.get(key);
    if (json === undefined) ranking.pages.set(key, (json = JSON.stringify(this.cut(ranking, page.offset, Math.min(page.limit, MAX_PAGE)))));
    return json;
  }

  private rank(): Ranking {
    const now = this.now();
    if (!this.ranking || now - this.ranking.at >= RANKING_MAX_AGE_MS || now < this.ranking.at) {
      this.expire(now);
      const rows = [...this.clients];
      rows.sort((a, b) => b[1].count - a[1].count);
      this.ranking = { at: now, rows, pages: new Map() };
    }
    return this.ranking;
  }

  private cut(ranking: Ranking, offset: number, limit: number): ReportPage {
    const clients = ranking.rows.slice(offset, offset + limit).map(([client, r]) => ({
      client,
      blocked: r.count,
      firstSeen: new Date(r.first).toISOString(),
      lastSeen: new Date(r.last).toISOString(),
      topLists: [...r.lists].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([list, count]) => ({ list, count })),
    }));
    return { windowSeconds: this.settings.windowMs / 1000, total: ranking.rows.length, offset, limit, clients };
  }
}

interface Ranking {
  /** Clock time it was built. */
  at: number;
  rows: [string, ClientRecord][];
  /** Pages already rendered from it, by "offset|limit". */
  pages: Map<string, string>;
}

/** Rows in one page of the report unless ?limit= says otherwise, and the most it may say. */
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;
const RANKING_MAX_AGE_MS = 1000;

export interface ReportPage {
  windowSeconds: number;
  /** Clients in the report; `clients` holds those from `offset`, at most `limit`. */
  total: number;
  offset: number;
  limit: number;
  clients: ReportRow[];
}

/** ?offset=&limit= of GET /api/blocked-clients; throws with what was expected (answered 400). */
export function pageParams(params: URLSearchParams): { offset: number; limit: number } {
  const read = (name: string, fallback: number, min: number, max: number): number => {
    const text = params.get(name);
    if (text === null) return fallback;
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}, got "${text}"`);
    return n;
  };
  return { offset: read('offset', 0, 0, 1e9), limit: read('limit', DEFAULT_PAGE, 1, MAX_PAGE) };
}
