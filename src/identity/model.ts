// Which device is at which address, from every lease source and
// identity.static, kept up to date row by row: the identity thread's state
// (identityWorker.ts), and the CLI's (validate, check) read once. Each change
// (rows appended to a source, or a source read whole again) is turned into an
// IdentityDelta that names only the addresses whose device changed, in time
// proportional to the change: a query thread then applies just that.
//
// The rules, the same whether a file is read whole or a row at a time:
// - Within one source the last row for an address wins (Kea and dhcpd append).
//   Between sources, a source's row wins over an earlier source's when some row
//   of it for that address started at least as late.
// - A released, declined, expired or deleted lease (active: false) maps nothing.
// - A device (MAC) is at its latest active lease only (latest start; a tie goes
//   to the later source, then the later row): a device that moved no longer
//   speaks for the address it left, even before that lease runs out.
import type { Lease } from './leaseFormats.js';
import type { Device, IdentityDelta } from './table.js';

/** One source's view of one address. */
interface Entry {
  /** The last row for the address. */
  lease: Lease;
  /** The latest start of any row for the address (the rule between sources). */
  maxStart: number;
  /** The last row's place in the source, for ties: a later row is newer. */
  seq: number;
}

interface Winner {
  lease: Lease;
  source: number;
  seq: number;
}

export class LeaseModel {
  private sources: Map<string, Entry>[];
  /** Rows numbered per source, across appends. */
  private seqs: number[];
  private readonly winners = new Map<string, Winner>();
  /** mac → the addresses whose winning lease is active and has that MAC (usually one). */
  private readonly activeByMac = new Map<string, Set<string>>();
  /** mac → the address of its latest active lease. */
  private readonly latest = new Map<string, string>();
  private readonly devices = new Map<string, Device>();
  private statics: ReadonlyMap<string, string>;
  private staticsChanged = true;
  /** Addresses whose rows changed since the last commit. */
  private readonly dirty = new Set<string>();
  /** Addresses whose device must be worked out again (a static name changed). */
  private readonly recheck = new Set<string>();

  constructor(sourceCount: number, statics: ReadonlyMap<string, string>) {
    this.sources = Array.from({ length: sourceCount }, () => new Map());
    this.seqs = new Array<number>(sourceCount).fill(0);
    this.statics = statics;
  }

  /** A config reload: new sources (all empty until read) and static names; the next commit says what changed. */
  reconfigure(sourceCount: number, statics: ReadonlyMap<string, string>): void {
    for (const src of this.sources) for (const ip of src.keys()) this.dirty.add(ip);
    this.sources = Array.from({ length: sourceCount }, () => new Map());
    this.seqs = new Array<number>(sourceCount).fill(0);
    this.setStatics(statics);
  }

  private setStatics(statics: ReadonlyMap<string, string>): void {
    const changed = new Set<string>();
    for (const [mac, name] of statics) if (this.statics.get(mac) !== name) changed.add(mac);
    for (const mac of this.statics.keys()) if (!statics.has(mac)) changed.add(mac);
    if (!changed.size) return;
    this.statics = statics;
    this.staticsChanged = true;
    for (const mac of changed) {
      const ip = this.latest.get(mac);
      if (ip !== undefined) this.recheck.add(ip);
    }
  }

  /** Rows appended to source `i` since its last read, in file order. */
  append(i: number, leases: readonly Lease[]): void {
    const src = this.sources[i]!;
    for (const lease of leases) {
      const e = src.get(lease.ip);
      src.set(lease.ip, { lease, maxStart: e === undefined ? lease.start : Math.max(e.maxStart, lease.start), seq: ++this.seqs[i]! });
      this.dirty.add(lease.ip);
    }
  }

  /** Source `i` read whole: its rows replace what it had. O(rows), and only addresses that differ are dirty. */
  replace(i: number, leases: readonly Lease[]): void {
    const old = this.sources[i]!;
    const next = new Map<string, Entry>();
    let seq = 0;
    for (const lease of leases) {
      const e = next.get(lease.ip);
      next.set(lease.ip, { lease, maxStart: e === undefined ? lease.start : Math.max(e.maxStart, lease.start), seq: ++seq });
    }
    for (const [ip, e] of next) {
      const o = old.get(ip);
      if (o === undefined || o.maxStart !== e.maxStart || !sameLease(o.lease, e.lease)) this.dirty.add(ip);
      else if (o.seq !== e.seq) this.dirty.add(ip); // only ties between a MAC's leases look at it, but they do
    }
    for (const ip of old.keys()) if (!next.has(ip)) this.dirty.add(ip);
    this.sources[i] = next;
    this.seqs[i] = seq;
  }

  /** Addresses source `i` holds a row for. */
  addresses(i: number): number {
    return this.sources[i]?.size ?? 0;
  }

  /** The latest active lease of a MAC (the device's current address), for the lease history. */
  latestLease(mac: string): Lease | undefined {
    const ip = this.latest.get(mac);
    return ip === undefined ? undefined : this.winners.get(ip)?.lease;
  }

  /**
   * Works out what the changes since the last commit did to the devices, and returns only that.
   * O(dirty addresses × sources + the addresses of the MACs they touch).
   */
  commit(): IdentityDelta {
    const macs = new Set<string>();
    const recheck = this.recheck;
    for (const ip of this.dirty) {
      const old = this.winners.get(ip);
      const next = this.winnerOf(ip);
      if (old?.lease === next?.lease && old?.seq === next?.seq) continue;
      if (next) this.winners.set(ip, next);
      else this.winners.delete(ip);
      if (old && old.lease.active && old.lease.mac) {
        this.activeByMac.get(old.lease.mac)?.delete(ip);
        macs.add(old.lease.mac);
      }
      if (next && next.lease.active && next.lease.mac) {
        let set = this.activeByMac.get(next.lease.mac);
        if (!set) this.activeByMac.set(next.lease.mac, (set = new Set()));
        set.add(ip);
        macs.add(next.lease.mac);
      }
      recheck.add(ip);
    }
    this.dirty.clear();
    // A MAC whose leases changed may now be latest at another address: both addresses change.
    for (const mac of macs) {
      const before = this.latest.get(mac);
      const after = this.latestOf(mac);
      if (before === after) continue;
      if (after === undefined) this.latest.delete(mac);
      else this.latest.set(mac, after);
      if (before !== undefined) recheck.add(before);
      if (after !== undefined) recheck.add(after);
    }
    const devices: [string, Device | null][] = [];
    for (const ip of recheck) {
      const old = this.devices.get(ip);
      const next = this.deviceOf(ip);
      if (old === undefined ? next === undefined : next !== undefined && sameDevice(old, next)) continue;
      if (next) this.devices.set(ip, next);
      else this.devices.delete(ip);
      devices.push([ip, next ?? null]);
    }
    recheck.clear();
    const delta: IdentityDelta = { reset: false, devices };
    if (this.staticsChanged) delta.statics = [...this.statics];
    this.staticsChanged = false;
    return delta;
  }

  /** Every device as one delta (reset): for a table that starts from nothing. */
  snapshot(): IdentityDelta {
    this.staticsChanged = false;
    return { reset: true, devices: [...this.devices], statics: [...this.statics] };
  }

  get size(): number {
    return this.devices.size;
  }

  private winnerOf(ip: string): Winner | undefined {
    let w: Winner | undefined;
    for (let s = 0; s < this.sources.length; s++) {
      const e = this.sources[s]!.get(ip);
      if (e !== undefined && (w === undefined || e.maxStart >= w.lease.start)) w = { lease: e.lease, source: s, seq: e.seq };
    }
    return w;
  }

  private latestOf(mac: string): string | undefined {
    let best: string | undefined;
    let bw: Winner | undefined;
    for (const ip of this.activeByMac.get(mac) ?? []) {
      const w = this.winners.get(ip)!;
      if (bw === undefined || newer(w, bw)) {
        best = ip;
        bw = w;
      }
    }
    if (best === undefined) this.activeByMac.delete(mac);
    return best;
  }

  private deviceOf(ip: string): Device | undefined {
    const l = this.winners.get(ip)?.lease;
    if (l === undefined || !l.active) return undefined;
    if (l.mac && this.latest.get(l.mac) !== ip) return undefined; // the device has moved on
    return { ip, mac: l.mac, hostname: (l.mac && this.statics.get(l.mac)) || l.hostname, leaseHostname: l.hostname, start: l.start, end: l.end };
  }
}

function newer(a: Winner, b: Winner): boolean {
  if (a.lease.start !== b.lease.start) return a.lease.start > b.lease.start;
  if (a.source !== b.source) return a.source > b.source;
  return a.seq > b.seq;
}

function sameLease(a: Lease, b: Lease): boolean {
  return a.mac === b.mac && a.hostname === b.hostname && a.start === b.start && a.end === b.end && a.active === b.active;
}

function sameDevice(a: Device, b: Device): boolean {
  return a.mac === b.mac && a.hostname === b.hostname && a.leaseHostname === b.leaseHostname && a.start === b.start && a.end === b.end;
}
