// Address → device, compiled from every lease source and identity.static
// each time one of them changes. The query path does one Map probe and two
// number comparisons (lookup); nothing is allocated. A device is at an
// address only while its lease holds and while that lease is the device's
// latest: a MAC that moved on no longer speaks for the address it left.
import type { Lease } from './leaseFormats.js';

export interface Device {
  readonly ip: string;
  /** Canonical MAC, '' when the source had none. */
  readonly mac: string;
  /** identity.static's name for the MAC when there is one, else the lease's hostname ('' when none). */
  readonly hostname: string;
  /** The hostname the lease carried (host: selectors match this or the static name). */
  readonly leaseHostname: string;
  readonly start: number;
  readonly end: number;
}

/** IdentityTable.toData(): plain Maps, which cross a thread boundary as they are. */
export interface IdentityData {
  statics: ReadonlyMap<string, string>;
  current: ReadonlyMap<string, Device>;
  macs: ReadonlyMap<string, Device>;
  hosts: ReadonlyMap<string, string[]>;
  bare: ReadonlyMap<string, Device>;
}

interface Interval {
  mac: string;
  hostname: string;
  leaseHostname: string;
  from: number;
  to: number;
}

/** How much lease history is kept per address, and for how long after it ended. */
const HISTORY_PER_ADDRESS = 16;
const HISTORY_MS = 8 * 86_400_000;

export class IdentityTable {
  /** ip → the device holding it (the lease's time bounds are checked per lookup). */
  private readonly current = new Map<string, Device>();
  private readonly macs = new Map<string, Device>();
  private readonly hosts = new Map<string, string[]>();
  /** Devices known only from identity.static or a relay's MAC option: no address. */
  private readonly bare = new Map<string, Device>();
  /** ip → intervals, oldest first. */
  readonly history: ReadonlyMap<string, readonly Interval[]>;

  private constructor(
    readonly statics: ReadonlyMap<string, string>,
    history: Map<string, Interval[]>,
  ) {
    this.history = history;
  }

  static readonly EMPTY = new IdentityTable(new Map(), new Map());

  /**
   * What a query thread needs of the table (workers: N): the current devices, MACs, hostnames and
   * statics. The history stays on the main thread, where the report resolves past queries.
   */
  toData(): IdentityData {
    return { statics: this.statics, current: this.current, macs: this.macs, hosts: this.hosts, bare: this.bare };
  }

  static fromData(d: IdentityData): IdentityTable {
    const t = new IdentityTable(d.statics, new Map());
    for (const [k, v] of d.current) t.current.set(k, v);
    for (const [k, v] of d.macs) t.macs.set(k, v);
    for (const [k, v] of d.hosts) t.hosts.set(k, v);
    for (const [k, v] of d.bare) t.bare.set(k, v);
    return t;
  }

  /**
   * `sources` in config order, each in file order. Within one source the
   * last row for an address wins (Kea and dhcpd append); between sources
   * the later start wins. `previous` carries history the files no longer show.
   */
  static build(sources: readonly (readonly Lease[])[], statics: ReadonlyMap<string, string>, now: number, previous?: IdentityTable): IdentityTable {
    const perIp = new Map<string, Lease>();
    const sourceOf = new Map<string, number>();
    // Most addresses have one row: only those with several keep a list (a 50k-lease file is rebuilt on every change).
    const rowsByIp = new Map<string, Lease | Lease[]>();
    sources.forEach((leases, source) => {
      for (const lease of leases) {
        const cur = perIp.get(lease.ip);
        if (cur === undefined || sourceOf.get(lease.ip) === source || lease.start >= cur.start) {
          perIp.set(lease.ip, lease);
          sourceOf.set(lease.ip, source);
        }
        const rows = rowsByIp.get(lease.ip);
        if (rows === undefined) rowsByIp.set(lease.ip, lease);
        else if (Array.isArray(rows)) rows.push(lease);
        else rowsByIp.set(lease.ip, [rows, lease]);
      }
    });
    // Each MAC's latest active lease: the address it is at now.
    const latest = new Map<string, Lease>();
    for (const lease of perIp.values()) {
      if (!lease.active || !lease.mac) continue;
      const l = latest.get(lease.mac);
      if (!l || lease.start >= l.start) latest.set(lease.mac, lease);
    }
    const t = new IdentityTable(statics, new Map());
    const device = (l: Lease): Device =>
      Object.freeze({ ip: l.ip, mac: l.mac, hostname: (l.mac && statics.get(l.mac)) || l.hostname, leaseHostname: l.hostname, start: l.start, end: l.end });
    for (const lease of perIp.values()) {
      if (!lease.active) continue;
      if (lease.mac && latest.get(lease.mac) !== lease) continue; // the device has moved on
      const d = device(lease);
      t.current.set(lease.ip, d);
      if (d.mac) t.macs.set(d.mac, d);
      if (d.hostname) t.addHost(d.hostname, d.mac || d.ip);
      if (d.leaseHostname && d.leaseHostname !== d.hostname) t.addHost(d.leaseHostname, d.mac || d.ip);
    }
    for (const [mac, name] of statics) {
      if (!t.macs.has(mac)) t.bare.set(mac, Object.freeze({ ip: '', mac, hostname: name, leaseHostname: '', start: 0, end: Infinity }));
      t.addHost(name, mac);
    }
    t.buildHistory(rowsByIp, latest, now, previous);
    return t;
  }

  private addHost(host: string, key: string): void {
    const list = this.hosts.get(host);
    if (!list) this.hosts.set(host, [key]);
    else if (!list.includes(key)) list.push(key);
  }

  /** The device at `ip` at time `now`, or undefined. The hot path: one Map probe, no allocation. */
  lookup(ip: string, now: number): Device | undefined {
    const d = this.current.get(ip);
    return d !== undefined && now >= d.start && now < d.end ? d : undefined;
  }

  /** The device with this MAC now: its current lease, else what identity.static says; undefined if unknown. */
  byMac(mac: string): Device | undefined {
    return this.macs.get(mac) ?? this.bare.get(mac);
  }

  /** A device for a MAC a trusted relay sent (EDNS option 65001): known or not, it is that MAC. */
  relayed(mac: string): Device {
    const known = this.byMac(mac);
    if (known) return known;
    let d = this.bare.get(mac);
    if (!d) {
      if (this.bare.size > 65_536) this.bare.clear(); // bounded: relays cannot grow it without limit
      this.bare.set(mac, (d = Object.freeze({ ip: '', mac, hostname: '', leaseHostname: '', start: 0, end: Infinity })));
    }
    return d;
  }

  /** MACs (or, for MAC-less leases, addresses) that carry this hostname now. */
  hostKeys(host: string): readonly string[] {
    return this.hosts.get(host) ?? [];
  }

  knowsMac(mac: string): boolean {
    return this.macs.has(mac) || this.statics.has(mac);
  }

  knowsHost(host: string): boolean {
    return this.hosts.has(host);
  }

  get size(): number {
    return this.current.size;
  }

  /** The device that held `ip` at time `at` (from the lease history), or undefined. */
  deviceAt(ip: string, at: number): Device | undefined {
    const now = this.lookup(ip, at);
    if (now) return now;
    const h = this.history.get(ip);
    if (!h) return undefined;
    for (let i = h.length - 1; i >= 0; i--) {
      const x = h[i]!;
      if (at >= x.from && at < x.to) return { ip, mac: x.mac, hostname: x.hostname, leaseHostname: x.leaseHostname, start: x.from, end: x.to };
    }
    return undefined;
  }

  /**
   * Per address, the intervals each device held it: from the rows the files
   * show now (a row ends at its lease end, at the next row for the address,
   * or when its MAC took a later lease elsewhere), after whatever older
   * intervals the previous table remembered and the files no longer show.
   */
  private buildHistory(rowsByIp: Map<string, Lease | Lease[]>, latest: Map<string, Lease>, now: number, previous?: IdentityTable): void {
    const history = this.history as Map<string, Interval[]>;
    const oldest = now - HISTORY_MS;
    const ips = new Set(rowsByIp.keys());
    if (previous) for (const ip of previous.history.keys()) ips.add(ip);
    for (const ip of ips) {
      const before = previous?.history.get(ip) ?? [];
      const entry = rowsByIp.get(ip);
      // The common case on a rebuild: one active row, the same device as before, not moved: keep the history as it was.
      if (entry !== undefined && !Array.isArray(entry) && entry.active && before.length > 0) {
        const last = before[before.length - 1]!;
        const moved = entry.mac ? latest.get(entry.mac) : undefined;
        if (last.mac === entry.mac && last.to === entry.end && (entry.start === 0 || last.from === entry.start) && (!moved || moved === entry) && last.to >= oldest) {
          history.set(ip, before as Interval[]);
          continue;
        }
      }
      const rows = entry === undefined ? [] : Array.isArray(entry) ? entry : [entry];
      const fresh: Interval[] = [];
      rows.forEach((row, k) => {
        const next = rows[k + 1];
        if (!row.active) {
          // A release or deletion ends whatever held the address.
          const last = fresh[fresh.length - 1];
          if (last && last.to > now) last.to = Math.max(last.from, Math.min(last.to, row.start || now));
          return;
        }
        let from = row.start;
        const prevLast = before[before.length - 1];
        // Formats without a start time: the device has held it since we first saw it.
        if (from === 0) from = prevLast && prevLast.mac === row.mac ? prevLast.from : now;
        let to = Math.min(row.end, next ? Math.max(from, next.start || now) : Infinity);
        const moved = row.mac ? latest.get(row.mac) : undefined;
        if (moved && moved !== row && moved.ip !== ip) to = Math.min(to, Math.max(from, moved.start || now));
        const name = (row.mac && this.statics.get(row.mac)) || row.hostname;
        fresh.push({ mac: row.mac, hostname: name, leaseHostname: row.hostname, from, to });
      });
      const firstFresh = fresh[0]?.from ?? Infinity;
      const kept = before
        .filter((x) => x.from < firstFresh && x.to >= oldest)
        .map((x) => (x.to > firstFresh || (x.to > now && !fresh.length) ? { ...x, to: Math.min(x.to, firstFresh, now) } : x));
      const all = [...kept, ...fresh.filter((x) => x.to >= oldest)];
      if (all.length) history.set(ip, all.slice(-HISTORY_PER_ADDRESS));
    }
  }
}
