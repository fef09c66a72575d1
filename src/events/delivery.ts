// At-least-once delivery to one sink: every event goes into the sink's spool
// first (spool.ts, on disk), and leaves it only when the sink took it. One
// event in flight at a time, in order. A failure is counted, logged once per
// outage (SH_EVENT_SINK), and retried after a backoff doubling from 0.5 s to
// 30 s; the spool's bound is what bounds the retries. All of this runs on the
// main thread's event loop, never on a query thread's, so a slow or dead
// sink costs DNS nothing.
import type { Logger } from '../log.js';
import type { ComplianceEvent } from './event.js';
import type { Spool } from './spool.js';

export interface Sink {
  /** For metrics and logs: the kind and address, from the config (bounded). */
  readonly label: string;
  /** Resolves when the receiver has the event; rejects otherwise. */
  send(e: ComplianceEvent): Promise<void>;
  close(): void;
}

export interface SinkCounts {
  sink: string;
  sent: number;
  failed: number;
  spooled: number;
  dropped: number;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const CLOSE_GRACE_MS = 3000;

export class Delivery {
  sent = 0;
  failed = 0;
  private failures = 0;
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly sink: Sink,
    readonly spool: Spool,
    private readonly log: Logger,
  ) {}

  counts(): SinkCounts {
    return { sink: this.sink.label, sent: this.sent, failed: this.failed, spooled: this.spool.size, dropped: this.spool.dropped };
  }

  enqueue(e: ComplianceEvent): void {
    this.spool.push(e);
    if (!this.timer) this.kick();
  }

  /** Sends what is spooled now (also cuts a backoff short: tests, and a restart's leftovers). */
  kick(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed) return Promise.resolve();
    this.running ??= this.run().finally(() => {
      this.running = undefined;
      // An event enqueued while the loop was ending would otherwise wait for the next one.
      if (!this.timer && !this.closed && this.spool.size) void this.kick();
    });
    return this.running;
  }

  private async run(): Promise<void> {
    for (let e = this.spool.peek(); e && !this.closed; e = this.spool.peek()) {
      try {
        await this.sink.send(e);
      } catch (err) {
        this.failed++;
        if (this.failures++ === 0) {
          this.log.warn('SH_EVENT_SINK', 'compliance-event sink failing; events wait in the spool and are retried', {
            sink: this.sink.label, error: (err as Error).message ?? String(err), spooled: this.spool.size,
          });
        }
        const wait = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.min(this.failures - 1, 10));
        if (!this.closed) {
          this.timer = setTimeout(() => void this.kick(), wait);
          this.timer.unref();
        }
        return;
      }
      this.sent++;
      // The head is still this event unless the spool overflowed meanwhile and dropped it.
      if (this.spool.peek() === e) this.spool.shift();
      if (this.failures > 0) this.log.info('compliance-event sink reachable again', { sink: this.sink.label, spooled: this.spool.size });
      this.failures = 0;
    }
  }

  /** A clean stop: the event in flight gets a short grace, the spool is written, the sink closed. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.running) await Promise.race([this.running, new Promise((r) => setTimeout(r, CLOSE_GRACE_MS).unref())]);
    await this.spool.close();
    this.sink.close();
  }
}
