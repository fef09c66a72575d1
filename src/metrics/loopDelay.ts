// Event-loop delay of a query thread (perf_hooks.monitorEventLoopDelay): a query waits at
// least this long whenever the loop is busy with something else (a GC pause, a big reload, an
// HTTP flood). Reported per thread as p50, p99 and max over the last one or two windows of
// WINDOW_MS (the current one and the one before), so a dashboard sees recent stalls rather than
// an average since start, and a stall just before a window restarts is still there at the next scrape.
import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';

const WINDOW_MS = 10_000;
/** The histogram samples every RESOLUTION_MS, and what it records is the whole interval: idle, ~10 ms. */
const RESOLUTION_MS = 10;
const RESOLUTION_NS = RESOLUTION_MS * 1e6;

export class LoopDelay {
  private readonly h: ELDHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private readonly timer: NodeJS.Timeout;
  /** The finished window's figures: a scrape right after a restart still sees them. */
  private previous = [0, 0, 0];

  /** `windowMs`: how often the window restarts (tests shorten it). */
  constructor(windowMs = WINDOW_MS) {
    this.h.enable();
    this.timer = setInterval(() => {
      this.previous = this.current();
      this.h.reset();
    }, windowMs).unref();
  }

  /**
   * [p50, p99, max] in seconds over the last 10 to 20 s: each the larger of the current window's and
   * the previous one's (so p50 and p99 lean high for a window that just restarted); zeros before the first sample.
   */
  seconds(): number[] {
    const now = this.current();
    return now.map((v, i) => Math.max(v, this.previous[i]!));
  }

  /**
   * The current window's [p50, p99, max]. Node records the time between two samples, the sampling
   * interval included (an idle loop reads ~10 ms), so the interval is taken off: what is left is how
   * late the loop was. A stall shorter than the interval that ends before the next sample is not seen.
   */
  private current(): number[] {
    if (this.h.count === 0) return [0, 0, 0];
    const late = (ns: number): number => Math.max(0, ns - RESOLUTION_NS) / 1e9;
    return [late(this.h.percentile(50)), late(this.h.percentile(99)), late(this.h.max)];
  }

  /** Samples in the current window. */
  get samples(): number {
    return this.h.count;
  }

  close(): void {
    clearInterval(this.timer);
    this.h.disable();
  }
}
