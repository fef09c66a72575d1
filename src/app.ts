// The composition root: builds the policy, the stage chain and the listeners.
// The chain is assembled here, in ONE list, with the reason each stage sits
// where it does (as Blocky and CoreDNS's plugin.cfg do). Order matters.
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { ReplyCache } from './cache/replyCache.js';
import { systemClock, type Clock } from './clock.js';
import { SinkholeError } from './errors.js';
import { streamLogger, type Logger } from './log.js';
import { startHttp } from './metrics/http.js';
import { createRegistry } from './metrics/registry.js';
import { Stats } from './metrics/stats.js';
import { buildGeneration, type Generation } from './policy/generation.js';
import { PolicyHolder } from './policy/holder.js';
import { Reloader } from './policy/reloader.js';
import { isActive } from './policy/exceptions.js';
import { compose, type Handler, type Stage } from './pipeline/types.js';
import { BlocklistStage } from './stages/blocklist.js';
import { CacheStage } from './stages/cache.js';
import { forwardHandler } from './stages/forward.js';
import { MetricsStage, type Observer } from './stages/metrics.js';
import { RecoverStage } from './stages/recover.js';
import { ValidateStage } from './stages/validate.js';
import { TcpListener } from './transport/tcp.js';
import { UdpListener } from './transport/udp.js';
import { Forwarder } from './upstream/forwarder.js';
import { VERSION } from './version.js';
import type { Registry } from 'prom-client';
import { QueryLog } from './querylog/queryLog.js';
import { AuditLog } from './querylog/auditLog.js';
import { ComplianceReport, type ReportSnapshot } from './querylog/report.js';
// Identity and the shared report (issue 11).
import { hostname } from 'node:os';
import { IdentityHolder, IdentitySources } from './identity/sources.js';
import { RelayStage } from './stages/relay.js';
import { ReportStateFile } from './querylog/reportState.js';
import { PostgresStore } from './querylog/reportPostgres.js';
import { renderPage, type PageData } from './metrics/page.js';
import { readHttpToken } from './metrics/token.js';

export interface StartOptions {
  configFile: string;
  log?: Logger;
  clock?: Clock;
  /** Watch config, list and exception files (default true). */
  watch?: boolean;
}

export interface Running {
  dns: { udp: AddressInfo; tcp: AddressInfo }[];
  http?: AddressInfo;
  policy: PolicyHolder;
  stats: Stats;
  registry: Registry;
  reloader: Reloader;
  report: ComplianceReport;
  /** The report as /api/blocked-clients serves it: from PostgreSQL when that is the store and it answers. */
  readReport(): Promise<ReportSnapshot>;
  identity: IdentitySources;
  /** The PostgreSQL report store, when report.store names one. */
  reportStore?: PostgresStore;
  /** Writes the report's state file now (tests; also done every few seconds and at close). */
  saveState(): Promise<void>;
  cache: () => ReplyCache;
  /** The composed pipeline, as the listeners call it (for in-process benchmarks). */
  handler: Handler;
  /** Reopens the query and audit log files (after logrotate moved them). */
  reopenLogs(): Promise<void>;
  /** Stops taking queries, answers those in flight (bounded by the upstream timeout), and closes. */
  close(): Promise<void>;
}

export async function start(opts: StartOptions): Promise<Running> {
  const log = opts.log ?? streamLogger();
  const clock = opts.clock ?? systemClock;
  const stats = new Stats();
  const policy = new PolicyHolder(buildGeneration(opts.configFile, 1));
  const config = (): Generation['config'] => policy.current.config;

  // Upstreams and the cache outlive list and exception reloads (health and
  // cached answers are kept); they are rebuilt only when their settings change.
  let forwarder = new Forwarder(config().upstreams, stats);
  let cache = new ReplyCache(config().cache, () => clock.now());
  const queryLog = new QueryLog(config().log, log);
  const auditLog = new AuditLog(config().log.audit, log);
  // Identity: lease files and identity.static, compiled into a table that lease changes swap.
  const identity = new IdentitySources(identityConfig(config()), new IdentityHolder(), stats, log, () => clock.now());
  const report = new ComplianceReport(config().report, () => clock.now(), identity.holder, stats);
  // The report survives restarts (state.dir/report.json) and, with report.store: postgres://, spans instances.
  const stateFile = new ReportStateFile(config().state.dir, report, log);
  stateFile.load();
  const store0 = config().report.store;
  let reportStore: PostgresStore | undefined;
  let httpToken = config().listen.httpToken === undefined ? undefined : readHttpToken(config().listen.httpToken!);
  const observers: Observer[] = [queryLog, auditLog, report];

  // Benchmark-only switch: bench/run.sh measures what stage 2 costs by turning it off.
  // Not a config key, because a production resolver must always count.
  const measure = process.env.SINKHOLE_BENCH_NO_METRICS !== '1';
  const stages: Stage[] = [
    // 1. Anything below may throw: SERVFAIL and a counter, never a dead socket loop.
    new RecoverStage(stats, log),
    // 2. Sees every outcome, blocked and cached included, for metrics and the logs.
    ...(measure ? [new MetricsStage(stats, observers)] : []),
    // 3. FORMERR/NOTIMP/REFUSED before any policy or upstream work is spent.
    new ValidateStage(policy),
    // 4a. ECS/MAC EDNS options: believed from clients.trustedRelays, stripped from every query
    //     before it can reach the cache or an upstream. Before policy, which needs the real client.
    new RelayStage(policy, stats),
    // 4+5. Client policy (with the device identity) and blocklist. Above the cache, so policy
    //      applies to cached answers and the cache stays client-independent.
    new BlocklistStage(policy, clock, identity.holder),
    // 6. Upstream answers only; identical queries in flight are coalesced.
    new CacheStage(() => cache, stats),
  ];
  // 7. Terminal: the upstream exchange.
  const handler = compose(stages, forwardHandler(() => forwarder));

  const udp: UdpListener[] = [];
  const tcp: TcpListener[] = [];
  const dns: Running['dns'] = [];
  let closing = false;
  let closed: Promise<void> | undefined;
  let httpServer: Awaited<ReturnType<typeof startHttp>> | undefined;
  const registry = createRegistry({
    stats,
    generation: () => policy.current,
    cacheEntries: () => cache.size,
    tcpConnections: () => tcp.reduce((n, l) => n + l.connections, 0),
    now: () => clock.now(),
    version: VERSION,
    identityDevices: () => identity.holder.current.size,
    reportStore: () => reportStore,
  });
  // Listeners first (each answers what it has in flight), then the logs, then HTTP: /readyz says 503 until the end.
  const closeAll = async (): Promise<void> => {
    await Promise.all([...udp.map((l) => l.close()), ...tcp.map((l) => l.close())]);
    await Promise.all([queryLog.close(), auditLog.close()]);
    identity.close();
    report.drain();
    await Promise.all([stateFile.close(), reportStore?.close()]);
    await httpServer?.close();
  };
  const readReport = async (): Promise<ReportSnapshot> => {
    if (!reportStore) return report.snapshot();
    report.drain(); // this instance's latest events go to the spool first
    await reportStore.flush(true);
    try {
      return await reportStore.read(config().report.maxClients);
    } catch (e) {
      log.warn('SH_REPORT_STORE', 'PostgreSQL report store unreachable; serving this instance\'s report', { error: (e as Error).message });
      return { ...report.snapshot(), source: 'memory (postgres unreachable)' };
    }
  };
  const page = async (): Promise<string> => renderPage(await pageData());
  const pageData = async (): Promise<PageData> => {
    const g = policy.current;
    const now = clock.now();
    const degraded = [
      ...reloader.lastProblems.slice(0, 3).map((p) => `last reload rejected, generation ${g.number} stays in force: ${p}`),
      ...identity.sources().filter((s) => s.problems.length).map((s) => `lease file ${s.file}: ${s.problems[0]}`),
    ];
    const r = await readReport();
    if (r.source !== 'memory' && r.source !== 'postgres') degraded.push(`report store unreachable: ${reportStore?.spooled ?? 0} events spooled`);
    return {
      now, version: VERSION, report: r,
      exceptions: g.exceptions.map((e) => ({ ...e, allow: [...e.allowLists, ...e.allowDomains] })),
      policy: {
        generation: g.number, degraded,
        lists: g.config.blocking.lists.map((l) => ({ name: l.name, rules: g.ruleCounts.get(l.name) ?? 0, enforced: g.config.blocking.enforce.includes(l.name) })),
      },
      identity: { devices: identity.holder.current.size, sources: identity.sources().map((s) => ({ ...s, ok: !s.problems.length })) },
    };
  };
  try {
    for (const ep of config().listen.dns) {
      const u = new UdpListener(ep, handler, log);
      const t = new TcpListener(ep, handler, config().listen.tcpIdleTimeoutMs, config().listen.tcpMaxConnections, log, (client) =>
        policy.current.clients.view(client).allowed,
      );
      dns.push(await bindPair(ep, u, t));
      udp.push(u);
      tcp.push(t);
    }
    const httpEp = config().listen.http;
    if (httpEp) {
      httpServer = await startHttp(
        httpEp,
        {
          registry, ready: () => !closing && dns.length > 0, json: { '/api/blocked-clients': readReport },
          html: { '/': page }, token: () => httpToken,
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
      report.sink = reportStore;
      reportStore.start();
    }
    stateFile.start();
  } catch (e) {
    await closeAll();
    throw e;
  }

  logExceptions(log, policy.current, undefined, clock.now());
  const reloader = new Reloader(opts.configFile, policy, stats, log, (next, previous) => {
    logExceptions(log, next, previous, clock.now());
    if (!isDeepStrictEqual(next.config.upstreams, previous.config.upstreams)) forwarder = new Forwarder(next.config.upstreams, stats);
    if (!isDeepStrictEqual(next.config.cache, previous.config.cache)) cache = new ReplyCache(next.config.cache, () => clock.now());
    queryLog.configure(next.config.log);
    auditLog.configure(next.config.log.audit);
    report.configure(next.config.report);
    reportStore?.configure(next.config.report);
    if (!isDeepStrictEqual(identityConfig(next.config), identityConfig(previous.config))) identity.configure(identityConfig(next.config));
    if (next.config.listen.httpToken !== undefined) {
      try {
        httpToken = readHttpToken(next.config.listen.httpToken);
      } catch (e) {
        log.error('SH_HTTP_TOKEN', `${(e as Error).message}; the previous token stays in force`);
      }
    } else httpToken = undefined;
    if (!isDeepStrictEqual(next.config.report.store, previous.config.report.store) || next.config.state.dir !== previous.config.state.dir) {
      log.warn('SH_RESTART_NEEDED', 'report.store and state.dir take effect on restart', {});
    }
    if (!isDeepStrictEqual(next.config.listen, previous.config.listen)) {
      log.warn('SH_RESTART_NEEDED', 'listen addresses changed; they take effect on restart', {});
    }
  });
  if (opts.watch !== false) {
    reloader.watch();
    identity.watch();
  }

  return {
    dns,
    http: httpServer?.address,
    policy,
    stats,
    registry,
    reloader,
    report,
    readReport,
    identity,
    reportStore,
    saveState: () => stateFile.save(),
    cache: () => cache,
    handler,
    reopenLogs: async () => {
      await Promise.all([queryLog.reopen(), auditLog.reopen(), identity.reload()]);
    },
    close() {
      closed ??= shutdown();
      return closed;
    },
  };

  // Idempotent: SIGTERM and a test teardown may both ask.
  async function shutdown(): Promise<void> {
    closing = true;
    reloader.close();
    await closeAll();
  }
}

function identityConfig(c: Generation['config']): { leases: Generation['config']['identity']['leases']; static: ReadonlyMap<string, string> } {
  return { leases: c.identity.leases, static: c.identity.static };
}

/** Each exception that is new or changed is logged when it is loaded, and each one dropped, so the log is an audit of the records. */
function logExceptions(log: Logger, next: Generation, previous: Generation | undefined, now: number): void {
  const before = new Map((previous?.exceptions ?? []).map((e) => [e.id, e]));
  for (const e of next.exceptions) {
    const old = before.get(e.id);
    before.delete(e.id);
    if (old && isDeepStrictEqual({ ...old, source: null }, { ...e, source: null })) continue;
    log.info(old ? 'exception changed' : 'exception loaded', {
      id: e.id, state: isActive(e, now) ? 'active' : 'expired', expires: e.expires, clients: e.clients.join(','),
      allow: [...e.allowLists, ...e.allowDomains].join(','), approvedBy: e.approvedBy, reason: e.reason,
    });
  }
  for (const id of before.keys()) log.info('exception removed', { id });
}

/**
 * Binds UDP and TCP to the same port. With port 0 (tests) the kernel picks the
 * UDP port, and TCP takes the same one; if another process has it on TCP, try again.
 */
async function bindPair(ep: { host: string; port: number }, u: UdpListener, t: TcpListener): Promise<{ udp: AddressInfo; tcp: AddressInfo }> {
  for (let attempt = 0; ; attempt++) {
    let udp: AddressInfo;
    try {
    udp = await u.start();
    } catch (e) {
    throw listenError('UDP', ep, e);
    }
    try {
    return { udp, tcp: await t.start(udp.port) };
    } catch (e) {
    await u.close();
    if (ep.port !== 0 || attempt >= 20) throw listenError('TCP', ep, e);
    }
  }
}

function listenError(proto: string, ep: { host: string; port: number }, e: unknown): SinkholeError {
  const code = (e as NodeJS.ErrnoException).code ?? String(e);
  const hint = code === 'EADDRINUSE' ? ' (another process has this port)' : code === 'EACCES' ? ' (ports below 1024 need CAP_NET_BIND_SERVICE)' : '';
  return new SinkholeError('SH_LISTEN', `cannot listen for DNS over ${proto} on ${ep.host}:${ep.port}: ${code}${hint}`);
}
