// GET /api/blocked-clients, a page at a time. With 20,000 clients a single
// answer used to be 5 MB, and a flood of requests for it lost all DNS for
// 10 s and took the process to 1.4 GB (issue 8). Now the report is read at
// most once per `maxAgeMs` (from memory or PostgreSQL) and shared by the API
// and the admin page, and each page is rendered once per read: a flood costs
// one read and one render a second, whatever it asks.
import type { ReportRow, ReportSnapshot } from './report.js';

/** Rows in one page unless ?limit= says otherwise, and the most it may say. */
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

/** One page of the report: the snapshot's fields, and `clients` from `offset`, at most `limit` of the `total`. */
export interface ReportPage extends ReportSnapshot {
  total: number;
  offset: number;
  limit: number;
  clients: ReportRow[];
}

/** ?offset=&limit=; a RangeError says what was expected (HTTP answers it 400). */
export function pageParams(params: URLSearchParams): { offset: number; limit: number } {
  const read = (name: string, fallback: number, min: number, max: number): number => {
    const text = params.get(name);
    if (text === null) return fallback;
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) throw new RangeError(`${name} must be a whole number from ${min} to ${max}, got "${text}"`);
    return n;
  };
  return { offset: read('offset', 0, 0, 1e9), limit: read('limit', DEFAULT_PAGE, 1, MAX_PAGE) };
}

export class ReportPages {
  private current: { at: number; report: Promise<ReportSnapshot>; pages: Map<string, Promise<string>> } | undefined;

  constructor(
    private readonly read: () => Promise<ReportSnapshot>,
    /** How long one read is served again (0: every request reads). */
    private readonly maxAgeMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The report, read at most once per maxAgeMs. */
  snapshot(): Promise<ReportSnapshot> {
    return this.fresh().report;
  }

  /** One page as JSON text, rendered once per read of the report. */
  page(params: URLSearchParams): Promise<string> {
    const { offset, limit } = pageParams(params);
    const current = this.fresh();
    const key = `${offset}|${limit}`;
    let text = current.pages.get(key);
    if (!text) {
      text = current.report.then((r) => {
        const page: ReportPage = { ...r, total: r.clients.length, offset, limit, clients: r.clients.slice(offset, offset + limit) };
        // Compact: a 1,000-row page is half the size, rendered and sent in half the time.
        return `${JSON.stringify(page)}\n`;
      });
      current.pages.set(key, text);
    }
    return text;
  }

  private fresh(): { report: Promise<ReportSnapshot>; pages: Map<string, Promise<string>> } {
    const now = this.now();
    if (!this.current || now - this.current.at >= this.maxAgeMs) {
      const report = this.read();
      const current = { at: now, report, pages: new Map<string, Promise<string>>() };
      // A failed read (PostgreSQL down) is not kept: the next request reads again.
      report.catch(() => {
        if (this.current === current) this.current = undefined;
      });
      this.current = current;
    }
    return this.current;
  }
}
