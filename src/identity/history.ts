// Who held an address when, from the rows the lease files show: for
// `sinkhole check --at TIME --client IP`, which reads the files once. Kea's
// memfile keeps every row since its last cleanup (LFC), dhcpd's every block
// since its hourly rewrite, so they can say who had an address hours ago.
//
// The server does not need this: the compliance report resolves each blocked
// query's device from the table as it was when the query was answered (or one
// event-loop turn later), never from a history (report/report.ts).
import type { Lease } from './leaseFormats.js';
import type { Device, IdentityTable } from './table.js';

interface Interval {
  mac: string;
  hostname: string;
  leaseHostname: string;
  from: number;
  to: number;
}

/** How many holders are kept per address, and for how long after they left. */
const HISTORY_PER_ADDRESS = 16;
const HISTORY_MS = 8 * 86_400_000;

export class LeaseHistory {
  private constructor(
    private readonly table: IdentityTable,
    private readonly history: ReadonlyMap<string, readonly Interval[]>,
  ) {}

  /**
   * `sources` in config order, each in file order; `latestLease(mac)` is the lease the MAC holds now
   * (LeaseModel). A row ends at its lease end, at the next row for the address, or when its MAC
   * took a later lease elsewhere; a release ends whatever held the address.
   */
  static build(
    table: IdentityTable,
    sources: readonly (readonly Lease[])[],
    latestLease: (mac: string) => Lease | undefined,
    statics: ReadonlyMap<string, string>,
    now: number,
  ): LeaseHistory {
    const rowsByIp = new Map<string, Lease[]>();
    for (const leases of sources) {
      for (const lease of leases) {
        const rows = rowsByIp.get(lease.ip);
        if (rows) rows.push(lease);
        else rowsByIp.set(lease.ip, [lease]);
      }
    }
    const oldest = now - HISTORY_MS;
    const history = new Map<string, Interval[]>();
    for (const [ip, rows] of rowsByIp) {
      const fresh: Interval[] = [];
      rows.forEach((row, k) => {
        const next = rows[k + 1];
        if (!row.active) {
          const last = fresh[fresh.length - 1];
          if (last && last.to > now) last.to = Math.max(last.from, Math.min(last.to, row.start || now));
          return;
        }
        // Formats without a start time: the device has held it since the file was read.
        const from = row.start === 0 ? now : row.start;
        let to = Math.min(row.end, next ? Math.max(from, next.start || now) : Infinity);
        const moved = row.mac ? latestLease(row.mac) : undefined;
        if (moved && moved !== row && moved.ip !== ip) to = Math.min(to, Math.max(from, moved.start || now));
        const name = (row.mac && statics.get(row.mac)) || row.hostname;
        fresh.push({ mac: row.mac, hostname: name, leaseHostname: row.hostname, from, to });
      });
      const kept = fresh.filter((x) => x.to >= oldest);
      if (kept.length) history.set(ip, kept.slice(-HISTORY_PER_ADDRESS));
    }
    return new LeaseHistory(table, history);
  }

  /** The device that held `ip` at time `at`: the current lease if it covers `at`, else the history; or undefined. */
  deviceAt(ip: string, at: number): Device | undefined {
    const now = this.table.lookup(ip, at);
    if (now) return now;
    const h = this.history.get(ip);
    if (!h) return undefined;
    for (let i = h.length - 1; i >= 0; i--) {
      const x = h[i]!;
      if (at >= x.from && at < x.to) return { ip, mac: x.mac, hostname: x.hostname, leaseHostname: x.leaseHostname, start: x.from, end: x.to };
    }
    return undefined;
  }
}
