// The composition root: start() builds what must be ONE across the threads (the policy and its
// reload, identity, the compliance report and its events, RPZ feeds and export, /metrics, HTTP),
// and the main thread's query path (dataPlane.ts; with `workers: N`, N−1 more in worker threads).
//
// Over 400 lines on purpose (docs/design.md §5): start() is the composition root, the one place where the
// parts that must be one per process (policy and reload, identity, report, events, RPZ, HTTP, threads)
// are made and wired to each other. Each part's work is in its own module; what is here is the wiring.
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { ReplyCache } from './cache/replyCache.js';
import { systemClock, type Clock } from './clock.js';
import { loadConfig, type Endpoint } from './config/config.js';
import { RpzFeeds } from './policy/rpz/feed.js';
import { SinkholeError } from './errors.js';
import { streamLogger, type Logger } from './log.js';
import { startHttp } from './http/server.js';
import { createRegistry } from './metrics/registry.js';
import { Stats } from './metrics/stats.js';
import { hydrate, type Generation } from './policy/generation.js';
import { PolicyHolder } from './policy/holder.js';
import { Reloader } from './policy/reloader.js';
import { diffExceptions, loadedEvents } from './policy/exceptionEvents.js';
import { ExceptionAudit } from './querylog/exceptionAudit.js';
import { type Handler } from './pipeline/types.js';
import { Forwarder } from './upstream/forwarder.js';
import { VERSION } from './version.js';
import type { Registry } from 'prom-client';
import { ComplianceReport, type ReportSnapshot } from './report/report.js';
// Identity and the shared report (issue 11).
import { hostname } from 'node:os';
import { IdentityHolder, IdentitySources } from './identity/sources.js';
import type { IdentityDelta } from './identity/table.js';
import { ReportStateFile } from './report/state.js';
import { PostgresStore } from './report/postgres.js';
import { renderPage } from './http/page.js';
import { adminPageData } from './http/pageData.js';
import { RecentTotals, SAMPLE_EVERY_MS, totalsOf, type Totals } from './http/recent.js';
import { readHttpToken } from './http/token.js';
import { WorkerPool } from './workers.js';
import { claimReusedAddresses } from './transport/bind.js';
import { DataPlane, type PlaneGauges } from './dataPlane.js';
// The report served a page at a time (issue 8).
import { ReportPages } from './report/pages.js';
import type { LogHealth } from './querylog/lineWriter.js';
import { PolicyStateStore, stateDirProblem } from './state/snapshot.js';
import { restartNotes } from './config/restartNotes.js';
import { degradedNote, rejectedNote } from './http/readiness.js';
import { logExceptions, logWarnings } from './querylog/exceptionLog.js';
import { startingPolicy } from './state/lastGood.js';
// Compliance events to the NAC and the SIEM (issue 20 §1).
import { Announcer } from './events/announcer.js';
import { LocalArbiter, PostgresArbiter } from './events/arbiter.js';
import { policyHash } from './policy/fingerprint.js';
// Serving the enforced lists as a Response Policy Zone (issue 21 §2).
import { RpzExport } from './rpz/export/service.js';

export interface StartOptions {
  configFile: string;
  log?: Logger;
  clock?: Clock;
  /** Watch config, list and exception files (default true). */
  watch?: boolean;
  /**
   * How long HTTP serves a rendered /metrics text and a read of the report again (default 1 s:
   * a flood costs one render a second). Tests that read counters right after a query use 0.
   */
  httpCacheMs?: number;
}

export interface Running {
  dns: { udp: AddressInfo; tcp: AddressInfo }[];
  /** DNS over TLS and over HTTPS listeners (listen.dot, listen.doh), as bound. */
  dot: AddressInfo[];
  doh: AddressInfo[];
  http?: AddressInfo;
  policy: PolicyHolder;
  /** The main thread's counts (and the reload counters); /metrics sums every thread's. */
  stats: Stats;
  registry: Registry;
  reloader: Reloader;
  report: ComplianceReport;
  /** Writes the exception records' history (grant, renew, revoke, lapse...) to the audit trail. */
  exceptionAudit: ExceptionAudit;
  /** The report as /api/blocked-clients serves it: from PostgreSQL when that is the store and it answers. */
  readReport(): Promise<ReportSnapshot>;
  identity: IdentitySources;
  /** The PostgreSQL report store, when report.store names one. */
  reportStore?: PostgresStore;
  /** Writes the report's state file now (tests; also done every few seconds and at close). */
  saveState(): Promise<void>;
  /** Compliance events (events:), when configured. */
  events?: Announcer;
  /** The RPZ export (listen.rpz), when configured: its bound address, serial and counts. */
  rpzExport?: RpzExport;
  cache: () => ReplyCache;
  forwarder: () => Forwarder;
  /** The worker query threads (workers: N > 1), else undefined. */
  workers: WorkerPool | undefined;
  /** Snapshots of the last good policy (tests await state.idle()). */
  state: PolicyStateStore;
  /** The composed pipeline, as the listeners call it (for in-process benchmarks). */
  handler: Handler;
  /** Reopens the query and audit log files (after logrotate moved them). */
  reopenLogs(): Promise<void>;
  /** Re-reads listen.tls (SIGHUP); undefined when applied or there is none, else why it was refused. */
  reloadTls(): string | undefined;
  /** Stops taking queries, answers those in flight (bounded by the upstream timeout), and closes. */
  close(): Promise<void>;
}

export async function start(opts: StartOptions): Promise<Running> {
  const log = opts.log ?? streamLogger();
  const clock = opts.clock ?? systemClock;
  // RPZ zones pulled from a primary are kept as zone files under state.dir: one with no copy yet is
  // transferred first, so the first policy has it (policy/rpz/feed.ts). A config that does not read
  // has no feeds here; startingPolicy says what is wrong with it.
  const rpzFeeds = new RpzFeeds(log);
  let rpzReload: () => void = () => {};
  rpzFeeds.onChange = () => rpzReload();
  try {
    await rpzFeeds.configure(loadConfig(opts.configFile).blocking.rpz);
  } catch {
    // reported by startingPolicy
  }
  // The files on disk, or else the last good snapshot of them (state/lastGood.ts).
  const starting = startingPolicy(opts.configFile, log);
  const initial = starting.data;
  const policy = new PolicyHolder(hydrate(initial, 1));
  const config = (): Generation['config'] => policy.current.config;

  // One for the whole server: identity, the report (fed by every thread), the reloader, /metrics and HTTP.
  const identityHolder = new IdentityHolder();
  const stats = new Stats();
  // Identity: lease files (read in the identity thread) and identity.static; each change arrives as a delta,
  // applied to this thread's table in place and handed to every query thread.
  const identity = new IdentitySources(identityConfig(config()), identityHolder, stats, log, () => clock.now());
  const report = new ComplianceReport(config().report, () => clock.now(), identity.holder, stats);
  const plane = new DataPlane(policy, identityHolder, stats, log, clock, report, (zone, from) => rpzFeeds.notify(zone, from));
  // A (re)started query thread is given the whole table once; after that, only what changes.
  const workers = config().workers > 1 ? new WorkerPool(config().workers - 1, report, log, () => identityHolder.current.snapshot()) : undefined;
  if (workers) workers.onNotify = (zone, from) => rpzFeeds.notify(zone, from);
  if (workers) identity.on('swap', (delta: IdentityDelta) => workers.identity(delta));
  // The report survives restarts (state.dir/report.json) and, with report.store: postgres://, spans instances.
  const stateFile = new ReportStateFile(config().state.dir, report, log);
  stateFile.load();
  const store0 = config().report.store;
  let reportStore: PostgresStore | undefined;
  let announcer: Announcer | undefined;
  let rpzExport: RpzExport | undefined;
  let httpToken = config().listen.httpToken === undefined ? undefined : readHttpToken(config().listen.httpToken!);
  // One writer of state.dir for the whole process; DNS never waits for it.
  const state = new PolicyStateStore(log, stats);
  if (starting.inputs) void state.save(policy.current, starting.inputs);
  let closing = false;
  let closed: Promise<void> | undefined;
  let httpServer: Awaited<ReturnType<typeof startHttp>> | undefined;
  // The last hour's traffic for the admin page: a sample of the cumulative counters a minute, never per query.
  const recent = new RecentTotals();
  const totalsNow = (): Totals => totalsOf(workers?.merged(stats) ?? stats);
  recent.record(clock.now(), totalsNow());
  const sampler = setInterval(() => void (workers?.refresh() ?? Promise.resolve()).then(() => recent.record(clock.now(), totalsNow())), SAMPLE_EVERY_MS);
  sampler.unref();
  const gauge = (pick: (g: PlaneGauges) => number): number => pick(plane.gauges()) + (workers?.gauges().reduce((n, g) => n + pick(g), 0) ?? 0);
  const registry = createRegistry({
    rpzFeeds: () => rpzFeeds.stats(),
    stats: () => workers?.merged(stats) ?? stats,
    generation: () => policy.current,
    cacheEntries: () => gauge((g) => g.cacheEntries),
    cacheBytes: () => gauge((g) => g.cacheBytes),
    tcpConnections: () => gauge((g) => g.tcpConnections),
    connectionEvictions: () => ({
      tcp: gauge((g) => g.tcpEvictions), dot: gauge((g) => g.dotEvictions), doh: gauge((g) => g.dohEvictions), http: httpServer?.evictions ?? 0,
    }),
    connectionRefusals: () => ({
      tcp: gauge((g) => g.tcpRefused), dot: gauge((g) => g.dotRefused), doh: gauge((g) => g.dohRefused), http: httpServer?.refused ?? 0,
    }),
    dohCalmed: () => gauge((g) => g.dohCalmed),
    logs: () => logHealth(),
    dnstap: () => {
      const all = [plane.gauges().dnstap, ...(workers?.gauges().map((g) => g.dnstap) ?? [])];
      return { sent: all.reduce((n, h) => n + h.sent, 0), dropped: all.reduce((n, h) => n + h.dropped, 0), connected: all.filter((h) => h.connected).length };
    },
    encryptedConnections: () => ({ dot: gauge((g) => g.dotConnections), doh: gauge((g) => g.dohConnections) }),
    sourcePorts: () => gauge((g) => g.sourcePorts),
    rateLimitBuckets: () => gauge((g) => g.rateLimitBuckets),
    threads: () => [{ index: 0, ...plane.gauges() }, ...(workers?.threads() ?? [])],
    workerRestarts: () => workers?.restarts ?? 0,
    now: () => clock.now(),
    version: VERSION,
    identityDevices: () => identity.holder.current.size,
    reportStore: () => reportStore,
    events: () => announcer?.counts(),
    rpzExport: () => rpzExport?.metrics(),
    policyFilesOk: () => reloader.lastProblems.length === 0 && !policy.current.degraded,
  });
  // Query threads first (each answers what it has in flight), then HTTP: /readyz says 503 until the end.
  const closeAll = async (): Promise<void> => {
    clearInterval(sampler);
    await Promise.all([workers?.close(), plane.close()]);
    identity.close();
    report.drain();
    await Promise.all([stateFile.close(), reportStore?.close(), announcer?.close(), rpzExport?.close()]);
    await httpServer?.close();
  };
  const readReport = async (): Promise<ReportSnapshot> => ({ ...(await readReportFrom()), policy: policyHash(policy.current) });
  const readReportFrom = async (): Promise<ReportSnapshot> => {
    if (!reportStore) return report.snapshot();
    report.drain(); // this instance's latest events go to the spool first
    await reportStore.flush(true);
    try {
      return await reportStore.read(config().report.maxClients);
    } catch (e) {
      log.warn('SH_REPORT_STORE', 'PostgreSQL report store unreachable; serving this instance\'s report', { error: (e as Error).message });
      return { ...(await report.snapshot()), source: 'memory (postgres unreachable)' };
    }
  };
  // The report is read at most once per httpCacheMs for HTTP (the API's pages and the admin page):
  // a flood of requests costs one read and one render a second (issue 8).
  const reportPages = new ReportPages(readReport, opts.httpCacheMs ?? 1000);
  /** Each log's lost lines and failure, over every query thread (each writes its own lines). */
  const logHealth = (): { name: LogHealth['name']; dropped: number; failing: boolean; failure: LogHealth['failure'] }[] => {
    const all = [plane.gauges().logs, ...(workers?.gauges().map((g) => g.logs) ?? [])].flat();
    return (['queries', 'audit'] as const).map((name) => {
      const mine = all.filter((h) => h.name === name);
      const failure = mine.find((h) => h.failure)?.failure;
      return { name, dropped: mine.reduce((n, h) => n + h.dropped, 0), failing: failure !== undefined, failure };
    });
  };
  /** /readyz stays 200 while DNS is answered; its body names what is degraded. */
  const degraded = (): string | undefined => {
    const audit = logHealth().find((h) => h.name === 'audit')!;
    const notes = [
      degradedNote(policy.current),
      rejectedNote(reloader.lastProblems, policy.current.number),
      // The audit trail is the record of exceptions used: failing to write it must be loud.
      audit.failure && `audit log failing: ${audit.failure.code} since ${new Date(audit.failure.since).toISOString()} (${audit.failure.target}); ${audit.dropped} lines dropped`,
    ].filter((n): n is string => !!n);
    return notes.length ? notes.join('\n') : undefined;
  };
  // The admin page's data is gathered by http/pageData.ts from the parts start() owns.
  const page = async (): Promise<string> =>
    renderPage(
      await adminPageData({
        generation: policy.current, now: clock.now(), lastProblems: reloader.lastProblems, identity, reportPages,
        spooled: () => reportStore?.spooled ?? 0, recent, totals: totalsNow,
        upstreams: () => [plane.forwarder.health(), ...(workers?.gauges().map((g) => g.upstreams) ?? [])], announcer,
      }),
    );
  let dns: Running['dns'] = [];
  let encrypted: { dot: AddressInfo[]; doh: AddressInfo[] } = { dot: [], doh: [] };
  try {
    // The devices are known before the first query (read in the identity thread).
    await identity.start();
    if (workers) await claimReusedAddresses(config().listen);
    dns = await plane.listen(config().listen.dns, workers !== undefined);
    encrypted = await plane.listenEncrypted(config().listen.dot, config().listen.doh, workers !== undefined);
    // The other threads bind the ports the main thread got (the kernel chose them for port 0).
    const bound = (eps: readonly Endpoint[], ports: readonly { port: number }[]): Endpoint[] => eps.map((ep, i) => ({ host: ep.host, port: ports[i]!.port }));
    await workers?.start(
      {
        dns: bound(config().listen.dns, dns.map((d) => d.udp)),
        dot: bound(config().listen.dot, encrypted.dot),
        doh: bound(config().listen.doh, encrypted.doh),
      },
      initial,
      policy.current.number,
    );
    const httpEp = config().listen.http;
    if (httpEp) {
      httpServer = await startHttp(
        httpEp,
        {
          registry,
          ready: () => !closing && dns.length > 0,
          degraded,
          json: { '/api/blocked-clients': (params) => reportPages.page(params) },
          html: { '/': page },
          token: () => httpToken,
          beforeMetrics: () => workers?.refresh() ?? Promise.resolve(),
          metricsMaxAgeMs: opts.httpCacheMs,
        },
        log,
      ).catch((e: NodeJS.ErrnoException) => {
        throw new SinkholeError('SH_LISTEN', `cannot listen for HTTP on ${httpEp.host}:${httpEp.port}: ${e.code ?? e.message}`);
      });
    }
    if (store0.kind === 'postgres') {
      // Named by host and DNS port, so two instances on one host are told apart in the table.
      reportStore = new PostgresStore(
        { url: store0.url, instance: `${hostname()}:${dns[0]?.udp.port ?? 0}`, windowMs: config().report.windowMs, retentionMs: config().report.retentionMs, now: () => clock.now() },
        log,
      );
      report.sinks.push(reportStore);
      reportStore.start();
    }
    const events = config().events;
    if (events) {
      // Announced once per cooldown: by PostgreSQL over every instance sharing it, else by this one alone.
      announcer = new Announcer({
        config: events, stateDir: config().state.dir, instance: `${hostname()}:${dns[0]?.udp.port ?? 0}`,
        policy: () => policyHash(policy.current), now: () => clock.now(), log,
        arbiter: store0.kind === 'postgres' ? new PostgresArbiter(store0.url, log) : new LocalArbiter(),
      });
      report.sinks.push(announcer);
    }
    const rpzOut = config().listen.rpz;
    if (rpzOut) {
      // On the main thread only: one zone, one serial and one listener for the whole process.
      rpzExport = await RpzExport.start(rpzOut, config().state.dir, policy.current, log, () => clock.now()).catch((e: NodeJS.ErrnoException) => {
        throw new SinkholeError('SH_LISTEN', `cannot serve listen.rpz on ${rpzOut.address.host}:${rpzOut.address.port}: ${e.code ?? e.message}`);
      });
    }
    stateFile.start();
  } catch (e) {
    await closeAll();
    throw e;
  }

  logExceptions(log, loadedEvents(policy.current.exceptions), policy.current, clock.now());
  logWarnings(log, policy.current, clock.now());
  const stateProblem = stateDirProblem(config().state.dir);
  if (stateProblem !== undefined) {
    log.warn('SH_STATE_WRITE', 'state.dir cannot be written: there will be no last good policy to start from and the compliance report will not survive a restart; point state.dir at a writable folder (DNS is not affected)', {
      dir: config().state.dir, error: stateProblem,
    });
  }
  const exceptionAudit = new ExceptionAudit(
    (line) => {
      plane.auditLog.record(line);
      // A lapse comes from the clock, not from a reload: the server's own log says it too (issue 18).
      if (line.event === 'lapse') logExceptions(log, [line], policy.current, clock.now());
    },
    clock,
    () => policy.current,
  );
  const reloader = new Reloader(opts.configFile, policy, stats, log, (next, previous, data, inputs) => {
    void state.save(next, inputs);
    if (!isDeepStrictEqual(next.config.blocking.rpz, previous.config.blocking.rpz)) void rpzFeeds.configure(next.config.blocking.rpz);
    logExceptions(log, diffExceptions(previous.exceptions, next.exceptions), next, clock.now());
    logWarnings(log, next, clock.now());
    exceptionAudit.swapped(previous);
    plane.swap(next, previous);
    // A new serial and NOTIFY only when the exported names changed (listen.rpz itself applies on restart).
    rpzExport?.update(next);
    workers?.policy(data, next.number);
    report.configure(next.config.report);
    reportStore?.configure(next.config.report);
    // threshold, window, cooldown and maxTracked apply at once; the sinks, the spool bound and turning events on or off at restart.
    if (announcer && next.config.events) announcer.configure(next.config.events);
    if (!isDeepStrictEqual(identityConfig(next.config), identityConfig(previous.config))) void identity.configure(identityConfig(next.config));
    const tokenBefore = httpToken;
    if (next.config.listen.httpToken !== undefined) {
      try {
        httpToken = readHttpToken(next.config.listen.httpToken);
      } catch (e) {
        log.error('SH_HTTP_TOKEN', `${(e as Error).message}; the previous token stays in force`);
      }
    } else httpToken = undefined;
    // The token applies to the next request: no restart (issue 18: the log used to say one was needed).
    if (httpToken !== tokenBefore) {
      log.info(httpToken === undefined ? 'listen.httpToken removed: HTTP asks for no token from the next request' : `listen.httpToken ${tokenBefore === undefined ? 'set' : 'changed'}: it applies from the next request`);
    }
    for (const note of restartNotes(next.config, previous.config)) log.warn('SH_RESTART_NEEDED', note, {});
  });
  // A transfer that changed a zone rewrote its copy: compile it now (the watch would too, a moment later).
  rpzReload = () => void reloader.reload('list');
  if (opts.watch !== false) {
    reloader.watch();
    identity.watch();
  }

  return {
    dns,
    dot: encrypted.dot,
    doh: encrypted.doh,
    http: httpServer?.address,
    policy,
    stats,
    registry,
    reloader,
    report,
    exceptionAudit,
    readReport,
    identity,
    reportStore,
    saveState: () => stateFile.save(),
    events: announcer,
    rpzExport,
    cache: () => plane.cache,
    forwarder: () => plane.forwarder,
    workers,
    state,
    handler: plane.handler,
    reopenLogs: async () => {
      await Promise.all([plane.reopenLogs(), workers?.reopenLogs(), identity.reload()]);
    },
    reloadTls: () => {
      const problem = plane.reloadTls();
      if (problem === undefined && plane.certificateNames.length) {
        log.info('listen.tls reloaded', { names: plane.certificateNames.join(',') });
        workers?.reloadTls();
      }
      return problem;
    },
    close() {
      closed ??= shutdown();
      return closed;
    },
  };

  // Idempotent: SIGTERM and a test teardown may both ask.
  async function shutdown(): Promise<void> {
    closing = true;
    rpzFeeds.close();
    await reloader.close();
    exceptionAudit.close();
    await closeAll();
    await state.idle();
  }
}

function identityConfig(c: Generation['config']): { leases: Generation['config']['identity']['leases']; static: ReadonlyMap<string, string> } {
  return { leases: c.identity.leases, static: c.identity.static };
}

