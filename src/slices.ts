// Work that runs on a query thread but answers no query (rendering /metrics or the compliance report
// for HTTP) is done in slices of at most SLICE_MS. Between two slices the event loop runs, so queries
// that arrived meanwhile are answered instead of waiting for the whole render: a 2,000-device report
// or a cold /metrics took 10-25 ms in one piece, and an HTTP flood turned that into every DNS client's
// tail latency (issue 8). setImmediate, not a timer: it lets pending I/O run first without a timer's
// minimum delay.

/** The longest a slice runs before the event loop gets a turn. */
export const SLICE_MS = 2;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const rest = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class Slices {
  private started = performance.now();

  /**
   * `restMs`: between two slices, sleep this long rather than take the next turn at once. For long
   * background work (a 200,000-device lease change): a thread that sleeps is woken at once by the
   * kernel when a query arrives, where one that never sleeps waits behind the other runnable threads
   * on a busy machine.
   */
  constructor(
    private readonly budgetMs = SLICE_MS,
    private readonly restMs = 0,
  ) {}

  /** Gives the event loop a turn when this slice has used its budget; otherwise goes straight on. */
  async next(): Promise<void> {
    if (performance.now() - this.started < this.budgetMs) return;
    await (this.restMs > 0 ? rest(this.restMs) : turn());
    this.started = performance.now();
  }
}

/** `items.map(fn)`, a slice at a time. */
export async function mapInSlices<T, R>(items: readonly T[], fn: (item: T) => R, slices = new Slices()): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  for (let i = 0; i < items.length; i++) {
    out[i] = fn(items[i]!);
    // Checking the clock costs ~30 ns; every 16 items keeps it out of the way of cheap `fn`s.
    if ((i & 15) === 15) await slices.next();
  }
  return out;
}
