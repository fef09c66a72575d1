// Event-loop delay of a query thread (perf_hooks.monitorEventLoopDelay): a query waits at
// least this long whenever the loop is busy with something else (a GC pause, a big reload, an
// HTTP flood). Reported per thread as p50, p99 and max over a window that restarts every
// WINDOW_MS, so a dashboard sees recent stalls rather than an average since start.
import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';

const WINDOW_MS = 10_000;

export class LoopDelay {
  private readonly h: ELDHistogram = monitorEventLoopDelay({ resolution: 10 });
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.h.enable();
    this.timer = setInterval(() => this.h.reset(), WINDOW_MS).unref();
  }

  /** [p50, p99, max] in seconds over the current window; zeros before the first sample. */
  seconds(): number[] {
    if (this.h.count === 0) return [0, 0, 0];
    return [this.h.percentile(50) / 1e9, this.h.percentile(99) / 1e9, this.h.max / 1e9];
  }

  close(): void {
    clearInterval(this.timer);
    this.h.disable();
  }
}
