// `workers: N`: the main thread runs one query path (app.ts DataPlane) and this pool runs N−1
// more in worker threads (dataPlaneThread.ts), each bound to the same addresses with
// SO_REUSEPORT, so the kernel spreads queries over them and QPS scales with the cores given.
//
// Threads rather than processes: one compiled policy is shared by all of them (its arrays are
// SharedArrayBuffers, no copy per thread), signals, logs and the report stay in one process, and
// an uncaught error or an out-of-memory in one thread ends that thread only; the pool restarts
// it (with backoff) while the others keep answering.
//
// What stays one for the whole server lives on the main thread: the report (threads send their
// blocked queries in batches), the reload (the main thread compiles once and hands every thread
// the new generation), and /metrics (a scrape asks each thread for its counts and sums them; a
// thread that died hands its last counts to `retired`, so counters never go down).
import { Worker } from 'node:worker_threads';
import type { Endpoint } from './config/config.js';
import type { Logger } from './log.js';
import type { ThreadSample } from './metrics/registry.js';
import { Stats, type StatsData } from './metrics/stats.js';
import { sharePolicyData, type PolicyData } from './policy/generation.js';
import type { ComplianceReport, ReportEvent } from './report/report.js';
import type { PlaneGauges } from './dataPlane.js';
import { workerUrl } from './workerUrl.js';
import type { IdentityDelta } from './identity/table.js';

/** What a query thread starts from (worker_threads workerData). */
/** The addresses every query thread binds (the main thread's ports: the kernel chose them for port 0). */
export interface ThreadEndpoints {
  dns: Endpoint[];
  dot: Endpoint[];
  doh: Endpoint[];
}

export interface ThreadInit {
  index: number;
  endpoints: ThreadEndpoints;
  data: PolicyData;
  number: number;
  /** The whole address → device table, once (identity/table.ts snapshot). */
  identity: IdentityDelta;
}

export type ToThread =
  | { type: 'policy'; data: PolicyData; number: number }
  | { type: 'identity'; delta: IdentityDelta }
  | { type: 'stats'; id: number }
  | { type: 'reopen' }
  | { type: 'reloadTls' }
  | { type: 'close' };

export type FromThread =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'stats'; id: number; stats: StatsData; gauges: PlaneGauges }
  | { type: 'report'; events: ReportEvent[] }
  /** A NOTIFY the thread's validate stage took for an RPZ zone: the main thread's feeds check it. */
  | { type: 'notify'; zone: string; from: string };

/** How long a scrape waits for a thread's counts before it uses the last ones it had. */
const STATS_TIMEOUT_MS = 1000;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5000;

interface Slot {
  index: number;
  worker: Worker | undefined;
  /** Bound and answering. */
  ready: boolean;
  /** The last counts and gauges the thread sent. */
  stats: StatsData | undefined;
  gauges: PlaneGauges | undefined;
  /** Consecutive restarts, for the backoff; reset once a thread has stayed up a while. */
  failures: number;
  startedAt: number;
}

export class WorkerPool {
  private readonly slots: Slot[];
  /** Counts of threads that ended, so the sums stay monotonic. */
  private readonly retired = new Stats();
  private merged_: Stats | undefined;
  private endpoints: ThreadEndpoints = { dns: [], dot: [], doh: [] };
  private data: PolicyData | undefined;
  private number = 0;
  private closing = false;
  private seq = 0;
  private readonly waiting = new Map<number, { left: number; done: () => void }>();
  restarts = 0;

  /** A NOTIFY a query thread took (app.ts hands it to the RPZ feeds). */
  onNotify: (zone: string, from: string) => void = () => {};

  constructor(
    threads: number,
    private readonly report: ComplianceReport,
    private readonly log: Logger,
    /** The main thread's identity table as it is now: what a (re)started thread starts from. */
    private readonly identityTable: () => IdentityDelta,
  ) {
    this.slots = Array.from({ length: threads }, (_, i) => ({ index: i + 1, worker: undefined, ready: false, stats: undefined, gauges: undefined, failures: 0, startedAt: 0 }));
  }

  /** Starts every thread on the ports the main thread bound; rejects if one cannot bind. */
  async start(endpoints: ThreadEndpoints, data: PolicyData, number: number): Promise<void> {
    this.endpoints = endpoints;
    this.data = sharePolicyData(data);
    this.number = number;
    await Promise.all(this.slots.map((s) => this.spawn(s)));
  }

  private spawn(slot: Slot): Promise<void> {
    const init: ThreadInit = { index: slot.index, endpoints: this.endpoints, data: this.data!, number: this.number, identity: this.identityTable() };
    const worker = new Worker(workerUrl('dataPlaneThread', import.meta.url), { workerData: init, name: `sinkhole-query-${slot.index}` });
    slot.worker = worker;
    slot.startedAt = Date.now();
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (m: FromThread) => {
        switch (m.type) {
          case 'ready':
            ready = true;
            slot.ready = true;
            resolve();
            break;
          case 'failed':
            reject(new Error(m.message));
            break;
          case 'stats':
            slot.stats = m.stats;
            slot.gauges = m.gauges;
            this.answered(m.id);
            break;
          case 'report':
            this.report.ingest(m.events);
            break;
          case 'notify':
            this.onNotify(m.zone, m.from);
            break;
        }
      });
      worker.on('error', (e) => this.log.error('SH_WORKER', 'a query thread failed', { worker: slot.index, error: String(e) }));
      worker.on('exit', (code) => {
        if (slot.worker !== worker) return;
        slot.worker = undefined;
        slot.ready = false;
        // Its counts so far stay in the sums.
        if (slot.stats) this.retired.add(slot.stats);
        slot.stats = undefined;
        slot.gauges = undefined;
        for (const id of [...this.waiting.keys()]) this.answered(id);
        if (!ready) return reject(new Error(`query thread ${slot.index} exited with code ${code} before it was ready`));
        if (this.closing) return;
        this.restarts++;
        slot.failures = Date.now() - slot.startedAt > 60_000 ? 1 : slot.failures + 1;
        const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.failures - 1));
        this.log.error('SH_WORKER', 'a query thread died; the others keep answering, and it restarts', { worker: slot.index, code, restartInMs: delay });
        setTimeout(() => {
          if (this.closing) return;
          this.spawn(slot).catch((e: unknown) => this.log.error('SH_WORKER', 'a query thread could not restart', { worker: slot.index, error: String(e) }));
        }, delay).unref();
      });
    });
  }

  /** A new generation: every thread swaps to it (and the next restart starts from it). */
  policy(data: PolicyData, number: number): void {
    this.data = data;
    this.number = number;
    this.send({ type: 'policy', data, number });
  }

  /**
   * The lease files changed: every thread applies the same delta the main thread applied (O(change),
   * never the whole table). A thread that starts later is given the table as it is then, so deltas
   * sent before it started are already in it.
   */
  identity(delta: IdentityDelta): void {
    this.send({ type: 'identity', delta });
  }

  /** Asks every thread for its counts (at most STATS_TIMEOUT_MS); a scrape then reads merged(). */
  refresh(): Promise<void> {
    const live = this.slots.filter((s) => s.ready);
    this.merged_ = undefined;
    if (!live.length) return Promise.resolve();
    const id = ++this.seq;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.answered(id, true), STATS_TIMEOUT_MS);
      this.waiting.set(id, {
        left: live.length,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      for (const s of live) s.worker!.postMessage({ type: 'stats', id } satisfies ToThread);
    });
  }

  private answered(id: number, all = false): void {
    const w = this.waiting.get(id);
    if (!w) return;
    if (all || --w.left <= 0) {
      this.waiting.delete(id);
      w.done();
    }
  }

  /** The main thread's counts plus every worker thread's (live or retired), as of the last refresh. */
  merged(main: Stats): Stats {
    if (this.merged_) return this.merged_;
    const sum = new Stats();
    sum.add(main.toData());
    sum.add(this.retired.toData());
    for (const s of this.slots) if (s.stats) sum.add(s.stats);
    return (this.merged_ = sum);
  }

  gauges(): PlaneGauges[] {
    return this.slots.flatMap((s) => (s.worker && s.gauges ? [s.gauges] : []));
  }

  threads(): ThreadSample[] {
    return this.slots.flatMap((s) => (s.ready && s.gauges ? [{ index: s.index, queries: s.gauges.queries, loopDelay: s.gauges.loopDelay }] : []));
  }

  /** Worker threads bound and answering now. */
  get live(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  reopenLogs(): void {
    this.send({ type: 'reopen' });
  }

  /** listen.tls changed and the main thread accepted it: every thread re-reads it. */
  reloadTls(): void {
    this.send({ type: 'reloadTls' });
  }

  /** Ends thread `index` abruptly, as a crash would (tests use it; the pool restarts it). */
  async kill(index: number): Promise<void> {
    await this.slots.find((s) => s.index === index)?.worker?.terminate();
  }

  /** Each thread stops taking queries, answers those in flight, and exits. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      this.slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            const w = s.worker;
            if (!w) return resolve();
            w.once('exit', () => resolve());
            w.postMessage({ type: 'close' } satisfies ToThread);
          }),
      ),
    );
  }

  private send(m: ToThread): void {
    for (const s of this.slots) s.worker?.postMessage(m);
  }
}
