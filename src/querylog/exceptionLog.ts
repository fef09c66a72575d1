// The server's own log lines about exceptions (the operational log, beside the audit trail, which keeps
// the old and new record): one line per grant, change, renewal, revocation, removal and lapse, and the
// warnings `validate` prints for records that are valid but probably not meant.
import { formatProblem } from '../errors.js';
import type { Logger } from '../log.js';
import type { ExceptionEvent, ExceptionEventKind } from '../policy/exceptionEvents.js';
import { stateOf } from '../policy/exceptions.js';
import type { Generation } from '../policy/generation.js';
import { exceptionWarnings } from '../policy/warnings.js';

const PAST: Record<ExceptionEventKind, string> = {
  loaded: 'loaded', grant: 'granted', change: 'changed', renew: 'renewed', revoke: 'revoked', remove: 'removed', lapse: 'lapsed',
};

/** One operational log line per exception event, with the record as it now stands (the audit trail has old and new). */
export function logExceptions(log: Logger, events: readonly ExceptionEvent[], g: Generation, now: number): void {
  const byId = new Map(g.exceptions.map((e) => [e.id, e]));
  for (const ev of events) {
    const e = byId.get(ev.exception);
    if (!e || ev.event === 'remove') {
      log.info(`exception ${PAST[ev.event]}`, { id: ev.exception });
      continue;
    }
    log.info(`exception ${PAST[ev.event]}`, {
      id: e.id, state: stateOf(e, now), expires: e.expires, timezone: e.timezone, clients: e.clients.join(','),
      allow: [...e.allowLists, ...e.allowDomains].join(','), approvedBy: e.approvedBy, reason: e.reason,
      ...(e.revoked !== undefined ? { revoked: e.revoked, revokedBy: e.revokedBy } : {}),
    });
  }
}

/** Valid but probably unmeant (validate prints the same): logged, never refused. */
export function logWarnings(log: Logger, g: Generation, now: number): void {
  for (const w of exceptionWarnings(g, now)) log.warn(w.code, formatProblem(w));
}
