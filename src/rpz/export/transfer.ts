// The record streams of the two zone transfers. The server frames them into
// messages (wire.ts pack) and signs each one when the request was signed.
import type { ZoneJournal, ZoneVersion } from './journal.js';
import { serialAfter } from './journal.js';
import { nsRecord, soaRecord, triggerRecord, type ZoneShape } from './wire.js';

/**
 * AXFR (RFC 5936 §2.2): the SOA first, every record of the zone, and the SOA again last; the
 * repeated SOA is how the client knows the transfer is complete.
 */
export function* axfrRecords(z: ZoneShape, v: ZoneVersion): Generator<Buffer> {
  const soa = soaRecord(z, v.serial);
  yield soa;
  yield nsRecord(z);
  for (const name of v.names) yield triggerRecord(z, name);
  yield soa;
}

export type IxfrPlan =
  /** The client is up to date (or ahead): one SOA, the current one (RFC 1995 §2). */
  | { kind: 'current' }
  /** Its serial is in the history: the condensed difference (RFC 1995 §4, §5). */
  | { kind: 'incremental'; added: string[]; removed: string[] }
  /** Its serial is not in the history: the whole zone in AXFR form, which RFC 1995 §4 allows. */
  | { kind: 'full' };

export function planIxfr(journal: ZoneJournal, clientSerial: number): IxfrPlan {
  const current = journal.current.serial;
  if (clientSerial === current || serialAfter(clientSerial, current)) return { kind: 'current' };
  const changes = journal.changesSince(clientSerial);
  return changes ? { kind: 'incremental', ...changes } : { kind: 'full' };
}

/**
 * RFC 1995 §4: the new SOA; then the client's SOA, the records removed, the new SOA and the
 * records added; then the new SOA again to close. Our owners each have one record, `CNAME .`, so a
 * removed name is its one record.
 */
export function* ixfrRecords(z: ZoneShape, v: ZoneVersion, clientSerial: number, plan: Exclude<IxfrPlan, { kind: 'full' | 'current' }>): Generator<Buffer> {
  const soa = soaRecord(z, v.serial);
  yield soa;
  yield soaRecord(z, clientSerial);
  for (const name of plan.removed) yield triggerRecord(z, name);
  yield soa;
  for (const name of plan.added) yield triggerRecord(z, name);
  yield soa;
}
