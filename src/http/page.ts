// GET / : one server-rendered page for an admin. No script, no font and no
// stylesheet from anywhere: it must work on a closed network and it needs
// no build step. It shows the devices still trying to reach TikTok (with an
// inline-SVG chart of blocked attempts per hour, in the server's time zone),
// the exceptions (active by time left, then revoked and expired), the last
// hour's traffic, the upstreams' health, and the policy in force. Narrow
// screens get the tables as cards (CSS only). The browser refreshes it every
// 30 s by itself.
import type { ReportSnapshot } from '../report/report.js';
import type { ExceptionState } from '../policy/exceptions.js';
import type { UpstreamHealth } from '../upstream/forwarder.js';

/**
 * Devices listed on the page, the most active first. The report may hold 100,000 (report.maxClients),
 * and the page is rendered on the query thread: the rest are in `sinkhole report` and the paged API.
 */
export const PAGE_DEVICES = 200;

/** An exception as the page shows it; `state` is policy/exceptions.ts's stateOf, never decided here. */
export interface PageException {
  id: string;
  state: ExceptionState;
  clients: readonly string[];
  allow: readonly string[];
  expires: string;
  /** When it stops applying: expiry or revocation, whichever comes first. */
  endsAt: number;
  approvedBy: string;
  reason: string;
  /** As written, and who revoked it; set only on a revoked record. */
  revoked?: string;
  revokedBy?: string;
}

/** An upstream's health (merged over the query threads) and its exchanges over `recent.ms`. */
export interface PageUpstream extends UpstreamHealth {
  ok: number;
  failed: number;
}

export interface PageData {
  now: number;
  version: string;
  /** The server's IANA time zone: the chart's hours and the page's times are in it. */
  timeZone: string;
  /** Queries and blocked queries over the last hour (less while the server has run for less). */
  recent: { ms: number; queries: number; blocked: number } | undefined;
  upstreams: PageUpstream[];
  report: ReportSnapshot;
  exceptions: PageException[];
  policy: {
    generation: number;
    lists: { name: string; rules: number; enforced: boolean }[];
    /** Why the service is degraded; empty when it is not. */
    degraded: string[];
  };
  identity: { devices: number; sources: { format: string; file: string; leases: number; ok: boolean }[] };
  /** Devices announced to the NAC and SIEM (events:), newest first; undefined when events are off. */
  announced?: Announced[];
}

import type { Announced } from '../events/arbiter.js';

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function timeLeft(ms: number): string {
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 60)}m ${s % 60}s`;
}

function ago(now: number, iso: string): string {
  const ms = now - Date.parse(iso);
  return ms < 60_000 ? 'just now' : `${timeLeft(ms)} ago`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const formatters = new Map<string, Intl.DateTimeFormat>();

/** Wall-clock parts of `t` in `zone` (one cached formatter per zone: the page runs on the DNS thread). */
function wall(t: number, zone: string): { y: string; mo: number; d: number; hh: string; mm: string } {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: '2-digit', minute: '2-digit' });
    formatters.set(zone, f);
  }
  const p: Record<string, string> = {};
  for (const x of f.formatToParts(t)) p[x.type] = x.value;
  return { y: p.year!, mo: Number(p.month), d: Number(p.day), hh: p.hour!, mm: p.minute! };
}

/** "2026-12-07 14:05" in `zone`. */
export function localTime(t: number, zone: string): string {
  const w = wall(t, zone);
  return `${w.y}-${String(w.mo).padStart(2, '0')}-${String(w.d).padStart(2, '0')} ${w.hh}:${w.mm}`;
}

/** Ticks 0, step, 2·step ... ≥ max, at most five, on 1-2-5 steps of whole attempts. */
export function countTicks(max: number): number[] {
  let step = 1;
  for (let k = 1; ; k *= 10) {
    const s = [1, 2, 5].map((m) => m * k).find((c) => c * 4 >= max);
    if (s !== undefined) {
      step = s;
      break;
    }
  }
  const top = Math.max(step, Math.ceil(max / step) * step);
  return Array.from({ length: top / step + 1 }, (_, i) => i * step);
}

/** Hours the chart shows: a day, whatever the report's window. */
export const CHART_HOURS = 24;
// The chart's own units; it scales to the width it is given (viewBox), down to a phone's.
const VB_W = 480;
const VB_H = 190;
const LEFT = 44;
const RIGHT = 6;
const TOP = 8;
const PLOT_H = 140;

/**
 * Blocked attempts per hour, with a count scale and hour labels in `zone`. Each bar has a
 * <title>, so hovering names the hour and the count.
 */
function chart(all: ReportSnapshot['hourly'], zone: string): string {
  const hours = all.slice(-CHART_HOURS);
  const ticks = countTicks(Math.max(0, ...hours.map((x) => x.count)));
  const top = ticks.at(-1)!;
  const slot = (VB_W - LEFT - RIGHT) / Math.max(1, hours.length);
  const y = (n: number): number => TOP + PLOT_H - (n / top) * PLOT_H;
  const grid = ticks
    .map((n) => `<line class="grid" x1="${LEFT}" x2="${VB_W - RIGHT}" y1="${y(n)}" y2="${y(n)}"/><text class="tick count" x="${LEFT - 5}" y="${y(n) + 4}" text-anchor="end">${n}</text>`)
    .join('');
  const bars = hours
    .map((x, i) => {
      const at = Date.parse(x.hour);
      const w = wall(at, zone);
      const x0 = LEFT + i * slot;
      const bh = (x.count / top) * PLOT_H;
      const label = `${w.hh}:${w.mm}`;
      const title = `${w.d} ${MONTHS[w.mo - 1]} ${label}${i === hours.length - 1 ? ' (this hour, so far)' : ''}: ${x.count} blocked`;
      const bar = `<rect x="${(x0 + slot * 0.1).toFixed(1)}" y="${(TOP + PLOT_H - bh).toFixed(1)}" width="${(slot * 0.8).toFixed(1)}" height="${bh.toFixed(1)}" data-hour="${esc(x.hour)}" data-count="${x.count}"><title>${esc(title)}</title></rect>`;
      // Every third hour is labelled at its start (every sixth on a phone: .minor); midnight also names the day.
      if (Number(w.hh) % 3 !== 0) return bar;
      const ly = TOP + PLOT_H + 16;
      const day = w.hh === '00' ? `<text class="tick" x="${x0.toFixed(1)}" y="${ly + 16}" text-anchor="middle">${w.d} ${MONTHS[w.mo - 1]}</text>` : '';
      return `${bar}<line class="axis" x1="${x0.toFixed(1)}" x2="${x0.toFixed(1)}" y1="${TOP + PLOT_H}" y2="${TOP + PLOT_H + 4}"/><text class="tick hour${Number(w.hh) % 6 ? ' minor' : ''}" x="${x0.toFixed(1)}" y="${ly}" text-anchor="middle">${label}</text>${day}`;
    })
    .join('');
  const total = hours.reduce((n, x) => n + x.count, 0);
  const axis = `<line class="axis" x1="${LEFT}" x2="${VB_W - RIGHT}" y1="${TOP + PLOT_H}" y2="${TOP + PLOT_H}"/>`;
  return `<svg id="hourly" role="img" aria-label="blocked attempts per hour over the last ${hours.length} hours (${esc(zone)}), ${total} in all" viewBox="0 0 ${VB_W} ${VB_H}" preserveAspectRatio="xMinYMin meet">${grid}${bars}${axis}</svg>`;
}

/** A table cell that names its column, for the narrow-screen card layout (td::before). */
function td(label: string, html: string, cls = ''): string {
  return `<td data-label="${label}"${cls ? ` class="${cls}"` : ''}>${html}</td>`;
}

function percent(part: number, whole: number): string {
  return whole ? `${((100 * part) / whole).toFixed(100 * part < whole ? 2 : 1)}%` : '0%';
}

/** Issue 20: which devices were announced to the network-access system and the SIEM, and when. */
function announcedSection(list: readonly Announced[], now: number, zone: string): string {
  const rows = list
    .map((a) => `<tr data-device="${esc(a.device)}" data-list="${esc(a.list)}">${td('device', esc(a.hostname ?? '—'))}${td('MAC or address', `<code>${esc(a.device)}</code>`)}` +
      `${td('list', esc(a.list))}${td('attempts', String(a.count), 'n')}<td data-label="announced" class="nw" title="${esc(new Date(a.at).toISOString())}">${esc(localTime(a.at, zone))}</td>` +
      `${td('next possible', esc(a.until > now ? `in ${timeLeft(a.until - now)}` : 'now'), 'nw')}${td('times', String(a.times), 'n')}${td('by', `<code>${esc(a.instance)}</code>`)}</tr>`)
    .join('');
  return `<h2>Devices announced to the network-access system</h2>
<p class="muted" id="announced-summary">The latest ${list.length} announcement(s), newest first (one per device and list per cooldown; see docs/events.md).</p>
<table id="announced" class="cards"><thead><tr><th>device</th><th>MAC or address</th><th>list</th><th>attempts</th><th>announced</th><th>next possible</th><th>times</th><th>by</th></tr></thead>
<tbody>
${rows || '<tr><td colspan="8">none yet</td></tr>'}
</tbody></table>
`;
}

export function renderPage(d: PageData): string {
  const r = d.report;
  const zone = d.timeZone;
  const devices = r.clients
    .slice(0, PAGE_DEVICES)
    .map(
      (c) =>
        `<tr data-mac="${esc(c.mac ?? '')}" data-client="${esc(c.client)}">${td('device', esc(c.hostname ?? '—'))}${td('MAC', `<code>${esc(c.mac ?? '—')}</code>`)}${td('address', `<code>${esc(c.client)}</code>`)}` +
        `${td('blocked', String(c.blocked), 'n')}<td data-label="first seen" class="first" title="${esc(c.firstSeen)}">${esc(ago(d.now, c.firstSeen))}</td><td data-label="last seen" class="last" title="${esc(c.lastSeen)}">${esc(ago(d.now, c.lastSeen))}</td>` +
        `${td('top lists', c.topLists.map((l) => `${esc(l.list)} (${l.count})`).join(', '))}</tr>`,
    )
    .join('\n');
  const active = d.exceptions.filter((e) => e.state === 'active').sort((a, b) => a.endsAt - b.endsAt);
  // Below the active ones, so the record shows what was revoked or lapsed, and when; the latest first.
  const ended = d.exceptions.filter((e) => e.state !== 'active').sort((a, b) => b.endsAt - a.endsAt);
  const revokedN = ended.filter((e) => e.state === 'revoked').length;
  const expiredN = ended.length - revokedN;
  const people = (e: PageException): string =>
    td('clients', e.clients.map((c) => `<code>${esc(c)}</code>`).join(' ')) + td('allows', e.allow.map(esc).join(', ')) + td('approved by', esc(e.approvedBy)) + td('reason', esc(e.reason));
  const exceptions = active
    .map((e) => `<tr data-id="${esc(e.id)}" data-state="active">${td('id', `<code>${esc(e.id)}</code>`, 'nw')}${td('time left', esc(timeLeft(e.endsAt - d.now)), 'left')}${td('expires', esc(e.expires))}${people(e)}</tr>`)
    .join('\n');
  const endedRows = ended
    .map((e) => {
      const what = e.state === 'revoked' ? `revoked ${esc(e.revoked ?? '')} by ${esc(e.revokedBy ?? '')}` : `expired ${esc(e.expires)}`;
      return `<tr data-id="${esc(e.id)}" data-state="${e.state}">${td('id', `<code>${esc(e.id)}</code>`, 'nw')}${td('state', what, 'state')}${td('ended', esc(localTime(e.endsAt, zone)), 'nw')}${people(e)}</tr>`;
    })
    .join('\n');
  const lists = d.policy.lists
    .map((l) => `<tr data-list="${esc(l.name)}"><td>${esc(l.name)}</td><td class="n">${l.rules}</td><td>${l.enforced ? 'enforced' : 'not enforced'}</td></tr>`)
    .join('\n');
  const degraded = d.policy.degraded;
  const status = degraded.length
    ? `<p id="status" class="bad">Degraded</p><ul id="degraded">${degraded.map((x) => `<li>${esc(x)}</li>`).join('')}</ul>`
    : '<p id="status" class="ok">Healthy</p>';
  const sources = d.identity.sources.length
    ? d.identity.sources.map((s) => `${esc(s.format)} <code>${esc(s.file)}</code>: ${s.leases} leases${s.ok ? '' : ' (last read failed)'}`).join('<br>')
    : 'no lease sources configured';
  const rec = d.recent;
  // "the last hour" once the server has run that long; until then, since it started.
  const span = !rec ? '' : rec.ms >= 59 * 60_000 ? 'the last hour' : `the ${timeLeft(rec.ms)} since the server started`;
  const perMin = (n: number): string => (rec && rec.ms >= 60_000 ? ` (${(n / (rec.ms / 60_000)).toFixed(1)}/min)` : '');
  const traffic = rec
    ? `<p id="rates">Over ${esc(span)}: <strong id="recent-queries">${rec.queries}</strong> queries${perMin(rec.queries)}, <strong id="recent-blocked">${rec.blocked}</strong> blocked${perMin(rec.blocked)}, ${percent(rec.blocked, rec.queries)} of queries.</p>`
    : '<p id="rates">No traffic counted yet.</p>';
  const STATE: Readonly<Record<UpstreamHealth['state'], string>> = { up: 'up', failing: 'failing', down: 'down: tried last' };
  const upstreams = d.upstreams
    .map(
      (u) =>
        `<tr data-upstream="${esc(u.label)}" data-state="${u.state}">${td('upstream', `<code>${esc(u.label)}</code>`)}${td('state', STATE[u.state], `state ${u.state === 'up' ? 'ok' : 'bad'}`)}` +
        `${td('failures in a row', String(u.failuresInRow), 'n')}${td('last failure', u.lastFailure === undefined ? '—' : esc(ago(d.now, new Date(u.lastFailure).toISOString())))}` +
        `${td('failed, last hour', String(u.failed), 'n failed')}${td('answered, last hour', String(u.ok), 'n')}</tr>`,
    )
    .join('\n');
  const down = d.upstreams.filter((u) => u.state !== 'up').length;
  const chartHours = Math.min(CHART_HOURS, r.hourly.length);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30">
<title>sinkhole</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:72em}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.1em;margin-top:1.6em}h3{font-size:1em;margin-top:1.2em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd;vertical-align:top}
th{font-weight:600;background:#f4f4f4}td{overflow-wrap:break-word}
td.n{text-align:right}td.nw{white-space:nowrap}.ok{color:#176b2c;font-weight:bold}.bad{color:#a11;font-weight:bold}
small,.muted{color:#666}code{font-size:.95em}
#glance{font-size:1.05em;padding:.5em .8em;background:#f6f6f6;border-left:4px solid #176b2c}#glance.bad{border-left-color:#a11;color:inherit;font-weight:normal}
figure{margin:.6em 0}#hourly{display:block;width:100%;max-width:40em;height:auto}
svg rect{fill:#a11}svg .grid{stroke:#e2e2e2}svg .axis{stroke:#888}svg text{font-size:12px;fill:#555}
figcaption{color:#444;font-size:.95em}.key{display:inline-block;width:.8em;height:.8em;background:#a11;vertical-align:-.05em;margin-right:.3em}
#ended tr{color:#555}
@media (max-width:40em){
body{margin:.8em}
table.cards thead{display:none}
table.cards tr{display:block;padding:.4em 0;border-bottom:1px solid #ccc}
table.cards td{display:block;border:0;padding:.05em 0;overflow-wrap:anywhere}
table.cards td::before{content:attr(data-label);display:inline-block;width:10em;color:#666;font-weight:normal}
#hourly text{font-size:16px}#hourly .minor{display:none}
table.cards td.n{text-align:left}table.cards td.nw{white-space:normal}
}
</style></head>
<body>
<h1>sinkhole</h1>
<p class="muted" id="clock">version ${esc(d.version)} · <time datetime="${esc(new Date(d.now).toISOString())}">${esc(localTime(d.now, zone))}</time> · times in <strong id="tz">${esc(zone)}</strong>, the server's time zone</p>
<p id="glance" class="${degraded.length || down ? 'bad' : ''}">${degraded.length ? '<strong class="bad">Degraded</strong>' : '<strong class="ok">Healthy</strong>'} · ${r.clients.length} device(s) still trying · ${active.length} active exception(s) · upstreams: ${d.upstreams.length - down} of ${d.upstreams.length} up</p>

<h2>Devices still trying to reach TikTok</h2>
<p class="muted">Over the last ${esc(timeLeft(r.windowSeconds * 1000))}, from ${esc(r.source)}${r.instances > 1 ? ` (${r.instances} instances)` : ''}: ${r.clients.length} device(s).</p>
<figure>
${chart(r.hourly, zone)}
<figcaption id="hourly-caption"><span class="key"></span><strong>Blocked attempts per hour</strong> (queries for a blocked name, from every device), the last ${chartHours} hours, oldest on the left; hours in ${esc(zone)}.</figcaption>
</figure>
<table id="devices" class="cards"><thead><tr><th>device</th><th>MAC</th><th>address</th><th>blocked</th><th>first seen</th><th>last seen</th><th>top lists</th></tr></thead>
<tbody>
${devices || '<tr><td colspan="7">none</td></tr>'}
</tbody></table>
${r.clients.length > PAGE_DEVICES ? `<p class="muted" id="more">The ${PAGE_DEVICES} most active of ${r.clients.length} are shown; every device: <code>sinkhole report</code> or <code>/api/blocked-clients</code>.</p>` : ''}
${d.announced ? announcedSection(d.announced, d.now, zone) : ''}
<h2>Exceptions</h2>
<p class="muted" id="exceptions-summary">${active.length} active, expiring soonest first${ended.length ? `; ${revokedN} revoked and ${expiredN} expired on record, below` : ''}.</p>
<table id="exceptions" class="cards"><thead><tr><th>id</th><th>time left</th><th>expires</th><th>clients</th><th>allows</th><th>approved by</th><th>reason</th></tr></thead>
<tbody>
${exceptions || '<tr><td colspan="7">none</td></tr>'}
</tbody></table>
${ended.length ? `<h3>Revoked and expired</h3>
<table id="ended" class="cards"><thead><tr><th>id</th><th>state</th><th>ended</th><th>clients</th><th>allowed</th><th>approved by</th><th>reason</th></tr></thead>
<tbody>
${endedRows}
</tbody></table>` : ''}

<h2>Traffic and upstreams</h2>
${traffic}
<table id="upstreams" class="cards"><thead><tr><th>upstream</th><th>state</th><th>failures in a row</th><th>last failure</th><th>failed, last hour</th><th>answered, last hour</th></tr></thead>
<tbody>
${upstreams || '<tr><td colspan="6">none configured</td></tr>'}
</tbody></table>

<h2>Policy in force</h2>
${status}
<p>Generation <strong id="generation">${d.policy.generation}</strong>. Identity: ${d.identity.devices} address(es) mapped to devices.<br><small>${sources}</small></p>
<table id="lists"><thead><tr><th>list</th><th>rules</th><th></th></tr></thead>
<tbody>
${lists}
</tbody></table>
</body></html>
`;
}
