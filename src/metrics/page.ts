// GET / : one server-rendered page for an admin. No script, no font and no
// stylesheet from anywhere: it must work on a closed network and it needs
// no build step. It shows the devices still trying to reach TikTok (with an
// inline-SVG chart of attempts per hour), the exceptions by time left, and
// the policy in force. The browser refreshes it every 30 s by itself.
import type { ReportSnapshot } from '../querylog/report.js';
import type { ExceptionState } from '../policy/exceptions.js';

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
  expiresAt: number;
  expires: string;
  /** When it stops applying: expiry or revocation, whichever comes first. */
  endsAt: number;
  approvedBy: string;
  reason: string;
  /** As written, and who revoked it; set only on a revoked record. */
  revoked?: string;
  revokedBy?: string;
}

export interface PageData {
  now: number;
  version: string;
  report: ReportSnapshot;
  exceptions: PageException[];
  policy: {
    generation: number;
    lists: { name: string; rules: number; enforced: boolean }[];
    /** Why the service is degraded; empty when it is not. */
    degraded: string[];
  };
  identity: { devices: number; sources: { format: string; file: string; leases: number; ok: boolean }[] };
}

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

/** Attempts per hour as bars; each bar has a <title>, so hovering names the hour and the count. */
function chart(hours: ReportSnapshot['hourly']): string {
  const w = 8;
  const h = 60;
  const max = Math.max(1, ...hours.map((x) => x.count));
  const bars = hours
    .map((x, i) => {
      const bh = Math.round((x.count / max) * (h - 2));
      return `<rect x="${i * w}" y="${h - bh}" width="${w - 2}" height="${bh}" data-hour="${esc(x.hour)}" data-count="${x.count}"><title>${esc(x.hour.slice(0, 13))}:00Z ${x.count}</title></rect>`;
    })
    .join('');
  const total = hours.reduce((n, x) => n + x.count, 0);
  return `<svg id="hourly" role="img" aria-label="blocked attempts per hour, ${total} in all" width="${hours.length * w}" height="${h}" viewBox="0 0 ${hours.length * w} ${h}">${bars}</svg>`;
}

export function renderPage(d: PageData): string {
  const r = d.report;
  const devices = r.clients
    .slice(0, PAGE_DEVICES)
    .map(
      (c) =>
        `<tr data-mac="${esc(c.mac ?? '')}" data-client="${esc(c.client)}"><td>${esc(c.hostname ?? '—')}</td><td><code>${esc(c.mac ?? '—')}</code></td><td><code>${esc(c.client)}</code></td>` +
        `<td class="n">${c.blocked}</td><td class="first" title="${esc(c.firstSeen)}">${esc(ago(d.now, c.firstSeen))}</td><td class="last" title="${esc(c.lastSeen)}">${esc(ago(d.now, c.lastSeen))}</td><td>${c.topLists.map((l) => `${esc(l.list)} (${l.count})`).join(', ')}</td></tr>`,
    )
    .join('\n');
  const active = d.exceptions.filter((e) => e.state === 'active').sort((a, b) => a.endsAt - b.endsAt);
  // Below the active ones, so the record shows what was revoked or lapsed, and when; the latest first.
  const ended = d.exceptions.filter((e) => e.state !== 'active').sort((a, b) => b.endsAt - a.endsAt);
  const revokedN = ended.filter((e) => e.state === 'revoked').length;
  const expiredN = ended.length - revokedN;
  const people = (e: PageException): string =>
    `<td>${e.clients.map((c) => `<code>${esc(c)}</code>`).join(' ')}</td><td>${e.allow.map(esc).join(', ')}</td><td>${esc(e.approvedBy)}</td><td>${esc(e.reason)}</td>`;
  const exceptions = active
    .map((e) => `<tr data-id="${esc(e.id)}" data-state="active"><td><code>${esc(e.id)}</code></td><td class="left">${esc(timeLeft(e.endsAt - d.now))}</td><td>${esc(e.expires)}</td>${people(e)}</tr>`)
    .join('\n');
  const endedRows = ended
    .map((e) => {
      const what =
        e.state === 'revoked'
          ? `revoked ${esc(e.revoked ?? '')} by ${esc(e.revokedBy ?? '')}`
          : `expired ${esc(e.expires)}`;
      return `<tr data-id="${esc(e.id)}" data-state="${e.state}"><td><code>${esc(e.id)}</code></td><td class="state">${what}</td><td>${esc(new Date(e.endsAt).toISOString())}</td>${people(e)}</tr>`;
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
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30">
<title>sinkhole</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:72em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd;vertical-align:top}
td.n{text-align:right}.ok{color:#176b2c;font-weight:bold}.bad{color:#a11;font-weight:bold}
svg rect{fill:#a11}small,.muted{color:#666}code{font-size:.95em}
</style></head>
<body>
<h1>sinkhole</h1>
<p class="muted">version ${esc(d.version)} · ${esc(new Date(d.now).toISOString())}</p>

<h2>Devices still trying to reach TikTok</h2>
<p class="muted">Over the last ${esc(timeLeft(r.windowSeconds * 1000))}, from ${esc(r.source)}${r.instances > 1 ? ` (${r.instances} instances)` : ''}: ${r.clients.length} device(s).</p>
${chart(r.hourly)}
<p class="muted"><small>blocked attempts per hour, oldest on the left</small></p>
<table id="devices"><thead><tr><th>device</th><th>MAC</th><th>address</th><th>blocked</th><th>first seen</th><th>last seen</th><th>top lists</th></tr></thead>
<tbody>
${devices || '<tr><td colspan="7">none</td></tr>'}
</tbody></table>
${r.clients.length > PAGE_DEVICES ? `<p class="muted" id="more">The ${PAGE_DEVICES} most active of ${r.clients.length} are shown; every device: <code>sinkhole report</code> or <code>/api/blocked-clients</code>.</p>` : ''}

<h2>Exceptions</h2>
<p class="muted" id="exceptions-summary">${active.length} active, expiring soonest first${ended.length ? `; ${revokedN} revoked and ${expiredN} expired on record, below` : ''}.</p>
<table id="exceptions"><thead><tr><th>id</th><th>time left</th><th>expires</th><th>clients</th><th>allows</th><th>approved by</th><th>reason</th></tr></thead>
<tbody>
${exceptions || '<tr><td colspan="7">none</td></tr>'}
</tbody></table>
${ended.length ? `<h3>Revoked and expired</h3>
<table id="ended"><thead><tr><th>id</th><th>state</th><th>ended</th><th>clients</th><th>allowed</th><th>approved by</th><th>reason</th></tr></thead>
<tbody>
${endedRows}
</tbody></table>` : ''}

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
