// One timer for every UDP exchange in flight, instead of a setTimeout and a
// clearTimeout per query (issue 22: the timers, the promise and the closures
// of each exchange were ~7 % of a cache miss, bench/RESULTS.md).
//
// The exchanges in flight sit in an array (removal swaps the last one in, so
// adding and removing cost O(1)), and one Timeout is armed for the earliest
// deadline. Most exchanges have the same timeout and settle long before it,
// so under load the timer fires about once per timeout period, finds the
// earliest live deadline in one pass over the few hundred exchanges in
// flight, and is armed again: no timer work per query at all.
//
// When the list empties the timer is not cleared, only unref'd: at a moderate
// rate (10k QPS with a fast upstream) one or two exchanges are in flight and
// the list empties between most queries. Clearing it there, and arming a new
// one on the next add, brought back a setTimeout and a clearTimeout per query,
// with Node's timer lists and priority queue built and torn down each time,
// and their code re-optimised whenever the load changed, on the query thread's
// core (issue 22's p99 at 10k, bench/RESULTS.md). A timer left armed fires
// once for nothing after the last exchange, and is not armed again.
import { performance } from 'node:perf_hooks';

/** Something with a deadline (performance.now() ms) that the list expires once. */
export interface Expiring {
  deadline: number;
  /** Its index in the list; -1 when not in it. Owned by Deadlines. */
  slot: number;
  /** Called once, after it left the list, when its deadline passed. */
  expire(): void;
}

export class Deadlines<T extends Expiring> {
  private readonly items: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The deadline the timer is armed for; Infinity when it is not armed. */
  private armedFor = Infinity;
  /** Whether the armed timer holds the process open: only while something is in the list. */
  private held = false;
  private readonly onTimer = (): void => this.check();

  get size(): number {
    return this.items.length;
  }

  add(x: T): void {
    x.slot = this.items.length;
    this.items.push(x);
    if (x.deadline < this.armedFor) this.arm(x.deadline);
    else if (!this.held) this.hold(true);
  }

  /** Takes `x` out of the list, if it is in it (settled before its deadline). */
  remove(x: T): void {
    const i = x.slot;
    if (i < 0) return;
    const last = this.items.pop()!;
    if (last !== x) {
      this.items[i] = last;
      last.slot = i;
    }
    x.slot = -1;
    // Idle: the timer stays armed (see the top of this file) but no longer keeps the process alive.
    if (this.items.length === 0 && this.held) this.hold(false);
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(at - performance.now())));
    this.held = true;
  }

  private hold(on: boolean): void {
    const timer = this.timer;
    // No timer armed (a deadline that is not a number is never armed): nothing to hold.
    if (timer === undefined) return;
    this.held = on;
    if (on) timer.ref();
    else timer.unref();
  }

  private check(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    this.held = false;
    const now = performance.now();
    let expired: T[] | undefined;
    let next = Infinity;
    // From the end: a removal moves the last item into the hole, and the last one was seen already.
    for (let i = this.items.length - 1; i >= 0; i--) {
      const x = this.items[i]!;
      if (x.deadline <= now) {
        this.remove(x);
        (expired ??= []).push(x);
      } else if (x.deadline < next) {
        next = x.deadline;
      }
    }
    if (next < this.armedFor) this.arm(next);
    // After the pass: an expiry may settle other work that adds to the list.
    if (expired) for (const x of expired) x.expire();
  }
}
