// The exported zone's versions: the one in force (its serial and owner names)
// and a bounded history of what each reload added and removed, from which
// IXFR (RFC 1995) answers a secondary that is a few versions behind. Only a
// reload that changes the owner names makes a new version; one that changes
// anything else (exceptions, upstreams) keeps the serial, so secondaries do
// not transfer for nothing.

/** One version of the zone: immutable, so a transfer in progress keeps the one it started with. */
export interface ZoneVersion {
  readonly serial: number;
  readonly names: readonly string[];
}

/** What one reload changed: the names added and removed between two serials. */
export interface ZoneDiff {
  readonly from: number;
  readonly to: number;
  readonly added: readonly string[];
  readonly removed: readonly string[];
}

/** History kept, at most: this many diffs, and this many names in them all (a huge edit pushes the oldest out). */
export const MAX_DIFFS = 50;
export const MAX_DIFF_NAMES = 2_000_000;

/** RFC 1982 serial number arithmetic: whether a is after b (mod 2^32). */
export function serialAfter(a: number, b: number): boolean {
  const d = (a - b + 0x1_0000_0000) % 0x1_0000_0000;
  return d !== 0 && d < 0x8000_0000;
}

/**
 * The next serial: the current time in seconds when that is after the previous serial, else the
 * previous + 1 (RFC 1982 wrap). Time-based serials keep rising even if state.dir is lost: a
 * secondary holding serial N ignores (and never transfers) a primary whose serial went back below N.
 */
export function nextSerial(previous: number | undefined, nowSeconds: number): number {
  const now = nowSeconds % 0x1_0000_0000;
  if (previous === undefined || serialAfter(now, previous)) return now;
  return (previous + 1) % 0x1_0000_0000;
}

export class ZoneJournal {
  private version: ZoneVersion;
  private readonly diffs: ZoneDiff[] = [];
  private diffNames = 0;

  constructor(initial: ZoneVersion) {
    this.version = initial;
  }

  get current(): ZoneVersion {
    return this.version;
  }

  /** Serials a secondary can be brought up to date from with an incremental transfer. */
  get serials(): number[] {
    return this.diffs.map((d) => d.from);
  }

  /** Makes `names` the zone under `serial`, remembering what changed; returns the diff. */
  advance(names: readonly string[], serial: number): ZoneDiff {
    const before = new Set(this.version.names);
    const after = new Set(names);
    const added = names.filter((n) => !before.has(n));
    const removed = this.version.names.filter((n) => !after.has(n));
    const diff: ZoneDiff = { from: this.version.serial, to: serial, added, removed };
    this.diffs.push(diff);
    this.diffNames += added.length + removed.length;
    while (this.diffs.length > MAX_DIFFS || (this.diffNames > MAX_DIFF_NAMES && this.diffs.length > 0)) {
      const old = this.diffs.shift()!;
      this.diffNames -= old.added.length + old.removed.length;
    }
    this.version = Object.freeze({ serial, names: Object.freeze([...names]) });
    return diff;
  }

  /**
   * The net change from `serial` to the current version (RFC 1995 §5 lets a server condense several
   * differences into one), or undefined when `serial` is not in the history.
   */
  changesSince(serial: number): { added: string[]; removed: string[] } | undefined {
    const start = this.diffs.findIndex((d) => d.from === serial);
    if (start === -1) return undefined;
    // name → +1 (added since `serial`) or −1 (removed since): an add then a remove cancels out.
    const net = new Map<string, 1 | -1>();
    for (const d of this.diffs.slice(start)) {
      for (const n of d.removed) {
        if (net.get(n) === 1) net.delete(n);
        else net.set(n, -1);
      }
      for (const n of d.added) {
        if (net.get(n) === -1) net.delete(n);
        else net.set(n, 1);
      }
    }
    const added: string[] = [];
    const removed: string[] = [];
    for (const [n, s] of net) (s === 1 ? added : removed).push(n);
    return { added, removed };
  }
}
