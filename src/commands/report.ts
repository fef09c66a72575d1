// sinkhole report: the compliance report from a running sinkhole's /api/blocked-clients, as a table,
// JSON, CSV or CEF lines for the systems that act on it (docs/observability.md).
import { loadConfig } from '../config/config.js';
import { SinkholeError } from '../errors.js';
import { readHttpToken } from '../http/token.js';
import { serverUrl } from '../http/server.js';
import type { ReportPage } from '../report/pages.js';
import { toCef } from '../events/cef.js';
import { eventId } from '../events/event.js';
import { parseDuration } from '../config/duration.js';
import { shortPath } from './output.js';
import { humanDuration } from './exceptions.js';

export async function report(v: { config: string; url?: string; json: boolean; since?: string; format?: string }, configGiven: boolean): Promise<number> {
  // Options are checked before the server is asked: a typo is a usage error, not a round trip.
  const format = v.format ?? (v.json ? 'json' : 'table');
  if (!REPORT_FORMATS.includes(format as ReportFormat)) throw new SinkholeError('SH_USAGE', `--format expects ${REPORT_FORMATS.join(', ')}, got "${format}"`);
  if (v.json && v.format !== undefined && v.format !== 'json') throw new SinkholeError('SH_USAGE', `--json and --format ${v.format} ask for two formats; give one`);
  const since = v.since === undefined ? undefined : sinceOf(v.since, Date.now());
  // The server's own address and token come from its config, unless --url names one.
  let url = v.url;
  let token: string | undefined;
  if (url === undefined || configGiven) {
    const config = loadConfig(v.config);
    if (url === undefined) {
      const ep = config.listen.http;
      if (!ep) throw new SinkholeError('SH_USAGE', `${shortPath(config.file)}: listen.http is not set, so there is no report to read; set it or pass --url`);
      url = serverUrl(ep);
    }
    if (config.listen.httpToken) token = readHttpToken(config.listen.httpToken);
  }
  let target: URL;
  try {
    target = new URL('/api/blocked-clients', url);
  } catch {
    throw new SinkholeError('SH_USAGE', `--url expects a URL like http://127.0.0.1:9153, got "${url}"`);
  }
  // The server serves the report a page at a time (at most 1,000 clients each): fetch every page.
  const fetchPage = async (offset: number): Promise<ReportPage> => {
    let res: Response;
    try {
      res = await fetch(new URL(`?offset=${offset}&limit=1000`, target), token ? { headers: { authorization: `Bearer ${token}` } } : {});
    } catch (e) {
      throw new SinkholeError('SH_UNREACHABLE', `cannot fetch ${target.href}: ${(e as Error).message}`);
    }
    // Reached, but refused: a wrong or missing token is not an unreachable server.
    if (res.status === 401) {
      throw new SinkholeError('SH_UNAUTHORIZED', `${target.href} answered 401: ${token ? 'the token in listen.httpToken is not the server\'s' : 'the server asks for a token; give --config with its listen.httpToken'}`);
    }
    try {
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return (await res.json()) as ReportPage;
    } catch (e) {
      throw new SinkholeError('SH_UNREACHABLE', `cannot fetch ${target.href}: ${(e as Error).message}`);
    }
  };
  const body = await fetchPage(0);
  while (body.clients.length < body.total) {
    const page = await fetchPage(body.clients.length);
    if (!page.clients.length) break;
    body.clients.push(...page.clients);
  }
  if (since !== undefined) {
    body.clients = body.clients.filter((c) => Date.parse(c.lastSeen) >= since);
    body.total = body.clients.length;
  }
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(body)}\n`);
    return 0;
  }
  if (format === 'csv') {
    process.stdout.write(reportCsv(body.clients));
    return 0;
  }
  if (format === 'cef') {
    process.stdout.write(reportCef(body, target.host));
    return 0;
  }
  const from = body.source === 'postgres' ? ` (PostgreSQL, ${body.instances} instance(s))` : body.source === 'memory' ? '' : ` (${body.source})`;
  const who = body.clients.some((c) => c.rateLimited) ? 'devices that sent blocked queries or went over the rate limit' : 'devices that sent blocked queries';
  process.stdout.write(`${who} in the last ${humanDuration(body.windowSeconds)}${from}: ${body.clients.length}\n`);
  if (!body.clients.length) return 0;
  const header = ['CLIENT', 'MAC', 'HOSTNAME', 'BLOCKED', 'FIRST SEEN', 'LAST SEEN', 'TOP LISTS'];
  const rows = body.clients.map((c) => [c.client, c.mac ?? '-', c.hostname ?? '-', String(c.blocked), c.firstSeen, c.lastSeen, c.topLists.map((l) => `${l.list}(${l.count})`).join(' ')]);
  // Issue 9: how many of each client's queries were over clients.rateLimit; shown once any client was limited.
  if (body.clients.some((c) => c.rateLimited)) {
    header.splice(4, 0, 'RATE LIMITED');
    body.clients.forEach((c, i) => rows[i]!.splice(4, 0, String(c.rateLimited ?? 0)));
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
  return 0;
}

const REPORT_FORMATS = ['table', 'json', 'csv', 'cef'] as const;

type ReportFormat = (typeof REPORT_FORMATS)[number];

/** --since: a duration back from now (2h, 1d) or an ISO 8601 instant. */
function sinceOf(text: string, now: number): number {
  const ms = /^\d/.test(text) && !text.includes('-') ? parseDuration(text) : undefined;
  if (ms !== undefined) return now - ms;
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) throw new SinkholeError('SH_USAGE', `--since expects a duration like 2h or 1d, or an ISO time like 2026-11-28T00:00:00Z, got "${text}"`);
  return at;
}

/**
 * RFC 4180: CRLF line ends, a field with a comma, quote or line break quoted, quotes doubled. Hostnames come
 * from DHCP, which a device chooses: a field starting with = + - @ is prefixed with ' so a spreadsheet shows
 * it rather than running it as a formula (OWASP "CSV injection").
 */
export function reportCsv(rows: readonly ReportPage['clients'][number][]): string {
  const field = (s: string): string => {
    const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
    return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
  };
  const lines = [['client', 'mac', 'hostname', 'blocked', 'firstSeen', 'lastSeen', 'topLists', 'rateLimited'].join(',')];
  for (const c of rows) {
    lines.push([c.client, c.mac ?? '', c.hostname ?? '', String(c.blocked), c.firstSeen, c.lastSeen, c.topLists.map((l) => `${l.list}:${l.count}`).join(' '), String(c.rateLimited ?? 0)].map(field).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** One CEF line per device and top list, as the syslog sink writes them (without the syslog header). */
function reportCef(body: ReportPage, instance: string): string {
  const out: string[] = [];
  for (const c of body.clients) {
    const device = c.mac ?? c.client;
    const end = Date.parse(c.lastSeen);
    for (const l of c.topLists) {
      out.push(toCef({
        id: eventId(device, l.list, end), device, mac: c.mac, client: c.client, hostname: c.hostname, list: l.list, count: l.count,
        start: Date.parse(c.firstSeen), end, name: '', policy: body.policy ?? '', at: end, instance,
      }));
    }
  }
  return out.map((l) => `${l}\n`).join('');
}
