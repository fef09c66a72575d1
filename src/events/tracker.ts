// When a device is announced (issue 20 §1): a device counts as trying when it
// asks for a name on an enforced list (only blocked queries reach here:
// excepted ones are answered, not blocked, so they never count). Per
// (device, list):
//   - `threshold` blocked queries within `window` make one event;
//   - then nothing for that pair until `cooldown` has passed;
//   - when the cooldown ends, one more event with the count of the queries
//     made during it goes out if the device is still trying (it asked within
//     the last `window`), and a new cooldown starts; otherwise the pair rests.
// Runs on the main thread, from the report's drain (off the query path).
// Bounded: at most `maxTracked` pairs (a ring of `threshold` timestamps
// each); a pair that rests and has been quiet for a window is forgotten, and
// past the bound a new pair is dropped and counted.
import type { EventsConfig } from '../config/config.js';

/** A blocked query as the report's drain hands it over (device resolved). */
export interface Attempt {
  at: number;
  client: string;
  mac: string;
  hostname: string;
  list: string;
  name: string;
}

/** What the tracker decided to announce (the announcer adds id, policy and instance). */
export interface Trigger {
  device: string;
  mac: string;
  client: string;
  hostname: string;
  list: string;
  name: string;
  count: number;
  start: number;
  end: number;
  /** The instant of the announcement: the crossing, or the end of the cooldown. */
  at: number;
  /** The cooldown it opens ends here: the arbiter keys "once per cooldown" on it. */
  until: number;
}

interface Pair {
  device: string;
  mac: string;
  client: string;
  hostname: string;
  list: string;
  name: string;
  /** The last `threshold` attempt times outside a cooldown, oldest at `head` once full. */
  ring: Float64Array;
  head: number;
  filled: number;
  /** End of the cooldown in force; 0 when resting. */
  until: number;
  /** Attempts during the cooldown, and the first of them. */
  during: number;
  duringStart: number;
  last: number;
}

type Settings = Pick<EventsConfig, 'threshold' | 'windowMs' | 'cooldownMs' | 'maxTracked'>;

const SWEEP_EVERY_MS = 60_000;

export class EventTracker {
  private readonly pairs = new Map<string, Pair>();
  /** Cooldowns in the order they end (the cooldown is the same for all, so appends stay sorted). */
  private cooldowns: { key: string; until: number }[] = [];
  private cooldownHead = 0;
  private lastSweep = 0;
  /** Attempts not tracked because `maxTracked` pairs were already tracked. */
  dropped = 0;

  constructor(private settings: Settings) {}

  configure(settings: Settings): void {
    // A new threshold needs rings of the new size: resting pairs start counting again, cooldowns stay.
    if (settings.threshold !== this.settings.threshold) for (const p of this.pairs.values()) this.resetRing(p, settings.threshold);
    this.settings = settings;
  }

  get tracked(): number {
    return this.pairs.size;
  }

  /** One blocked query; returns the announcement it makes, if it crosses the threshold. */
  record(a: Attempt): Trigger | undefined {
    const device = a.mac || a.client;
    const key = `${device}\0${a.list}`;
    let p = this.pairs.get(key);
    if (!p) {
      if (this.pairs.size >= this.settings.maxTracked) {
        this.sweep(a.at);
        if (this.pairs.size >= this.settings.maxTracked) {
          this.dropped++;
          return undefined;
        }
      }
      p = {
        device, mac: a.mac, client: a.client, hostname: a.hostname, list: a.list, name: a.name,
        ring: new Float64Array(this.settings.threshold), head: 0, filled: 0, until: 0, during: 0, duringStart: 0, last: a.at,
      };
      this.pairs.set(key, p);
    }
    p.client = a.client;
    if (a.hostname) p.hostname = a.hostname;
    p.name = a.name;
    p.last = Math.max(p.last, a.at);
    if (p.until > a.at) {
      if (p.during++ === 0 || a.at < p.duringStart) p.duringStart = a.at;
      return undefined;
    }
    const { threshold, windowMs } = this.settings;
    p.ring[p.head] = a.at;
    p.head = (p.head + 1) % threshold;
    if (p.filled < threshold) p.filled++;
    if (p.filled < threshold) return undefined;
    // The ring now holds the last `threshold` attempts; the oldest of them is the one at head.
    const first = p.ring[p.head]!;
    if (a.at - first > windowMs) return undefined;
    return this.announce(key, p, threshold, first, a.at, a.at);
  }

  /** Ends the cooldowns due by `now`: one event for each pair still trying. Called every second (and by tests). */
  tick(now: number): Trigger[] {
    const out: Trigger[] = [];
    while (this.cooldownHead < this.cooldowns.length && this.cooldowns[this.cooldownHead]!.until <= now) {
      const { key, until } = this.cooldowns[this.cooldownHead++]!;
      const p = this.pairs.get(key);
      if (!p || p.until !== until) continue; // forgotten, or superseded
      if (p.during > 0 && p.last > until - this.settings.windowMs) {
        out.push(this.announce(key, p, p.during, p.duringStart, p.last, until));
      } else {
        p.until = 0;
        this.resetRing(p, this.settings.threshold);
      }
    }
    if (this.cooldownHead > 1024 && this.cooldownHead * 2 > this.cooldowns.length) {
      this.cooldowns = this.cooldowns.slice(this.cooldownHead);
      this.cooldownHead = 0;
    }
    if (now - this.lastSweep >= SWEEP_EVERY_MS) this.sweep(now);
    return out;
  }

  private announce(key: string, p: Pair, count: number, start: number, end: number, at: number): Trigger {
    const until = at + this.settings.cooldownMs;
    p.until = until;
    p.during = 0;
    p.duringStart = 0;
    this.resetRing(p, this.settings.threshold);
    // Sorted unless the cooldown was shortened by a reload; then a later entry may wait behind an
    // earlier one for at most the difference, which is the price of a queue without a heap.
    this.cooldowns.push({ key, until });
    return { device: p.device, mac: p.mac, client: p.client, hostname: p.hostname, list: p.list, name: p.name, count, start, end, at, until };
  }

  /** Forgets resting pairs quiet for longer than the window. */
  private sweep(now: number): void {
    this.lastSweep = now;
    const quiet = now - this.settings.windowMs;
    for (const [key, p] of this.pairs) if (p.until === 0 && p.last < quiet) this.pairs.delete(key);
  }

  private resetRing(p: Pair, threshold: number): void {
    if (p.ring.length !== threshold) p.ring = new Float64Array(threshold);
    p.head = 0;
    p.filled = 0;
  }
}
