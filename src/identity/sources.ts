// The identity sources as the main thread sees them. The lease files are
// watched, read and parsed in the identity thread (identityWorker.ts), which
// posts what changed as an IdentityDelta; here it is applied to the one table
// (O(change): in one event-loop turn when small, in slices when big, see
// table.ts) and emitted as 'swap' for the other query threads (workers.ts).
// The main thread never reads a lease file.
//
// A source that fails to read or parse keeps its last good leases, its
// problems are logged as file:line:col and counted: fail-closed, because a
// broken file can only leave the mapping as it was (and a lease's own end
// time still retires it), never hand an address to a device it never had.
//
// The CLI (validate, check) reads the files once, here too (loadIdentity).
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { formatProblem, type Problem } from '../errors.js';
import type { Logger } from '../log.js';
import { workerUrl } from '../workerUrl.js';
import { LeaseHistory } from './history.js';
import { LeaseFile, type LeaseSourceConfig } from './leaseFile.js';
import type { Lease, LeaseFormat } from './leaseFormats.js';
import { LeaseModel } from './model.js';
import type { IdentityUpdate } from './reader.js';
import { IdentityTable, isBig, type IdentityDelta } from './table.js';
import type { FromIdentity, ToIdentity } from './identityWorker.js';

export type { LeaseSourceConfig } from './leaseFile.js';

export interface IdentityConfig {
  leases: readonly LeaseSourceConfig[];
  /** mac → name */
  static: ReadonlyMap<string, string>;
}

export interface SourceStatus {
  format: LeaseFormat;
  file: string;
  /** Addresses the source maps (the last row of each). */
  leases: number;
  /** The problems of the last read, empty when it was good. */
  problems: string[];
  loadedAt?: number;
}

/** Counters the metrics registry publishes (`format|result` → n). */
export interface IdentityCounters {
  identityReloads: Map<string, number>;
}

/**
 * The table of a query thread. Deltas change it in place, in the order they
 * came: a small one at once, a big one in slices (table.ts) while the next
 * ones wait. A big whole table (reset) is built aside and swapped in at once,
 * so no query ever sees it half-filled. Read `current` at each use.
 */
export class IdentityHolder {
  private readonly queue: { delta: IdentityDelta; done: (error?: unknown) => void }[] = [];
  private busy = false;

  constructor(public current: IdentityTable = new IdentityTable()) {}

  /** Applies `delta` after those before it; `done` is called once it is in force (in this turn, when it could be applied at once). */
  update(delta: IdentityDelta, done: (error?: unknown) => void = () => {}): void {
    if (!this.busy && !isBig(delta)) {
      this.current.apply(delta);
      return done();
    }
    this.queue.push({ delta, done });
    if (!this.busy) void this.drain();
  }

  private async drain(): Promise<void> {
    this.busy = true;
    for (let next = this.queue.shift(); next; next = this.queue.shift()) {
      const { delta, done } = next;
      try {
        if (!isBig(delta)) this.current.apply(delta);
        else if (delta.reset) {
          const table = new IdentityTable();
          await table.applyInSlices(delta);
          this.current = table;
        } else await this.current.applyInSlices(delta);
        done();
      } catch (e) {
        done(e); // a bug: said, and the next delta still applies
      }
    }
    this.busy = false;
  }
}

/** Reads one source now, whole (validate, check): for kea-csv with the older files Kea's cleanup keeps. */
export function readSource(src: LeaseSourceConfig): { leases: Lease[]; problems: Problem[] } {
  const r = new LeaseFile(src).read(true);
  return r.ok ? { leases: r.leases, problems: [] } : { leases: [], problems: r.problems };
}

/** The table and the lease history the files show now: for validate and check. */
export function loadIdentity(config: IdentityConfig, now: number): { table: IdentityTable; history: LeaseHistory; problems: Problem[] } {
  const problems: Problem[] = [];
  const sources = config.leases.map((s) => {
    const r = readSource(s);
    for (const p of r.problems) problems.push(p);
    return r.problems.length ? [] : r.leases;
  });
  return { ...buildIdentity(sources, config.static, now), problems };
}

/** A table (and its history) from parsed sources, in config order. */
export function buildIdentity(sources: readonly (readonly Lease[])[], statics: ReadonlyMap<string, string>, now: number): { table: IdentityTable; history: LeaseHistory } {
  const model = new LeaseModel(sources.length, statics);
  sources.forEach((leases, i) => model.replace(i, leases));
  const table = IdentityTable.of(model.commit());
  return { table, history: LeaseHistory.build(table, sources, (mac) => model.latestLease(mac), statics, now) };
}

const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5000;

/**
 * Emits 'swap' (the IdentityDelta) after each update is applied, a rejected read included.
 * The identity thread runs only while a lease source is configured.
 */
export class IdentitySources extends EventEmitter {
  private status: SourceStatus[] = [];
  private thread: Worker | undefined;
  private seq = 0;
  private readonly waiting = new Map<number, () => void>();
  private watching = false;
  private closed = false;
  private failures = 0;
  private startedAt = 0;
  /** The main thread's time to apply the last delta (ms; a big one's slices and the turns between them), and the identity thread's to make it. */
  lastApplyMs = 0;
  lastUpdateMs = 0;

  constructor(
    private config: IdentityConfig,
    readonly holder: IdentityHolder,
    private readonly counters: IdentityCounters,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    super();
  }

  /** Reads every source (in the identity thread); resolves once the first table is in place, so the first query sees the devices. */
  start(): Promise<void> {
    return this.configure(this.config);
  }

  sources(): readonly SourceStatus[] {
    return this.status;
  }

  /** True while any source's last read failed (the page and /readyz detail show it). */
  get failing(): boolean {
    return this.status.some((s) => s.problems.length > 0);
  }

  /** A config reload with new sources or static names; resolves when the table reflects them. */
  configure(config: IdentityConfig): Promise<void> {
    this.config = config;
    this.status = config.leases.map((s) => ({ format: s.format, file: s.file, leases: 0, problems: [] }));
    if (config.leases.length === 0) {
      // Only identity.static (or nothing): no file to read, so no thread.
      void this.thread?.terminate();
      this.thread = undefined;
      this.answerAll();
      this.applied({ ids: [], delta: { reset: true, devices: [], statics: [...config.static] }, reads: [], ms: 0 });
      return Promise.resolve();
    }
    return this.request((id) => ({ type: 'configure', id, sources: [...config.leases], statics: [...config.static] }));
  }

  /** Re-reads every source whole now (SIGHUP); resolves when the new table is in place. */
  reload(): Promise<void> {
    if (this.config.leases.length === 0 || this.closed) return Promise.resolve();
    return this.request((id) => ({ type: 'reload', id }));
  }

  watch(): void {
    if (this.closed) return;
    this.watching = true;
    this.thread?.postMessage({ type: 'watch' } satisfies ToIdentity);
  }

  private request(message: (id: number) => ToIdentity): Promise<void> {
    if (this.closed) return Promise.resolve();
    const id = ++this.seq;
    return new Promise<void>((resolve) => {
      this.waiting.set(id, resolve);
      const t = this.thread ?? this.spawn();
      t.postMessage(message(id));
      t.ref(); // keep the process alive while a request is pending
    });
  }

  private spawn(): Worker {
    const w = new Worker(workerUrl('identityWorker', import.meta.url), { name: 'sinkhole-identity' });
    this.thread = w;
    this.startedAt = Date.now();
    w.unref();
    w.on('message', (m: FromIdentity) => {
      if (m.type === 'warn') this.log.warn(m.code, m.message, m.fields);
      else this.applied(m);
    });
    w.on('error', (e) => this.log.error('SH_WORKER', 'the identity thread failed', { error: String(e) }));
    w.on('exit', (code) => {
      if (this.thread !== w) return;
      this.thread = undefined;
      if (this.closed) return;
      // The devices known stay in force meanwhile (and each lease still ends at its own time); nothing
      // waits for the lost requests: a start-up goes on serving DNS, with what identity.static says.
      this.answerAll();
      this.failures = Date.now() - this.startedAt > 60_000 ? 1 : this.failures + 1;
      const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (this.failures - 1));
      this.log.error('SH_WORKER', 'the identity thread stopped; the devices known stay in force, and it restarts', { code, restartInMs: delay });
      setTimeout(() => this.restart(), delay).unref();
    });
    if (this.watching) w.postMessage({ type: 'watch' } satisfies ToIdentity);
    return w;
  }

  /** A new identity thread starts from nothing: its first update is the whole table (reset), and answers every request still waiting. */
  private restart(): void {
    if (this.closed || this.thread || this.config.leases.length === 0) return;
    const config = this.config;
    void this.request((id) => ({ type: 'configure', id, sources: [...config.leases], statics: [...config.static] }));
  }

  private applied(u: IdentityUpdate): void {
    if (this.closed) return;
    const t0 = performance.now();
    // A big delta is applied in slices (table.ts): what follows waits until it is in force.
    this.holder.update(u.delta, (e) => {
      if (e) this.log.error('SH_INTERNAL', 'a lease change could not be applied', { error: String(e) });
      this.lastApplyMs = performance.now() - t0;
      this.inForce(u);
    });
  }

  private inForce(u: IdentityUpdate): void {
    if (this.closed) return;
    this.lastUpdateMs = u.ms;
    for (const r of u.reads) this.record(r.source, r.ok, r.problems, r.addresses);
    this.emit('swap', u.delta satisfies IdentityDelta);
    // Requests are answered in order: this update also answers any older one a stopped thread lost.
    const last = Math.max(0, ...u.ids);
    for (const [id, resolve] of this.waiting) {
      if (id > last) continue;
      this.waiting.delete(id);
      resolve();
    }
    if (this.waiting.size === 0) this.thread?.unref();
  }

  private record(i: number, ok: boolean, problems: Problem[], addresses: number): void {
    const src = this.config.leases[i];
    const st = this.status[i];
    if (!src || !st) return;
    const key = `${src.format}|${ok ? 'success' : 'failure'}`;
    this.counters.identityReloads.set(key, (this.counters.identityReloads.get(key) ?? 0) + 1);
    if (!ok) {
      st.problems = problems.map(formatProblem);
      // Only a file that was once read has last good leases to keep.
      const kept = st.loadedAt === undefined ? 'no version of it has been read yet, so it names no device until it is fixed' : 'its last good leases stay in force';
      for (const p of st.problems) this.log.error(problems[0]!.code, `lease file rejected; ${kept}: ${p}`, { format: src.format });
      return;
    }
    st.problems = [];
    st.leases = addresses;
    st.loadedAt = this.now();
  }

  /** Ends the identity thread abruptly, as a crash would (tests use it; it restarts). */
  async kill(): Promise<void> {
    await this.thread?.terminate();
  }

  private answerAll(): void {
    for (const resolve of this.waiting.values()) resolve();
    this.waiting.clear();
  }

  close(): void {
    this.closed = true;
    this.answerAll();
    void this.thread?.terminate();
    this.thread = undefined;
  }
}
