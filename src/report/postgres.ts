// The shared report store (report.store: postgres://...), so two or more
// sinkholes keep one compliance record. Blocked-query events arrive from the
// report's drain (never from the query path), wait in a bounded spool, and
// are inserted in batches by a timer. When the database is down the spool
// holds them (past its bound the oldest are dropped and counted) and the
// next successful insert replays them; attempts back off, so a dead database
// costs one failed connect every few seconds and never a DNS answer.
// Events older than report.retention are deleted.
import pg from 'pg';
import type { Logger } from '../log.js';
import { mapInSlices } from '../slices.js';
import { hourly, reportRow, type BlockedEvent, type EventSink, type ReportRow, type ReportSnapshot } from './report.js';

/** Events kept while the database is unreachable (~100 bytes each). */
export const SPOOL_MAX = 200_000;
const BATCH = 5000;
const FLUSH_EVERY_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
const PRUNE_EVERY_MS = 10 * 60_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sinkhole_blocked (
  at        timestamptz NOT NULL,
  instance  text NOT NULL,
  client    text NOT NULL,
  mac       text,
  hostname  text,
  list      text NOT NULL
);
CREATE INDEX IF NOT EXISTS sinkhole_blocked_at ON sinkhole_blocked (at);
CREATE INDEX IF NOT EXISTS sinkhole_blocked_device ON sinkhole_blocked ((coalesce(mac, client)), at);`;

export interface PostgresOptions {
  url: string;
  instance: string;
  windowMs: number;
  retentionMs: number;
  now: () => number;
}

export class PostgresStore implements EventSink {
  private readonly pool: pg.Pool;
  private spool: BlockedEvent[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private schemaReady = false;
  private failures = 0;
  private nextAttempt = 0;
  private lastPrune = 0;
  /** Whether the last exchange with the database succeeded. */
  up = false;
  inserted = 0;
  dropped = 0;

  constructor(
    private opts: PostgresOptions,
    private readonly log: Logger,
  ) {
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: 2,
      connectionTimeoutMillis: 3000,
      idleTimeoutMillis: 10_000,
      query_timeout: 10_000,
      application_name: `sinkhole ${opts.instance}`,
    });
    // An idle connection that the server drops (restart, network) emits here; unhandled, it would end the process.
    this.pool.on('error', (e) => this.failed(e));
  }

  configure(o: Pick<PostgresOptions, 'windowMs' | 'retentionMs'>): void {
    this.opts = { ...this.opts, ...o };
  }

  get spooled(): number {
    return this.spool.length - this.head;
  }

  push(e: BlockedEvent): void {
    if (this.spooled >= SPOOL_MAX) {
      this.head++; // the oldest goes: the newest attempts are the ones an admin acts on
      this.dropped++;
    }
    this.spool.push(e);
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), FLUSH_EVERY_MS);
    this.timer.unref();
    void this.flush();
  }

  /**
   * One round: insert what is spooled (in batches) and prune old events; never throws. A forced
   * flush (a read, a stop) covers what is spooled when it is called: a round in flight may be past
   * its inserts (pruning, say), so it gets a round of its own after that one, unless that one found
   * the database down (a read during an outage must not wait for a second failed connect).
   */
  flush(force = false): Promise<void> {
    if (this.flushing) {
      if (!force || this.spooled === 0) return this.flushing;
      return this.flushing.then(() => (this.up ? this.flush(true) : undefined));
    }
    if (!force && this.opts.now() < this.nextAttempt) return Promise.resolve();
    this.flushing = this.round().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async round(): Promise<void> {
    try {
      await this.ensureSchema();
      while (this.spooled > 0) {
        const batch = this.spool.slice(this.head, this.head + BATCH);
        await this.insert(batch);
        this.head += batch.length;
        this.inserted += batch.length;
        if (this.head > 65_536 || this.head === this.spool.length) {
          this.spool = this.spool.slice(this.head);
          this.head = 0;
        }
      }
      const now = this.opts.now();
      if (now - this.lastPrune > PRUNE_EVERY_MS) {
        await this.pool.query('DELETE FROM sinkhole_blocked WHERE at < to_timestamp($1::float8 / 1000)', [now - this.opts.retentionMs]);
        this.lastPrune = now;
      }
      if (!this.up) this.log.info('report store reachable', { store: 'postgres', spooled: this.spooled });
      this.up = true;
      this.failures = 0;
      this.nextAttempt = 0;
    } catch (e) {
      this.failed(e);
    }
  }

  private failed(e: unknown): void {
    if (this.up || this.failures === 0) {
      this.log.error('SH_REPORT_STORE', 'PostgreSQL report store unreachable; spooling events', { error: (e as Error).message ?? String(e), spooled: this.spooled });
    }
    this.up = false;
    this.failures++;
    this.nextAttempt = this.opts.now() + Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures, 6));
  }

  private async ensureSchema(): Promise<void> {
    if (this.schemaReady) return;
    await createSchema(this.pool, SCHEMA);
    this.schemaReady = true;
  }

  private async insert(batch: readonly BlockedEvent[]): Promise<void> {
    const at: number[] = [];
    const client: string[] = [];
    const mac: (string | null)[] = [];
    const host: (string | null)[] = [];
    const list: string[] = [];
    for (const e of batch) {
      at.push(e.at);
      client.push(e.client);
      mac.push(e.mac || null);
      host.push(e.hostname || null);
      list.push(e.list);
    }
    await this.pool.query(
      `INSERT INTO sinkhole_blocked (at, instance, client, mac, hostname, list)
       SELECT to_timestamp(t / 1000), $2, c, m, h, l
       FROM unnest($1::float8[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(t, c, m, h, l)`,
      [at, this.opts.instance, client, mac, host, list],
    );
  }

  /** The report over every instance's events in the window. Throws when the database cannot answer. */
  async read(maxClients: number): Promise<ReportSnapshot> {
    await this.ensureSchema();
    const now = this.opts.now();
    const since = now - this.opts.windowMs;
    const where = 'WHERE at >= to_timestamp($1::float8 / 1000)';
    const [devices, lists, hours, instances] = await Promise.all([
      this.pool.query<{ key: string; client: string; mac: string | null; hostname: string | null; n: string; first: number; last: number }>(
        `SELECT coalesce(mac, client) AS key,
                (array_agg(client ORDER BY at DESC))[1] AS client,
                max(mac) AS mac,
                (array_agg(hostname ORDER BY at DESC) FILTER (WHERE hostname IS NOT NULL))[1] AS hostname,
                count(*) AS n,
                extract(epoch FROM min(at)) * 1000 AS first,
                extract(epoch FROM max(at)) * 1000 AS last
         FROM sinkhole_blocked ${where} GROUP BY 1 ORDER BY n DESC, last DESC LIMIT $2`,
        [since, maxClients],
      ),
      this.pool.query<{ key: string; list: string; n: string }>(
        `SELECT coalesce(mac, client) AS key, list, count(*) AS n FROM sinkhole_blocked ${where} GROUP BY 1, 2`,
        [since],
      ),
      this.pool.query<{ h: number; n: string }>(
        `SELECT floor(extract(epoch FROM at) / 3600) * 3600000 AS h, count(*) AS n FROM sinkhole_blocked ${where} GROUP BY 1`,
        [since],
      ),
      this.pool.query<{ n: string }>(`SELECT count(DISTINCT instance) AS n FROM sinkhole_blocked ${where}`, [since]),
    ]);
    const byKey = new Map<string, [string, number][]>();
    for (const r of lists.rows) {
      const l = byKey.get(r.key) ?? [];
      l.push([r.list, Number(r.n)]);
      byKey.set(r.key, l);
    }
    const clients: ReportRow[] = await mapInSlices(devices.rows, (r) =>
      reportRow(r.client, r.mac ?? '', r.hostname ?? '', Number(r.n), Number(r.first), Number(r.last), byKey.get(r.key) ?? []),
    );
    this.up = true;
    return {
      windowSeconds: this.opts.windowMs / 1000,
      source: 'postgres',
      instances: Number(instances.rows[0]?.n ?? 0),
      clients,
      hourly: hourly(new Map(hours.rows.map((r) => [Number(r.h), Number(r.n)])), now, this.opts.windowMs),
    };
  }

  /** A clean stop: one last attempt to insert the spool (bounded in time), then the pool closes. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.race([this.flush(true), new Promise((r) => setTimeout(r, 3000).unref())]);
    if (this.spooled) this.log.warn('SH_REPORT_STORE', 'stopping with events not yet in PostgreSQL', { spooled: this.spooled });
    await this.pool.end().catch(() => {});
  }
}

/**
 * Runs a schema's CREATE … IF NOT EXISTS under one advisory lock, so that instances starting together
 * (the report store, the events arbiter) create it once and the others wait, rather than race.
 */
export async function createSchema(pool: pg.Pool, schema: string): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock(715011)');
    await c.query(schema);
    await c.query('COMMIT');
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}
