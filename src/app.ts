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
import { LocalAnswersStage, anyAnswerer, chaosAnswerer } from './stages/localAnswers.js';
import { TcpListener } from './transport/tcp.js';
import { UdpListener } from './transport/udp.js';
import { Forwarder } from './upstream/forwarder.js';
import { VERSION } from './version.js';
import type { Registry } from 'prom-client';
import { QueryLog } from './querylog/queryLog.js';
import { AuditLog } from './querylog/auditLog.js';
import { ComplianceReport, pageParams } from './querylog/report.js';

export interface StartOptions {
  configFile: string;
  log?: Logger;
  clock?: Clock;
  /** Watch config, list and exception files (default true). */
  watch?: boolean;
  /** How long a rendered /metrics text is served again (default 1 s; tests that read counters right after a query use 0). */
  metricsMaxAgeMs?: number;
}

export interface Running {
  dns: { udp: AddressInfo; tcp: AddressInfo }[];
  http?: AddressInfo;
  policy: PolicyHolder;
  stats: Stats;
  registry: Registry;
  reloader: Reloader;
  report: ComplianceReport;
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
  const report = new ComplianceReport(config().report, () => clock.now());
  const observers: Observer[] = [queryLog, auditLog, report];

  // Benchmark-only switch: bench/run.sh measures what stage 2 costs by turning it off.
  // Not a config key, because a production resolver must always count.
  const measure = process.env.SINKHOLE_BENCH_NO_METRICS !== '1';
  const blocklist = new BlocklistStage(policy, clock);
  const stages: Stage[] = [
    // 1. Anything below may throw: SERVFAIL and a counter, never a dead socket loop.
    new RecoverStage(stats, log),
    // 2. Sees every outcome, blocked and cached included, for metrics and the logs.
    ...(measure ? [new MetricsStage(stats, observers)] : []),
    // 3. FORMERR/NOTIMP/REFUSED before any policy or upstream work is spent.
    new ValidateStage(policy),
    // 3b. Questions sinkhole answers itself; never cached, never forwarded.
    new LocalAnswersStage([
      // CHAOS first: version.bind & co. are about this server, in any qtype, ANY included.
      chaosAnswerer(policy),
      // RFC 8482 ANY, after the blocklist's own check of the name.
      anyAnswerer((q) => blocklist.blockedOutcome(q)),
    ]),
    // 4+5. Client policy and blocklist. Above the cache, so policy applies to
    //      cached answers and the cache stays client-independent.
    blocklist,
    // 6. Upstream answers only; identical queries in flight are coalesced.
    new CacheStage(() => cache, stats),
  ];
  // 7. Terminal: the upstream exchange.
  const handler = compose(stages, forwardHandler(() => forwarder, () => config().cache));

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
    tcpEvictions: () => tcp.reduce((n, l) => n + l.evictions, 0),
    tcpRefused: () => tcp.reduce((n, l) => n + l.refused, 0),
    logs: () => [queryLog.health, auditLog.health],
    now: () => clock.now(),
    version: VERSION,
  });
  // Listeners first (each answers what it has in flight), then the logs, then HTTP: /readyz says 503 until the end.
  const closeAll = async (): Promise<void> => {
    await Promise.all([...udp.map((l) => l.close()), ...tcp.map((l) => l.close())]);
    await Promise.all([queryLog.close(), auditLog.close()]);
    await httpServer?.close();
  };
  try {
    for (const ep of config().listen.dns) {
      const u = new UdpListener(ep, handler, log);
      const l = config().listen;
      const limits = {
        idleTimeoutMs: l.tcpIdleTimeoutMs, maxConnections: l.tcpMaxConnections,
        maxConnectionsPerClient: l.tcpMaxConnectionsPerClient, lifetimeMs: l.tcpConnectionLifetimeMs,
      };
      const t = new TcpListener(ep, handler, limits, log, (client) => policy.current.clients.view(client).allowed);
      dns.push(await bindPair(ep, u, t));
      udp.push(u);
      tcp.push(t);
    }
    const httpEp = config().listen.http;
    if (httpEp) {
      httpServer = await startHttp(
        httpEp,
        {
          registry,
          ready: () => !closing && dns.length > 0,
          // Still ready (DNS is answered), but the body says what is degraded: an audit trail that
          // cannot be written means exceptions used are not being recorded.
          readyNotes: () => {
            const f = auditLog.health.failure;
            return f ? [`audit log failing: ${f.code} since ${new Date(f.since).toISOString()} (${f.target}); ${auditLog.health.dropped} lines dropped`] : [];
          },
          json: { '/api/blocked-clients': (params) => report.pageJson(pageParams(params)) },
          metricsMaxAgeMs: opts.metricsMaxAgeMs,
        },
        log,
      ).catch((e: NodeJS.ErrnoException) => {
        throw new SinkholeError('SH_LISTEN', `cannot listen for HTTP on ${httpEp.host}:${httpEp.port}: ${e.code ?? e.message}`);
      });
    }
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
    if (!isDeepStrictEqual(next.config.listen, previous.config.listen)) {
      log.warn('SH_RESTART_NEEDED', 'listen addresses changed; they take effect on restart', {});
    }
  });
  if (opts.watch !== false) reloader.watch();

  return {
    dns,
    http: httpServer?.address,
    policy,
    stats,
    registry,
    reloader,
    report,
    cache: () => cache,
    handler,
    reopenLogs: async () => {
      await Promise.all([queryLog.reopen(), auditLog.reopen()]);
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
