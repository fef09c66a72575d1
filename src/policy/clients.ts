// Resolves a client address to what the policy says about it: may it use
// this resolver at all (clients.allowFrom), which groups it is in, and which
// exceptions name it. Matchers are compiled once per policy generation and
// each address is resolved once, then served from a bounded map.
import { CidrSet, parseAddress, parseCidr } from './cidr.js';
import type { Exception } from './exceptions.js';

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

export class ClientDirectory {
  private readonly memo = new Map<string, ClientView>();
  private readonly compiled: { exception: Exception; nets: CidrSet; groups: string[] }[];

  constructor(
    private readonly allowFrom: CidrSet,
    private readonly groups: ReadonlyMap<string, CidrSet>,
    exceptions: readonly Exception[],
  ) {
    this.compiled = exceptions.map((exception) => ({
      exception,
      nets: compileCidrs(exception.clients.filter((c) => !groups.has(c))),
      groups: exception.clients.filter((c) => groups.has(c)),
    }));
  }

  view(address: string): ClientView {
    let v = this.memo.get(address);
    if (v) return v;
    v = this.resolve(address);
    if (this.memo.size >= MAX_MEMO) this.memo.clear();
    this.memo.set(address, v);
    return v;
  }

  private resolve(address: string): ClientView {
    const addr = parseAddress(address);
    if (!addr || !this.allowFrom.contains(addr)) return DENIED;
    const groups = [...this.groups].filter(([, nets]) => nets.contains(addr)).map(([name]) => name);
    const exceptions = this.compiled
      .filter((c) => c.nets.contains(addr) || c.groups.some((g) => groups.includes(g)))
      .map((c) => c.exception);
    return { allowed: true, groups, exceptions };
  }
}
