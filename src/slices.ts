// Work that runs on a query thread but answers no query (rendering /metrics or the compliance report
// for HTTP) is done in slices of at most SLICE_MS. Between two slices the event loop runs, so queries
// that arrived meanwhile are answered instead of waiting for the whole render: a 2,000-device report
// or a cold /metrics took 10-25 ms in one piece, and an HTTP flood turned that into every DNS client's
// tail latency (issue 8). setImmediate, not a timer: it lets pending I/O run first without a timer's
// minimum delay.

/** The longest a slice runs before the event loop gets a turn. */
export const SLICE_MS = 2;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Slices {
  private started = performance.now();

  constructor(private readonly budgetMs = SLICE_MS) {}

  /** Gives the event loop a turn when this slice has used its budget; otherwise goes straight on. */
  async next(): Promise<void> {
    if (performance.now() - this.started < this.budgetMs) return;
    await turn();
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
