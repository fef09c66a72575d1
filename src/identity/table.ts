// Address → device, as each query thread holds it. The identity thread
// (identityWorker.ts) reads the lease files and works out what changed; a
// query thread only applies that change (IdentityDelta) in place, in one
// event-loop turn and in time proportional to the change, never to the
// number of leases. The query path does one Map probe and two number
// comparisons (lookup); nothing is allocated.
//
// Devices are frozen and never changed once in the table: a lease that
// changes (a renewal, a move, a new hostname) brings a new Device object.
// That is what lets policy/clients.ts memoise a view per Device object: a
// delta can replace an object, but never make a memoised one mean something else.

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

/**
 * What changed since the last delta: for each address whose device changed (renewed, moved,
 * renamed) or went away, the device there now, or null. Every other address keeps its device.
 * Plain arrays and objects, so it crosses a thread boundary by structured clone at O(change).
 */
export interface IdentityDelta {
  /** Clear the table first: a whole table (a query thread's start, a restarted identity thread). */
  reset: boolean;
  devices: [ip: string, device: Device | null][];
  /** identity.static (mac → name) when it changed (a config reload); absent otherwise. */
  statics?: [mac: string, name: string][];
}

/** Relay-named devices kept at most: a relay cannot grow the table without limit. */
const MAX_RELAYED = 65_536;

export class IdentityTable {
  /** ip → the device holding it (the lease's time bounds are checked per lookup). */
  private readonly current = new Map<string, Device>();
  /** mac → its device in `current`: a MAC is at one address at most (its latest lease). */
  private readonly macs = new Map<string, Device>();
  private statics: ReadonlyMap<string, string> = new Map();
  /** identity.static's devices, known by MAC alone (no address). */
  private staticDevices = new Map<string, Device>();
  /** Devices named only by a trusted relay's MAC option. */
  private readonly relayedDevices = new Map<string, Device>();

  /** Applies a delta in place: O(delta.devices), plus O(statics) when they changed. */
  apply(delta: IdentityDelta): void {
    if (delta.reset) {
      this.current.clear();
      this.macs.clear();
    }
    if (delta.statics) {
      this.statics = new Map(delta.statics);
      this.staticDevices = new Map(delta.statics.map(([mac, name]) => [mac, Object.freeze({ ip: '', mac, hostname: name, leaseHostname: '', start: 0, end: Infinity })]));
      this.relayedDevices.clear();
    }
    for (const [ip, next] of delta.devices) {
      const old = this.current.get(ip);
      // Only if the MAC still points here: within one delta, the device may already be set at its new address.
      if (old !== undefined && old.mac !== '' && this.macs.get(old.mac) === old) this.macs.delete(old.mac);
      if (next === null) {
        this.current.delete(ip);
        continue;
      }
      const d = Object.freeze(next);
      this.current.set(ip, d);
      if (d.mac !== '') this.macs.set(d.mac, d);
    }
  }

  /** The whole table as one delta: what a query thread that (re)starts is given once. */
  snapshot(): IdentityDelta {
    return { reset: true, devices: [...this.current], statics: [...this.statics] };
  }

  static of(delta: IdentityDelta): IdentityTable {
    const t = new IdentityTable();
    t.apply(delta);
    return t;
  }

  /** The device at `ip` at time `now`, or undefined. The hot path: one Map probe, no allocation. */
  lookup(ip: string, now: number): Device | undefined {
    const d = this.current.get(ip);
    return d !== undefined && now >= d.start && now < d.end ? d : undefined;
  }

  /** The device with this MAC now: its current lease, else what identity.static says; undefined if unknown. */
  byMac(mac: string): Device | undefined {
    return this.macs.get(mac) ?? this.staticDevices.get(mac);
  }

  /** A device for a MAC a trusted relay sent (EDNS option 65001): known or not, it is that MAC. */
  relayed(mac: string): Device {
    const known = this.byMac(mac);
    if (known) return known;
    let d = this.relayedDevices.get(mac);
    if (!d) {
      if (this.relayedDevices.size >= MAX_RELAYED) this.relayedDevices.clear();
      this.relayedDevices.set(mac, (d = Object.freeze({ ip: '', mac, hostname: '', leaseHostname: '', start: 0, end: Infinity })));
    }
    return d;
  }

  knowsMac(mac: string): boolean {
    return this.macs.has(mac) || this.statics.has(mac);
  }

  /** Whether a lease or identity.static carries this hostname (for validate: a scan, never on the query path). */
  knowsHost(host: string): boolean {
    for (const name of this.statics.values()) if (name === host) return true;
    for (const d of this.current.values()) if (d.hostname === host || d.leaseHostname === host) return true;
    return false;
  }

  get size(): number {
    return this.current.size;
  }
}
