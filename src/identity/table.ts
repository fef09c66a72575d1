// Address → device, as each query thread holds it. The identity thread
// (identityWorker.ts) reads the lease files and works out what changed; a
// query thread only applies that change (IdentityDelta) in place, in time
// proportional to the change, never to the number of leases. The query path
// does one Map probe and two number comparisons (lookup); nothing is allocated.
//
// A small change is applied in one turn. A big one (a 200,000-row file
// written or emptied: 0.5 s of stalled DNS when it was one turn, issue 23
// item 6) crosses threads packed in one SharedArrayBuffer (packDelta: no
// objects to clone, one buffer for every thread) and is applied in 2 ms
// slices (slices.ts). Mid-apply, every address maps its old device or its
// new one and a MAC stays known (applyInSlices); a whole table (reset) is
// built aside and swapped in at once (IdentityHolder in sources.ts).
//
// Devices are frozen and never changed once in the table: a lease that
// changes (a renewal, a move, a new hostname) brings a new Device object.
// That is what lets policy/clients.ts memoise a view per Device object: a
// delta can replace an object, but never make a memoised one mean something else.
import { Slices, SLICE_MS } from '../slices.js';

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
  /** A big delta's devices, packed (packDelta) in place of `devices`. */
  packed?: { buffer: SharedArrayBuffer; count: number };
}

/** Deltas with more devices than this cross threads packed, and are applied in slices. */
export const PACK_OVER = 2_000;
/** Between two slices of a big delta the thread sleeps this long (slices.ts): half its time, at most, goes to the change. */
const REST_MS = 2;
/** Entries applied between two looks at the clock (Slices.next costs ~30 ns). */
const CHECK_EVERY = 64;

/** JSON has no Infinity (a csv lease never ends): such numbers travel as text. */
const num = (n: number): number | string => (Number.isFinite(n) ? n : String(n));

/**
 * The delta as it should cross a thread boundary: as it is when small; else
 * its devices as JSON lines in a SharedArrayBuffer, built here (the identity
 * thread), so the receiving threads deserialize one buffer, not N objects.
 */
export function packDelta(delta: IdentityDelta): IdentityDelta {
  if (delta.devices.length <= PACK_OVER) return delta;
  const text = delta.devices
    // A leaseHostname equal to the hostname (no static name) travels as 0: one string on the other side, not two.
    .map(([ip, d]) => JSON.stringify(d ? [ip, d.mac, d.hostname, d.leaseHostname === d.hostname ? 0 : d.leaseHostname, num(d.start), num(d.end)] : [ip]))
    .join('\n');
  const buffer = new SharedArrayBuffer(Buffer.byteLength(text));
  Buffer.from(buffer).write(text);
  return { reset: delta.reset, devices: [], ...(delta.statics ? { statics: delta.statics } : {}), packed: { buffer, count: delta.devices.length } };
}

type Entry = [ip: string, device: Device | null];

/** Reads a packed delta's devices one at a time (JSON lines, packDelta), without building them all first. */
function packedReader(buffer: SharedArrayBuffer): () => Entry {
  const b = Buffer.from(buffer);
  let off = 0;
  return () => {
    const nl = b.indexOf(0x0a, off);
    const end = nl === -1 ? b.length : nl;
    // [ip] when the address maps nothing now, else [ip, mac, hostname, leaseHostname (0: the hostname), start, end].
    const f = JSON.parse(b.toString('utf8', off, end)) as [string, string?, string?, (string | 0)?, (number | string)?, (number | string)?];
    off = end + 1;
    if (f.length === 1) return [f[0], null];
    const hostname = f[2]!;
    return [f[0], { ip: f[0], mac: f[1]!, hostname, leaseHostname: f[3] === 0 ? hostname : f[3]!, start: Number(f[4]), end: Number(f[5]) }];
  };
}

/** Whether a delta is applied in slices (else in one turn, as a small one costs less than a slice). */
export function isBig(delta: IdentityDelta): boolean {
  return delta.packed !== undefined || delta.devices.length > PACK_OVER;
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

  /** Applies a delta in place, in one turn: O(delta.devices), plus O(statics) when they changed. A packed one: applyInSlices. */
  apply(delta: IdentityDelta): void {
    if (delta.packed) throw new Error('a packed identity delta is applied in slices');
    if (delta.reset) {
      this.current.clear();
      this.macs.clear();
    }
    if (delta.statics) this.setStatics(delta.statics);
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

  /**
   * Applies a delta a slice at a time (a big one: isBig). In place, the
   * table stays right for the queries answered between slices: every address
   * maps its old device or its new one, and every address not in the delta
   * keeps its own. New devices go in first, with their MACs; only then do
   * the old devices' MACs go, where no new device took them. So a device
   * that moves is never unknown by MAC mid-apply. For a reset, apply to a
   * new table and swap it in once done (IdentityHolder).
   */
  async applyInSlices(delta: IdentityDelta, slices = new Slices(SLICE_MS, REST_MS)): Promise<void> {
    if (delta.reset) {
      this.current.clear();
      this.macs.clear();
    }
    if (delta.statics) this.setStatics(delta.statics);
    const count = delta.packed ? delta.packed.count : delta.devices.length;
    const read = delta.packed ? packedReader(delta.packed.buffer) : (i: number): Entry => delta.devices[i]!;
    const replaced: Device[] = [];
    for (let i = 0; i < count; i++) {
      const [ip, next] = read(i);
      const old = this.current.get(ip);
      if (old !== undefined && old.mac !== '') replaced.push(old);
      if (next === null) this.current.delete(ip);
      else {
        const d = Object.freeze(next);
        this.current.set(ip, d);
        if (d.mac !== '') this.macs.set(d.mac, d);
      }
      if (i % CHECK_EVERY === CHECK_EVERY - 1) await slices.next();
    }
    for (let i = 0; i < replaced.length; i++) {
      const old = replaced[i]!;
      if (this.macs.get(old.mac) === old) this.macs.delete(old.mac);
      if (i % CHECK_EVERY === CHECK_EVERY - 1) await slices.next();
    }
  }

  private setStatics(statics: [mac: string, name: string][]): void {
    this.statics = new Map(statics);
    this.staticDevices = new Map(statics.map(([mac, name]) => [mac, Object.freeze({ ip: '', mac, hostname: name, leaseHostname: '', start: 0, end: Infinity })]));
    this.relayedDevices.clear();
  }

  /** The whole table as one delta: what a query thread that (re)starts is given once. */
  snapshot(): IdentityDelta {
    return { reset: true, devices: [...this.current], statics: [...this.statics] };
  }

  /** A table from a whole delta, in one go (a thread that is not answering queries yet, the CLI). */
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
