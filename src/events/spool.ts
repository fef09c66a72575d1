// Undelivered events for one sink, kept under state.dir/events/ so they
// survive a restart (at-least-once delivery, issue 20 §1). Bounded: past
// `max` the oldest is dropped and counted (the newest are what an operator
// acts on). The file is rewritten whole on each change, durably (a temporary
// file fsynced, renamed, and the folder fsynced: durable.ts's
// helpers), so a crash leaves the old list or the new one. Events are rare
// (one per device and list per cooldown), so a whole rewrite is cheap; the
// writes are coalesced, one in flight at a time.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';
import { replaceDurably } from '../durable.js';
import { isEvent, type ComplianceEvent } from './event.js';

export class Spool {
  private events: ComplianceEvent[] = [];
  /** Each event's line, serialized once: a rewrite joins them (1,000 events at once were 1,000 stringify passes of up to 1,000 events each). */
  private lines: string[] = [];
  private writing: Promise<void> | undefined;
  private dirty = false;
  private failing = false;
  /** Events dropped because the spool was full. */
  dropped = 0;

  constructor(
    readonly file: string,
    private readonly max: number,
    private readonly log: Logger,
    private readonly sink: string,
  ) {}

  /** Reads what a previous run left (synchronously, at start); returns how many events it held. */
  load(): number {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('SH_EVENT_SINK', 'cannot read the event spool; starting empty', { sink: this.sink, file: this.file, error: String(e) });
      return 0;
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        const e: unknown = JSON.parse(line);
        if (isEvent(e)) {
          this.events.push(e);
          this.lines.push(`${line}\n`);
        }
      } catch {
        // a damaged line loses that event, not the others
      }
    }
    while (this.events.length > this.max) {
      this.events.shift();
      this.lines.shift();
      this.dropped++;
    }
    return this.events.length;
  }

  get size(): number {
    return this.events.length;
  }

  peek(): ComplianceEvent | undefined {
    return this.events[0];
  }

  push(e: ComplianceEvent): void {
    if (this.events.length >= this.max) {
      this.events.shift();
      this.lines.shift();
      this.dropped++;
    }
    this.events.push(e);
    this.lines.push(`${JSON.stringify(e)}\n`);
    void this.save();
  }

  /** The head was delivered. */
  shift(): void {
    this.events.shift();
    this.lines.shift();
    void this.save();
  }

  /** Writes the spool as it is now (coalesced); never rejects. */
  save(): Promise<void> {
    this.dirty = true;
    if (this.writing) return this.writing;
    this.writing = (async () => {
      while (this.dirty) {
        this.dirty = false;
        const text = this.lines.join('');
        try {
          await replaceDurably(this.file, text);
          if (this.failing) this.log.info('event spool written again', { sink: this.sink, file: this.file });
          this.failing = false;
        } catch (e) {
          // Delivery goes on from memory; only surviving a restart is at stake.
          if (!this.failing) this.log.warn('SH_EVENT_SINK', 'cannot write the event spool; undelivered events will not survive a restart', { sink: this.sink, file: this.file, error: String(e) });
          this.failing = true;
          break;
        }
      }
    })().finally(() => (this.writing = undefined));
    return this.writing;
  }

  async close(): Promise<void> {
    await this.writing;
    if (this.dirty) await this.save();
  }
}

/** The spool folder exists before the first event (so a read-only state.dir is heard of at start). */
export function ensureSpoolDir(file: string): void {
  mkdirSync(dirname(file), { recursive: true });
}
