// The audit trail of the exception records themselves: who was let through,
// from when, until when, and who said so. Computed from the difference
// between two policy generations (a reload), with the old and the new values,
// and from the clock for lapses. Pure functions; app.ts writes the events to
// log.audit beside the per-query "use" lines.
import { isDateOnly, type Exception } from './exceptions.js';

export type ExceptionEventKind = 'loaded' | 'grant' | 'change' | 'renew' | 'revoke' | 'remove' | 'lapse';

/** A record as the audit trail shows it: what an approver signed, in plain values. */
export interface RecordView {
  clients: string[];
  allow: string[];
  reason: string;
  approvedBy: string;
  expires: string;
  /** The instant the expiry means (a date alone is read in `timezone`). */
  expiresAt: string;
  timezone: string;
  revoked?: string;
  revokedBy?: string;
}

export interface ExceptionEvent {
  event: ExceptionEventKind;
  exception: string;
  /** For change, renew and revoke: the fields that changed, as they were and as they are. */
  old?: Partial<RecordView>;
  new?: Partial<RecordView>;
  /** file:line of the record (for remove: where it was). */
  source: string;
}

export function viewOf(e: Exception): RecordView {
  return {
    clients: [...e.clients],
    allow: [...e.allowLists, ...e.allowDomains],
    reason: e.reason,
    approvedBy: e.approvedBy,
    expires: e.expires,
    expiresAt: new Date(e.expiresAt).toISOString(),
    timezone: e.timezone,
    ...(e.revoked !== undefined ? { revoked: e.revoked, revokedBy: e.revokedBy } : {}),
  };
}

function source(e: Exception): string {
  return `${e.source.file}:${e.source.line}`;
}

/** The zone matters only to a date written without a time; otherwise it is not part of the record's meaning. */
function meaningful(v: RecordView, e: Exception): Partial<RecordView> {
  const dateOnly = isDateOnly(e.expires) || (e.revoked !== undefined && isDateOnly(e.revoked));
  if (dateOnly) return v;
  const { timezone: _zone, ...rest } = v;
  return rest;
}

/** One "loaded" event per record: the state the trail starts from when sinkhole starts. */
export function loadedEvents(exceptions: readonly Exception[]): ExceptionEvent[] {
  return exceptions.map((e) => ({ event: 'loaded', exception: e.id, new: viewOf(e), source: source(e) }));
}

/**
 * What changed between two generations' records:
 * - grant: a new id;
 * - revoke: `revoked` was set;
 * - renew: only the expiry changed (its zone included), and it now ends later;
 * - change: anything else (clients, allow, reason, approver, an earlier expiry, a revoke taken back);
 * - remove: the record was deleted.
 */
export function diffExceptions(previous: readonly Exception[], next: readonly Exception[]): ExceptionEvent[] {
  const before = new Map(previous.map((e) => [e.id, e]));
  const events: ExceptionEvent[] = [];
  for (const e of next) {
    const old = before.get(e.id);
    before.delete(e.id);
    if (!old) {
      events.push({ event: 'grant', exception: e.id, new: viewOf(e), source: source(e) });
      continue;
    }
    const a = meaningful(viewOf(old), old) as Record<string, unknown>;
    const b = meaningful(viewOf(e), e) as Record<string, unknown>;
    const changed = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
    if (!changed.length) continue;
    const pick = (v: Record<string, unknown>): Partial<RecordView> => Object.fromEntries(changed.map((k) => [k, v[k] ?? null]));
    const expiryOnly = changed.every((k) => k === 'expires' || k === 'expiresAt' || k === 'timezone');
    const event: ExceptionEventKind =
      e.revoked !== undefined && old.revoked === undefined ? 'revoke' : expiryOnly && e.expiresAt > old.expiresAt ? 'renew' : 'change';
    events.push({ event, exception: e.id, old: pick(a), new: pick(b), source: source(e) });
  }
  for (const old of before.values()) events.push({ event: 'remove', exception: old.id, old: viewOf(old), source: source(old) });
  return events;
}

/**
 * Exceptions whose expiry fell in (from, to]: they lapsed by the clock. One
 * revoked before its expiry does not lapse (its revoke was the event).
 */
export function lapsedBetween(exceptions: readonly Exception[], from: number, to: number): ExceptionEvent[] {
  return exceptions
    .filter((e) => e.expiresAt > from && e.expiresAt <= to && !(e.revokedAt !== undefined && e.revokedAt < e.expiresAt))
    .map((e) => ({ event: 'lapse', exception: e.id, old: { expires: e.expires, expiresAt: new Date(e.expiresAt).toISOString() }, source: source(e) }));
}

/** The next instant after `now` at which one of these exceptions lapses, if any. */
export function nextLapse(exceptions: readonly Exception[], now: number): number | undefined {
  let next: number | undefined;
  for (const e of exceptions) if (e.expiresAt > now && (next === undefined || e.expiresAt < next)) next = e.expiresAt;
  return next;
}
