// One compliance event: a device that kept asking for names on an enforced
// list, announced so that the network-access system (PacketFence, FortiNAC,
// ISE through a SIEM) can act on it. The same record feeds every sink: CEF
// over syslog (cef.ts, syslog.ts) and JSON over HTTPS (webhook.ts).
import { createHash } from 'node:crypto';

export interface ComplianceEvent {
  /**
   * Stable per event: the same on every retry and after a restart (it is spooled with the event),
   * so a receiver de-duplicates at-least-once delivery on it (webhook Idempotency-Key, CEF externalId).
   */
  id: string;
  /** The device: its MAC when identity knows it, else its address. */
  device: string;
  mac: string | null;
  /** The address it last asked from. */
  client: string;
  hostname: string | null;
  list: string;
  /** Blocked queries for this list counted in this event: threshold crossing, or those during the cooldown. */
  count: number;
  /** First and last of those queries (ms since the epoch). */
  start: number;
  end: number;
  /** The last name it asked for. */
  name: string;
  /** The policy hash in force (policy/fingerprint.ts): which rules judged it. */
  policy: string;
  /** When this instance decided to announce it (ms). */
  at: number;
  /** host:port of the instance that announced it. */
  instance: string;
}

/** The event's id: derived from what makes it unique (device, list, the instant it was announced). */
export function eventId(device: string, list: string, at: number): string {
  const h = createHash('sha256').update(`${device}\0${list}\0${at}`).digest('hex');
  // Shaped like a UUID, so receivers that store idempotency keys in a uuid column take it.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Whether a value read back from the spool file is an event (the file may be damaged or old). */
export function isEvent(x: unknown): x is ComplianceEvent {
  const e = x as ComplianceEvent;
  return !!e && typeof e.id === 'string' && typeof e.device === 'string' && typeof e.list === 'string' && typeof e.count === 'number'
    && typeof e.start === 'number' && typeof e.end === 'number' && typeof e.at === 'number' && typeof e.client === 'string';
}

/** The JSON body the webhook posts: times as ISO 8601, names spelt out. */
export function eventJson(e: ComplianceEvent): Record<string, unknown> {
  return {
    id: e.id, type: 'sinkhole.device.trying', action: 'blocked', device: e.device, mac: e.mac, client: e.client, hostname: e.hostname,
    list: e.list, count: e.count, start: new Date(e.start).toISOString(), end: new Date(e.end).toISOString(), lastName: e.name,
    policy: e.policy, announcedAt: new Date(e.at).toISOString(), instance: e.instance,
  };
}
