// Writes the exception records' own history to the audit trail (log.audit):
// a "loaded" line per record at start, grant/change/renew/revoke/remove from
// each reload's diff, and "lapse" when an expiry passes. Enforcement never
// waits on this: expiry is checked per query (docs/design.md §2); the timer here
// only decides when the lapse line is written.
import type { Clock } from '../clock.js';
import { diffExceptions, lapsedBetween, loadedEvents, nextLapse, type ExceptionEvent } from '../policy/exceptionEvents.js';
import type { Generation } from '../policy/generation.js';

/** setTimeout's limit (~24.8 days); a later lapse re-arms on the way. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class ExceptionAudit {
  private timer: NodeJS.Timeout | undefined;
  /** Lapses up to this instant have been written. */
  private checkedUpTo: number;

  constructor(
    private readonly write: (record: { time: string } & ExceptionEvent) => void,
    private readonly clock: Clock,
    private readonly current: () => Generation,
  ) {
    this.checkedUpTo = clock.now();
    this.emit(loadedEvents(current().exceptions));
    this.arm();
  }

  /** After a reload swapped `previous` for the current generation. */
  swapped(previous: Generation): void {
    this.emit(this.lapses(previous));
    this.emit(diffExceptions(previous.exceptions, this.current().exceptions));
    this.arm();
  }

  /** Writes the lapses up to now (the timer calls it; tests with a fake clock do too). */
  check(): void {
    this.emit(this.lapses(this.current()));
    this.arm();
  }

  close(): void {
    clearTimeout(this.timer);
  }

  private lapses(g: Generation): ExceptionEvent[] {
    const now = this.clock.now();
    const events = lapsedBetween(g.exceptions, this.checkedUpTo, now);
    this.checkedUpTo = Math.max(this.checkedUpTo, now);
    return events;
  }

  private emit(events: ExceptionEvent[]): void {
    const time = new Date(this.clock.now()).toISOString();
    for (const e of events) this.write({ time, ...e });
  }

  private arm(): void {
    clearTimeout(this.timer);
    const next = nextLapse(this.current().exceptions, this.checkedUpTo);
    if (next === undefined) return;
    this.timer = setTimeout(() => this.check(), Math.min(Math.max(0, next - this.clock.now()) + 1, MAX_TIMER_MS));
    this.timer.unref();
  }
}
