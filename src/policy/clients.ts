// Resolves a client to what the policy says about it: may it use this
// resolver at all (clients.allowFrom), which groups it is in, and which
// exceptions name it. Addresses, groups and exceptions are compiled once per
// policy generation; each address is resolved once, then served from a
// bounded map. Device selectors (mac:, host:) add to what the address gets,
// and are looked at only when a device is known and the policy names one.
import { CidrSet, parseAddress, parseCidr, type ParsedAddress } from '../net/cidr.js';
import type { Exception } from './exceptions.js';
import { parseSelector } from '../net/mac.js';
import type { Device } from '../identity/table.js';

export interface ClientView {
  allowed: boolean;
  groups: readonly string[];
  /** Every exception naming this client, active or expired: expiry is checked per query. */
  exceptions: readonly Exception[];
}

const DENIED: ClientView = Object.freeze({ allowed: false, groups: [], exceptions: [] });
/** Bounds the per-address memo; a scan of the whole IPv6 space cannot grow it without limit. */
const MAX_MEMO = 65_536;

export function compileCidrs(entries: readonly string[]): CidrSet {
  const set = new CidrSet();
  for (const e of entries) {
    const net = parseCidr(e);
    if (typeof net !== 'string') set.add(net);
  }
  return set;
}

/** The mac: and host: selectors among `entries`. */
export function deviceSelectors(entries: readonly string[]): { macs: Set<string>; hosts: Set<string> } {
  const macs = new Set<string>();
  const hosts = new Set<string>();
  for (const e of entries) {
    const s = parseSelector(e);
    if (typeof s === 'string') continue;
    if (s.kind === 'mac') macs.add(s.mac);
    else if (s.kind === 'host') hosts.add(s.host);
  }
  return { macs, hosts };
}

interface Compiled {
  exception: Exception;
  nets: CidrSet;
  groups: string[];
  macs: Set<string>;
  hosts: Set<string>;
}

interface GroupDef {
  name: string;
  nets: CidrSet;
  macs: Set<string>;
  hosts: Set<string>;
}

export class ClientDirectory {
  private readonly memo = new Map<string, ClientView>();
  /** Per device (the table's frozen object): the view it was combined with, and the result. */
  private readonly deviceMemo = new WeakMap<Device, { base: ClientView; view: ClientView }>();
  private readonly compiled: Compiled[];
  private readonly groupDefs: GroupDef[];
  /** Whether any group or exception names a device; when none does, identity is never looked up. */
  readonly byDevice: boolean;

  constructor(
    private readonly allowFrom: CidrSet,
    groups: readonly { name: string; members: readonly string[] }[],
    exceptions: readonly Exception[],
  ) {
    this.groupDefs = groups.map((g) => ({ name: g.name, nets: compileCidrs(g.members), ...deviceSelectors(g.members) }));
    const names = new Set(groups.map((g) => g.name));
    this.compiled = exceptions.map((exception) => ({
      exception,
      nets: compileCidrs(exception.clients.filter((c) => !names.has(c))),
      groups: exception.clients.filter((c) => names.has(c)),
      ...deviceSelectors(exception.clients),
    }));
    this.byDevice = [...this.groupDefs, ...this.compiled].some((x) => x.macs.size > 0 || x.hosts.size > 0);
  }

  view(address: string): ClientView {
    let v = this.memo.get(address);
    if (v) return v;
    v = this.resolve(address);
    if (this.memo.size >= MAX_MEMO) this.memo.clear();
    this.memo.set(address, v);
    return v;
  }

  /**
   * What the address gets, plus what the device at it gets by MAC or
   * hostname. Memoised per device object, so the query path allocates
   * nothing once a device has been seen.
   */
  viewOf(address: string, device: Device | undefined): ClientView {
    const base = this.view(address);
    if (!this.byDevice || device === undefined || !base.allowed) return base;
    const m = this.deviceMemo.get(device);
    if (m !== undefined && m.base === base) return m.view;
    const view = this.combine(base, address, device);
    this.deviceMemo.set(device, { base, view });
    return view;
  }

  /** For `check --client MAC`: the device alone, with no address (so no IP or CIDR rule applies). */
  viewOfDevice(device: Device): ClientView {
    return this.combine({ allowed: true, groups: [], exceptions: [] }, undefined, device);
  }

  private combine(base: ClientView, address: string | undefined, d: Device): ClientView {
    const names = [d.hostname, d.leaseHostname].filter(Boolean);
    const named = (x: { macs: Set<string>; hosts: Set<string> }): boolean => (d.mac !== '' && x.macs.has(d.mac)) || names.some((h) => x.hosts.has(h));
    const groups = [...new Set([...base.groups, ...this.groupDefs.filter(named).map((g) => g.name)])];
    if (groups.length === base.groups.length && !this.compiled.some(named)) return base;
    const addr = address === undefined ? undefined : parseAddress(address);
    const exceptions = this.compiled.filter((c) => this.applies(c, addr, groups) || named(c)).map((c) => c.exception);
    return { allowed: true, groups, exceptions };
  }

  private applies(c: Compiled, addr: ParsedAddress | undefined, groups: readonly string[]): boolean {
    return (addr !== undefined && c.nets.contains(addr)) || c.groups.some((g) => groups.includes(g));
  }

  private resolve(address: string): ClientView {
    const addr = parseAddress(address);
    if (!addr || !this.allowFrom.contains(addr)) return DENIED;
    const groups = this.groupDefs.filter((g) => g.nets.contains(addr)).map((g) => g.name);
    const exceptions = this.compiled.filter((c) => this.applies(c, addr, groups)).map((c) => c.exception);
    return { allowed: true, groups, exceptions };
  }
}
