// sinkhole exceptions: every approved exception, its state (active, expired, revoked), who approved it,
// why, and when it lapses (docs/exceptions.md).
import { isDateOnly, stateOf, type Exception } from '../policy/exceptions.js';
import { shortPath } from './output.js';
import { policyInForce, printNote } from './policyInForce.js';

/**
 * "2026-12-31, end of day in Pacific/Auckland (2026-12-31T11:00:00.000Z)": a
 * date alone is read in a zone, and which one decides the instant.
 */
export function expiryText(e: Exception): string {
  if (!isDateOnly(e.expires)) return e.expires;
  const zone = e.timezoneFrom === 'server' ? `${e.timezone}, the server's zone` : e.timezone;
  return `${e.expires}, end of day in ${zone} (${new Date(e.expiresAt).toISOString()})`;
}

export function exceptionJson(e: Exception, now: number): Record<string, unknown> {
  return {
    id: e.id, state: stateOf(e, now), approvedBy: e.approvedBy, reason: e.reason, expires: e.expires, expiresAt: new Date(e.expiresAt).toISOString(),
    timezone: e.timezone, timezoneFrom: e.timezoneFrom, revoked: e.revoked ?? null, revokedBy: e.revokedBy ?? null,
  };
}

export function listExceptions(configFile: string, json: boolean): number {
  const { g, note } = policyInForce(configFile);
  printNote(note, json);
  const now = Date.now();
  const rows = g.exceptions.map((e) => ({
    ...exceptionJson(e, now),
    state: stateOf(e, now),
    secondsLeft: Math.max(0, Math.floor((e.endsAt - now) / 1000)),
    clients: e.clients,
    allow: [...e.allowLists, ...e.allowDomains],
    source: `${shortPath(e.source.file)}:${e.source.line}`,
    text: expiryText(e),
    e,
  }));
  if (json) {
    process.stdout.write(`${JSON.stringify(rows.map(({ text: _t, e: _e, ...r }) => r))}\n`);
    return 0;
  }
  if (!rows.length) process.stdout.write('no exceptions on record\n');
  for (const r of rows) {
    const left = r.state === 'active' ? `${humanDuration(r.secondsLeft)} left` : r.state;
    process.stdout.write(`${r.e.id}  ${r.state}  expires ${r.text} (${left})  clients ${r.clients.join(',')}  allow ${r.allow.join(',')}\n`);
    process.stdout.write(`    approved by ${r.e.approvedBy}: ${r.e.reason}\n`);
    if (r.e.revoked !== undefined) process.stdout.write(`    revoked ${r.e.revoked} by ${r.e.revokedBy}\n`);
  }
  return 0;
}

export function humanDuration(s: number): string {
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 60)}m ${s % 60}s`;
}
