// Once per cooldown across instances (issue 20 §1). DHCP hands out two
// resolvers, so a device trying through both would be announced by each.
// With report.store: postgres://, the database decides: one row per
// (device, list) in sinkhole_announcements, claimed with
//   INSERT ... ON CONFLICT (device, list) DO UPDATE ... WHERE until <= EXCLUDED.at
//   RETURNING instance
// The upsert locks the row, so of two instances claiming at once the second
// waits, then sees the first one's `until` and updates nothing: no row comes
// back, and it does not send. A cooldown that ended lets the next claim in.
// The instances' clocks must agree (NTP) to within what a cooldown can
// tolerate. When the database cannot answer, an instance announces on its own
// (SH_EVENT_ARBITER): a device may then be announced once per instance,
// never not at all.
import pg from 'pg';
import type { Logger } from '../log.js';
import { createSchema } from '../report/postgres.js';
import type { ComplianceEvent } from './event.js';

/** One announcement as the admin page lists it. */
export interface Announced {
  device: string;
  mac: string | null;
  hostname: string | null;
  client: string;
  list: string;
  count: number;
  at: number;
  until: number;
  instance: string;
  /** How many times this device and list were announced (over all instances, with PostgreSQL). */
  times: number;
}

export interface Arbiter {
  /** True when this instance is the one to send the event. */
  claim(e: ComplianceEvent, until: number): Promise<boolean>;
  /** The latest announcements, newest first. */
  recent(limit: number): Promise<Announced[]>;
  close(): Promise<void>;
}

const KEEP = 200;

/** One instance alone: it always sends; it remembers the latest announcements for the page. */
export class LocalArbiter implements Arbiter {
  private readonly latest = new Map<string, Announced>();

  claim(e: ComplianceEvent, until: number): Promise<boolean> {
    this.remember(e, until);
    return Promise.resolve(true);
  }

  remember(e: ComplianceEvent, until: number): void {
    const key = `${e.device}\0${e.list}`;
    const times = (this.latest.get(key)?.times ?? 0) + 1;
    this.latest.delete(key);
    this.latest.set(key, { device: e.device, mac: e.mac, hostname: e.hostname, client: e.client, list: e.list, count: e.count, at: e.at, until, instance: e.instance, times });
    if (this.latest.size > KEEP) this.latest.delete(this.latest.keys().next().value!);
  }

  recent(limit: number): Promise<Announced[]> {
    return Promise.resolve([...this.latest.values()].reverse().slice(0, limit));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sinkhole_announcements (
  device    text NOT NULL,
  list      text NOT NULL,
  at        timestamptz NOT NULL,
  until     timestamptz NOT NULL,
  instance  text NOT NULL,
  event_id  text NOT NULL,
  mac       text,
  hostname  text,
  client    text NOT NULL,
  count     integer NOT NULL,
  times     integer NOT NULL DEFAULT 1,
  PRIMARY KEY (device, list)
);`;

export class PostgresArbiter implements Arbiter {
  private readonly pool: pg.Pool;
  private schemaReady = false;
  private failing = false;
  private readonly local = new LocalArbiter();

  constructor(url: string, private readonly log: Logger) {
    this.pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 3000, query_timeout: 5000, idleTimeoutMillis: 10_000, application_name: 'sinkhole events' });
    this.pool.on('error', () => {}); // an idle connection the server dropped; the next query reports its own
  }

  async claim(e: ComplianceEvent, until: number): Promise<boolean> {
    try {
      await this.ensureSchema();
      const r = await this.pool.query(
        `INSERT INTO sinkhole_announcements AS a (device, list, at, until, instance, event_id, mac, hostname, client, count)
         VALUES ($1, $2, to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000), $5, $6, $7, $8, $9, $10)
         ON CONFLICT (device, list) DO UPDATE SET at = EXCLUDED.at, until = EXCLUDED.until, instance = EXCLUDED.instance,
           event_id = EXCLUDED.event_id, mac = EXCLUDED.mac, hostname = coalesce(EXCLUDED.hostname, a.hostname), client = EXCLUDED.client,
           count = EXCLUDED.count, times = a.times + 1
         WHERE a.until <= EXCLUDED.at
         RETURNING instance`,
        [e.device, e.list, e.at, until, e.instance, e.id, e.mac, e.hostname, e.client, e.count],
      );
      if (this.failing) this.log.info('announcements table reachable again', {});
      this.failing = false;
      return r.rowCount === 1;
    } catch (err) {
      if (!this.failing) {
        this.log.warn('SH_EVENT_ARBITER', 'PostgreSQL announcements table unreachable; announcing on this instance alone', { error: (err as Error).message ?? String(err) });
      }
      this.failing = true;
      this.local.remember(e, until);
      return true;
    }
  }

  async recent(limit: number): Promise<Announced[]> {
    try {
      await this.ensureSchema();
      const r = await this.pool.query<{ device: string; mac: string | null; hostname: string | null; client: string; list: string; count: number; at: number; until: number; instance: string; times: number }>(
        `SELECT device, mac, hostname, client, list, count, extract(epoch FROM at) * 1000 AS at, extract(epoch FROM until) * 1000 AS until, instance, times
         FROM sinkhole_announcements ORDER BY at DESC LIMIT $1`,
        [limit],
      );
      return r.rows.map((x) => ({ ...x, at: Number(x.at), until: Number(x.until), count: Number(x.count), times: Number(x.times) }));
    } catch {
      return this.local.recent(limit);
    }
  }

  private async ensureSchema(): Promise<void> {
    if (this.schemaReady) return;
    await createSchema(this.pool, SCHEMA);
    this.schemaReady = true;
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => {});
  }
}
