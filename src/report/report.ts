// The compliance report: which devices sent blocked queries, how many, first
// and last seen, their top lists, and attempts per hour — the devices that
// still have the app. A row is a device: keyed by MAC when the identity
// sources know it (so a device keeps one row as DHCP moves it), else by address.
//
// observe() is on the query path and only copies four references into a
// fixed ring (no object, closure or Promise per query); the ring is drained
// once per event-loop turn, off the query path, where each event's device is
// resolved from the identity table (as it is one turn after the query, so as
// it was when the query was answered) and the events are aggregated here and
// handed to the store (state file, or PostgreSQL). Bounded: a
// device silent for longer than the window is forgotten, and past
// maxClients the least active are evicted.
//
// Clients that went over clients.rateLimit are listed too, with how many of
// their queries were limited (issue 9). With workers: N, the other query
// threads hand their events to this one report in batches (ReportBatcher),
// each with its device resolved by the thread that answered it: a batch
// arrives up to REPORT_FLUSH_MS later, when the address may have moved on.
import { deviceFor, macAsked, whoAsked } from '../identity/whoAsked.js';
import type { Config } from '../config/config.js';
import type { Query } from '../dns/query.js';
import type { IdentityHolder } from '../identity/sources.js';
import type { Device } from '../identity/table.js';
import type { Stats } from '../metrics/stats.js';
import type { Outcome } from '../pipeline/types.js';
import type { Observer } from '../stages/metrics.js';
import { mapInSlices } from '../slices.js';

const HOUR = 3_600_000;
/** Events one event-loop turn may queue; past this they are dropped and counted. */
const INTAKE = 16_384;
/** The chart covers the window, at most two weeks of hours. */
const MAX_HOURS = 14 * 24;

interface DeviceRecord {
  client: string;
  mac: string;
  hostname: string;
  count: number;
  first: number;
  last: number;
  lists: Map<string, number>;
  /** Queries over clients.rateLimit (counted in dry run too). */
  rateLimited: number;
}

export interface ReportRow {
  /** The address the device last asked from. */
  client: string;
  mac: string | null;
  hostname: string | null;
  blocked: number;
  firstSeen: string;
  lastSeen: string;
  topLists: { list: string; count: number }[];
  /** Queries over clients.rateLimit in the window (acted on, or only counted in dry run). */
  rateLimited: number;
}

export interface ReportSnapshot {
  windowSeconds: number;
  /** Where the rows come from: this instance's memory, or the shared PostgreSQL store. */
  source: 'memory' | 'postgres' | 'memory (postgres unreachable)';
  /** Instances whose events are included (1 for memory). */
  instances: number;
  clients: ReportRow[];
  /** Blocked attempts per hour over the window, oldest first. */
  hourly: { hour: string; count: number }[];
  /** The policy hash in force where the report was read (policy/fingerprint.ts). */
  policy?: string;
}

/** One blocked query, with the device resolved: what a store keeps. */
export interface BlockedEvent {
  at: number;
  client: string;
  mac: string;
  hostname: string;
  list: string;
  /** The name asked (compliance events name the last one a device asked); absent where nobody needs it. */
  name?: string;
}

/** A blocked or rate-limited query as another query thread hands it over (workers.ts). */
export interface ReportEvent {
  client: string;
  /** The device that thread saw ('' and '' when none). */
  mac: string;
  hostname: string;
  /** The list that blocked it; undefined for a query that was only rate-limited. */
  list: string | undefined;
  limited: boolean;
  at: number;
  /** The name asked. */
  name?: string;
}

/**
 * The report's stand-in in a worker query thread: it batches blocked and rate-limited queries and
 * hands them to the main thread (which holds the one report) every REPORT_FLUSH_MS or REPORT_BATCH events.
 */
export class ReportBatcher implements Observer {
  private events: ReportEvent[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly send: (events: ReportEvent[]) => void,
    private readonly now: () => number,
    private readonly identity: IdentityHolder,
  ) {}

  observe(q: Query, o: Outcome): void {
    if (o.result !== 'blocked' && !o.limited) return;
    const client = whoAsked(q, o);
    const at = this.now();
    // Resolved now, with the table this thread answered from (one Map probe).
    const d = deviceFor(this.identity.current, client, macAsked(q, o), at);
    this.events.push({
      client,
      mac: d?.mac ?? '',
      hostname: d?.hostname ?? '',
      list: o.result === 'blocked' ? o.list : undefined,
      limited: o.limited !== undefined,
      at,
      name: q.qname,
    });
    if (this.events.length >= REPORT_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), REPORT_FLUSH_MS).unref();
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.events.length) return;
    const batch = this.events;
    this.events = [];
    this.send(batch);
  }
}

const REPORT_FLUSH_MS = 250;
const REPORT_BATCH = 1024;

/** Where drained events go besides this instance's memory (the PostgreSQL writer). */
export interface EventSink {
  push(e: BlockedEvent): void;
}

/** The JSON the state file holds (format 1). */
export interface PersistedReport {
  format: 1;
  devices: { client: string; mac: string; hostname: string; count: number; first: number; last: number; lists: [string, number][]; rateLimited?: number }[];
  hourly: [number, number][];
}

export class ComplianceReport implements Observer {
  private readonly devices = new Map<string, DeviceRecord>();
  private readonly hours = new Map<number, number>();
  private settings!: Config['report'];
  // The intake ring: parallel arrays, so observe() allocates nothing.
  private readonly inClient: string[] = new Array<string>(INTAKE).fill('');
  private readonly inMac: (string | undefined)[] = new Array<string | undefined>(INTAKE).fill(undefined);
  /** The hostname another query thread resolved, or undefined: resolve here. */
  private readonly inHost: (string | undefined)[] = new Array<string | undefined>(INTAKE).fill(undefined);
  /** '' for a query that was only rate-limited. */
  private readonly inList: string[] = new Array<string>(INTAKE).fill('');
  private readonly inName: string[] = new Array<string>(INTAKE).fill('');
  private readonly inLimited = new Uint8Array(INTAKE);
  private readonly inAt = new Float64Array(INTAKE);
  private pending = 0;
  private scheduled = false;
  private readonly drainNow = (): void => this.drain();
  /** Bumped on every change, so the state file is written only when something happened. */
  version = 0;
  /** Where each blocked event goes besides this report: the PostgreSQL store, the compliance-event tracker. */
  readonly sinks: EventSink[] = [];

  constructor(
    settings: Config['report'],
    private readonly now: () => number,
    private readonly identity?: IdentityHolder,
    private readonly stats?: Stats,
  ) {
    this.configure(settings);
  }

  configure(settings: Config['report']): void {
    this.settings = settings;
  }

  get size(): number {
    return this.devices.size;
  }

  observe(q: Query, o: Outcome): void {
    if (o.result !== 'blocked' && !o.limited) return;
    this.intake(
      whoAsked(q, o),
      macAsked(q, o),
      o.result === 'blocked' ? o.list! : '',
      o.limited !== undefined,
      this.now(),
      undefined,
      q.qname,
    );
  }

  /** Events from the other query threads (workers), batched by their ReportBatcher. */
  ingest(events: readonly ReportEvent[]): void {
    for (const e of events) this.intake(e.client, e.mac, e.list ?? '', e.limited, e.at, e.hostname, e.name ?? '');
  }

  /** `hostname` set: the device was resolved by the thread that answered (`mac` is its MAC, '' for none). */
  private intake(client: string, mac: string | undefined, list: string, limited: boolean, at: number, hostname: string | undefined, name: string): void {
    const i = this.pending;
    if (i === INTAKE) {
      if (this.stats) this.stats.reportDropped++;
      return;
    }
    this.inClient[i] = client;
    this.inMac[i] = mac;
    this.inHost[i] = hostname;
    this.inList[i] = list;
    this.inName[i] = name;
    this.inLimited[i] = limited ? 1 : 0;
    this.inAt[i] = at;
    this.pending = i + 1;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.drainNow);
    }
  }

  /** Moves the intake into the aggregate and the sink. Runs off the query path (setImmediate), and before every read. */
  drain(): void {
    this.scheduled = false;
    const n = this.pending;
    if (n === 0) return;
    this.pending = 0;
    const table = this.identity?.current;
    for (let i = 0; i < n; i++) {
      const client = this.inClient[i]!;
      const mac = this.inMac[i];
      const at = this.inAt[i]!;
      const host = this.inHost[i];
      if (host !== undefined) {
        this.add({ at, client, mac: mac ?? '', hostname: host, list: this.inList[i]!, name: this.inName[i]! }, this.inLimited[i] === 1);
      } else {
        // At most one event-loop turn after the query, so the table it was answered with, unless an identity
        // delta landed in that same turn and moved this very address (then the device that holds it now).
        const d: Device | undefined = table && deviceFor(table, client, mac, at);
        this.add({ at, client, mac: d?.mac ?? '', hostname: d?.hostname ?? '', list: this.inList[i]!, name: this.inName[i]! }, this.inLimited[i] === 1);
      }
      this.inMac[i] = undefined;
      this.inHost[i] = undefined;
    }
  }

  /** A blocked query (e.list set), a rate-limited one (limited), or both. */
  private add(e: BlockedEvent, limited: boolean): void {
    this.version++;
    const key = e.mac || e.client;
    let r = this.devices.get(key);
    if (!r) {
      if (this.devices.size >= this.settings.maxClients) this.evict(e.at);
      r = { client: e.client, mac: e.mac, hostname: e.hostname, count: 0, first: e.at, last: e.at, lists: new Map(), rateLimited: 0 };
      this.devices.set(key, r);
    }
    // Another thread's batch arrives up to REPORT_FLUSH_MS late, so an event may predate the row.
    r.first = Math.min(r.first, e.at);
    r.last = Math.max(r.last, e.at);
    r.client = e.client;
    if (e.hostname) r.hostname = e.hostname;
    if (limited) r.rateLimited++;
    if (!e.list) return;
    r.count++;
    r.lists.set(e.list, (r.lists.get(e.list) ?? 0) + 1);
    const h = Math.floor(e.at / HOUR) * HOUR;
    this.hours.set(h, (this.hours.get(h) ?? 0) + 1);
    for (const s of this.sinks) s.push(e);
  }

  /** Drops devices outside the window, then the least active tenth, so eviction is amortised. */
  private evict(now: number): void {
    this.expire(now);
    if (this.devices.size < this.settings.maxClients) return;
    const byActivity = [...this.devices].sort((a, b) => a[1].count + a[1].rateLimited - (b[1].count + b[1].rateLimited) || a[1].last - b[1].last);
    const drop = Math.max(1, Math.ceil(this.settings.maxClients / 10));
    for (const [key] of byActivity.slice(0, drop)) this.devices.delete(key);
  }

  private expire(now: number): void {
    const oldest = now - this.settings.windowMs;
    for (const [key, r] of this.devices) if (r.last < oldest) this.devices.delete(key);
    for (const h of this.hours.keys()) if (h + HOUR <= oldest) this.hours.delete(h);
  }

  /** The report, most active first. Its rows are built in slices: this runs on a query thread (src/slices.ts). */
  async snapshot(): Promise<ReportSnapshot> {
    this.drain();
    const now = this.now();
    this.expire(now);
    const hours = hourly(this.hours, now, this.settings.windowMs);
    // Sorted on the numbers first (ISO times sort as the numbers do), so the rows can be built a slice at a time.
    const devices = [...this.devices.values()].sort((a, b) => b.count - a.count || b.rateLimited - a.rateLimited || b.last - a.last);
    const rows = await mapInSlices(devices, (r) => reportRow(r.client, r.mac, r.hostname, r.count, r.first, r.last, [...r.lists], r.rateLimited));
    return { windowSeconds: this.settings.windowMs / 1000, source: 'memory', instances: 1, clients: rows, hourly: hours };
  }

  toJSON(): PersistedReport {
    this.drain();
    return {
      format: 1,
      devices: [...this.devices.values()].map((r) => ({
        client: r.client, mac: r.mac, hostname: r.hostname, count: r.count, first: r.first, last: r.last, lists: [...r.lists], rateLimited: r.rateLimited,
      })),
      hourly: [...this.hours],
    };
  }

  /** Loads a state file's content; returns false (and loads nothing) when it is not one. */
  load(data: unknown): boolean {
    const p = data as PersistedReport;
    if (!p || p.format !== 1 || !Array.isArray(p.devices) || !Array.isArray(p.hourly)) return false;
    for (const d of p.devices) {
      if (typeof d?.client !== 'string' || typeof d.count !== 'number' || !Array.isArray(d.lists)) return false;
    }
    for (const d of p.devices) {
      const mac = typeof d.mac === 'string' ? d.mac : '';
      this.devices.set(mac || d.client, {
        client: d.client, mac, hostname: typeof d.hostname === 'string' ? d.hostname : '', count: d.count, first: d.first, last: d.last,
        lists: new Map(d.lists.filter((x) => typeof x[0] === 'string' && typeof x[1] === 'number')),
        rateLimited: typeof d.rateLimited === 'number' ? d.rateLimited : 0,
      });
    }
    for (const [h, n] of p.hourly) if (typeof h === 'number' && typeof n === 'number') this.hours.set(h, n);
    this.expire(this.now());
    return true;
  }
}

export function reportRow(
  client: string, mac: string, hostname: string, count: number, first: number, last: number, lists: [string, number][], rateLimited = 0,
): ReportRow {
  return {
    client, mac: mac || null, hostname: hostname || null, blocked: count,
    firstSeen: new Date(first).toISOString(), lastSeen: new Date(last).toISOString(),
    topLists: lists.sort((a, b) => b[1] - a[1]).slice(0, 3).map(([list, c]) => ({ list, count: c })),
    rateLimited,
  };
}

/** Every hour of the window (at most MAX_HOURS), oldest first, zero where nothing was blocked. */
export function hourly(counts: ReadonlyMap<number, number>, now: number, windowMs: number): { hour: string; count: number }[] {
  const last = Math.floor(now / HOUR) * HOUR;
  const n = Math.min(MAX_HOURS, Math.max(1, Math.ceil(windowMs / HOUR)));
  const out: { hour: string; count: number }[] = [];
  for (let h = last - (n - 1) * HOUR; h <= last; h += HOUR) out.push({ hour: new Date(h).toISOString(), count: counts.get(h) ?? 0 });
  return out;
}
