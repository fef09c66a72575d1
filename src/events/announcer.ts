// The compliance events (issue 20 §1), assembled: the report's drain hands
// every blocked query here (main thread, off the query path); the tracker
// decides when a device is announced; the arbiter decides which instance
// sends it (PostgreSQL, or this one alone); each sink gets it through its own
// spool and delivery loop. Nothing here runs on a query thread.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { EventsConfig } from '../config/config.js';
import type { Logger } from '../log.js';
import type { BlockedEvent, EventSink } from '../report/report.js';
import type { Announced, Arbiter } from './arbiter.js';
import { Delivery, type Sink, type SinkCounts } from './delivery.js';
import { eventId, type ComplianceEvent } from './event.js';
import { Spool } from './spool.js';
import { SyslogSink } from './syslog.js';
import { EventTracker, type Trigger } from './tracker.js';
import { WebhookSink } from './webhook.js';

const TICK_MS = 1000;

export interface AnnouncerOptions {
  config: EventsConfig;
  stateDir: string;
  /** host:port, as the report store names instances. */
  instance: string;
  policy: () => string;
  now: () => number;
  log: Logger;
  arbiter: Arbiter;
  /** Tests replace the sinks the config names. */
  sinks?: Sink[];
}

export interface EventCounts {
  tracked: number;
  /** Attempts not tracked: maxTracked pairs were already tracked. */
  untracked: number;
  announced: number;
  /** Announcements another instance had already made (PostgreSQL arbitration). */
  suppressed: number;
  sinks: SinkCounts[];
}

/** The spool file of a sink: named by a hash of its label, so a changed address never mixes spools. */
export function spoolFile(stateDir: string, label: string): string {
  return join(stateDir, 'events', `${label.replace(/[^A-Za-z0-9.-]+/g, '_').slice(0, 60)}-${createHash('sha256').update(label).digest('hex').slice(0, 12)}.jsonl`);
}

export class Announcer implements EventSink {
  readonly tracker: EventTracker;
  readonly deliveries: Delivery[];
  private readonly timer: NodeJS.Timeout;
  private pending = new Set<Promise<void>>();
  announced = 0;
  suppressed = 0;

  constructor(private readonly opts: AnnouncerOptions) {
    this.tracker = new EventTracker(opts.config);
    const sinks = opts.sinks ?? [...opts.config.syslog.map((c) => new SyslogSink(c)), ...opts.config.webhook.map((c) => new WebhookSink(c, opts.now))];
    this.deliveries = sinks.map((s) => {
      const spool = new Spool(spoolFile(opts.stateDir, s.label), opts.config.spool, opts.log, s.label);
      const left = spool.load();
      if (left) opts.log.info('compliance events left undelivered by the last run; sending them', { sink: s.label, spooled: left });
      return new Delivery(s, spool, opts.log);
    });
    for (const d of this.deliveries) if (d.spool.size) void d.kick();
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  configure(config: EventsConfig): void {
    this.tracker.configure(config);
  }

  /** A blocked query, from the report's drain. */
  push(e: BlockedEvent): void {
    const t = this.tracker.record({ at: e.at, client: e.client, mac: e.mac, hostname: e.hostname, list: e.list, name: e.name ?? '' });
    if (t) this.announce(t);
  }

  /** Ends the cooldowns due now (every second; tests call it after moving their clock). */
  tick(): void {
    for (const t of this.tracker.tick(this.opts.now())) this.announce(t);
  }

  /** Resolves when every announcement decided so far has been arbitrated and spooled (tests). */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }

  /** Sends every spool now, without waiting for a backoff (tests). */
  async retryNow(): Promise<void> {
    await Promise.all(this.deliveries.map((d) => d.kick()));
  }

  recent(limit: number): Promise<Announced[]> {
    return this.opts.arbiter.recent(limit);
  }

  counts(): EventCounts {
    return {
      tracked: this.tracker.tracked, untracked: this.tracker.dropped, announced: this.announced, suppressed: this.suppressed,
      sinks: this.deliveries.map((d) => d.counts()),
    };
  }

  private announce(t: Trigger): void {
    const e: ComplianceEvent = {
      id: eventId(t.device, t.list, t.at), device: t.device, mac: t.mac || null, client: t.client, hostname: t.hostname || null, list: t.list,
      count: t.count, start: t.start, end: t.end, name: t.name, policy: this.opts.policy(), at: t.at, instance: this.opts.instance,
    };
    const p = this.opts.arbiter.claim(e, t.until).then((mine) => {
      if (!mine) {
        this.suppressed++;
        return;
      }
      this.announced++;
      this.opts.log.info('device announced', { device: e.device, list: e.list, count: e.count, hostname: e.hostname ?? undefined, id: e.id });
      for (const d of this.deliveries) d.enqueue(e);
    });
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.race([this.settled(), new Promise((r) => setTimeout(r, 3000).unref())]);
    await Promise.all(this.deliveries.map((d) => d.close()));
    await this.opts.arbiter.close();
  }
}
