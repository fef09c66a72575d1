// One query path (the per-thread half of the composition root, app.ts): the listeners, the stage
// chain (pipeline/chain.ts, where the order of the stages and the reasons live), the cache, the
// upstreams and the query/audit/dnstap logs. The main
// thread runs one; with `workers: N`, N−1 worker threads run one each (dataPlaneThread.ts), all
// bound to the same addresses with SO_REUSEPORT so the kernel spreads the queries.
import type { AddressInfo } from 'node:net';
import { ReplyCache, type CacheLimits } from './cache/replyCache.js';
import type { Clock } from './clock.js';
import type { Endpoint } from './config/config.js';
import type { Logger } from './log.js';
import { LoopDelay } from './metrics/loopDelay.js';
import { Stats } from './metrics/stats.js';
import type { Generation } from './policy/generation.js';
import type { PolicyHolder } from './policy/holder.js';
import type { Handler } from './pipeline/types.js';
import { buildChain } from './pipeline/chain.js';
import { type Observer } from './stages/metrics.js';
import { TcpListener, type TcpLimits } from './transport/tcp.js';
import { UdpListener } from './transport/udp.js';
import { Forwarder, type UpstreamHealth } from './upstream/forwarder.js';
import { QueryLog } from './querylog/queryLog.js';
import { Dnstap, dnstapSettings } from './querylog/dnstap.js';
import type { FstrmHealth } from './querylog/fstrm.js';
import { AuditLog } from './querylog/auditLog.js';
import type { IdentityHolder } from './identity/sources.js';
import { DdrAnswerer, type DdrEndpoint } from './stages/ddr.js';
import type { LogHealth } from './querylog/lineWriter.js';
import { dotServer } from './transport/dot.js';
import { Certificate } from './transport/tlsFiles.js';
import { RateLimitStage } from './stages/rateLimit.js';
import { bindPair, listenError } from './transport/bind.js';
import { SinkholeError } from './errors.js';
import { DOH_PATH, DohListener } from './transport/doh.js';
import { isDeepStrictEqual } from 'node:util';

/** What one query thread serves, and the counts a scrape needs from it. */
export interface PlaneGauges {
  cacheEntries: number;
  cacheBytes: number;
  tcpConnections: number;
  dotConnections: number;
  dohConnections: number;
  sourcePorts: number;
  rateLimitBuckets: number;
  queries: number;
  loopDelay: number[];
  /** Idle connections closed to make room, and connections refused, per DNS listener kind (issues 8, 23). */
  tcpEvictions: number;
  tcpRefused: number;
  dotEvictions: number;
  dotRefused: number;
  dohEvictions: number;
  dohRefused: number;
  /** DoH sessions closed for too many stream resets (CVE-2023-44487). */
  dohCalmed: number;
  /** The query log's and the audit trail's lost lines and failure, as this thread writes them. */
  logs: LogHealth[];
  /** This thread's forwarder's view of each upstream (the admin page merges the threads'). */
  upstreams: UpstreamHealth[];
  /** This thread's dnstap stream (log.dnstap): each query thread has its own connection. */
  dnstap: FstrmHealth;
}

/**
 * One query path. The policy holder is the thread's own: the main thread's reloader swaps it, and
 * a worker thread's when the main thread hands it a new generation.
 */
export class DataPlane {
  readonly handler: Handler;
  // Upstreams and the cache outlive list and exception reloads (health and
  // cached answers are kept); they are rebuilt only when their settings change.
  forwarder: Forwarder;
  cache: ReplyCache;
  private readonly queryLog: QueryLog;
  private readonly dnstap: Dnstap;
  /** The exceptions audit trail: each use here, and on the main thread the records' history (ExceptionAudit). */
  readonly auditLog: AuditLog;
  private readonly udp: UdpListener[] = [];
  private readonly tcp: TcpListener[] = [];
  private readonly dotListeners: TcpListener[] = [];
  private readonly dohListeners: DohListener[] = [];
  /** DDR learns its endpoints once the DoT/DoH listeners are bound. */
  private readonly ddr = new DdrAnswerer();
  private certificate: Certificate | undefined;
  private encrypted: { dot: AddressInfo[]; doh: AddressInfo[] } = { dot: [], doh: [] };
  private readonly loopDelay = new LoopDelay();
  private readonly rateLimit: RateLimitStage;

  constructor(
    readonly policy: PolicyHolder,
    /** Address → device, from the lease files (built on the main thread, handed to the others). */
    readonly identity: IdentityHolder,
    /** This thread's counters (metrics/stats.ts), made by the caller so that the report can count into them too. */
    readonly stats: Stats,
    private readonly log: Logger,
    private readonly clock: Clock,
    /** The compliance report, or a batcher that hands blocked queries to the thread that keeps it. */
    report: Observer,
    /** A NOTIFY from an RPZ primary (RFC 1996), already checked against the config: the main thread's feeds check the zone. */
    onNotify: (zone: string, from: string) => void = () => {},
  ) {
    const config = policy.current.config;
    this.forwarder = new Forwarder(config.upstreams, stats, log);
    this.cache = new ReplyCache(cacheLimits(config), () => clock.now());
    this.queryLog = new QueryLog(config.log, log);
    this.auditLog = new AuditLog(config.log.audit, log);
    this.dnstap = new Dnstap(dnstapSettings(config.log), log);
    this.forwarder.tap = this.dnstap.forwarderTap;
    const observers: Observer[] = [this.queryLog, this.auditLog, report, this.dnstap];

    // Buckets are per query thread: with N threads and SO_REUSEPORT, one client's queries can spread over
    // several, so its effective limit can reach N × qps (docs/operations.md "Every core").
    this.rateLimit = new RateLimitStage(policy, stats, clock, log);
    this.handler = buildChain({
      policy, identity, stats, log, clock, observers, rateLimit: this.rateLimit, ddr: this.ddr, onNotify,
      cache: () => this.cache, forwarder: () => this.forwarder, cacheLimits,
    });
  }

  /**
   * Binds UDP and TCP on every address. `reusePort` when several threads share them; a worker
   * thread is given the ports the main thread bound (which may have been chosen by the kernel).
   */
  async listen(endpoints: readonly Endpoint[], reusePort: boolean): Promise<{ udp: AddressInfo; tcp: AddressInfo }[]> {
    const listen = this.policy.current.config.listen;
    const allowed = (client: string): boolean => this.policy.current.clients.view(client).allowed;
    const out: { udp: AddressInfo; tcp: AddressInfo }[] = [];
    for (const ep of endpoints) {
      const t = new TcpListener(ep, this.handler, tcpLimits(listen), this.log, allowed);
      this.tcp.push(t);
      const bound = await bindPair(ep, () => new UdpListener(ep, this.handler, this.log), t, reusePort);
      this.udp.push(bound.udp);
      out.push(bound.addresses);
    }
    return out;
  }

  /**
   * DNS over TLS and HTTPS for clients (listen.dot, listen.doh): the same handler and the same limits
   * as TCP. A worker thread is given the ports the main thread bound.
   */
  async listenEncrypted(dot: readonly Endpoint[], doh: readonly Endpoint[], reusePort: boolean): Promise<{ dot: AddressInfo[]; doh: AddressInfo[] }> {
    const { tls: tlsPaths, tcpIdleTimeoutMs: idle, tcpMaxConnections: maxConns } = this.policy.current.config.listen;
    if (!tlsPaths || (!dot.length && !doh.length)) return this.encrypted;
    try {
      this.certificate = Certificate.load(tlsPaths);
    } catch (e) {
      throw new SinkholeError('SH_LISTEN', `cannot load listen.tls: ${(e as Error).message}`);
    }
    const allowed = (client: string): boolean => this.policy.current.clients.view(client).allowed;
    for (const ep of dot) {
      const l = new TcpListener(ep, this.handler, tcpLimits(this.policy.current.config.listen), this.log, allowed, dotServer(this.certificate, idle));
      this.dotListeners.push(l);
      this.encrypted.dot.push(await l.start(ep.port, reusePort).catch((e: unknown) => Promise.reject(listenError('TLS', ep, e))));
    }
    for (const ep of doh) {
      const l = new DohListener(ep, this.handler, this.certificate, { idleTimeoutMs: idle, maxConnections: maxConns, maxConnectionsPerClient: this.policy.current.config.listen.tcpMaxConnectionsPerClient }, this.log, allowed);
      this.dohListeners.push(l);
      this.encrypted.doh.push(await l.start(ep.port, reusePort).catch((e: unknown) => Promise.reject(listenError('HTTPS', ep, e))));
    }
    this.configureDdr();
    return this.encrypted;
  }

  /** Re-reads listen.tls (SIGHUP); undefined when applied or there is none, else why it was refused. */
  reloadTls(): string | undefined {
    if (!this.certificate) return undefined;
    const problem = this.certificate.reload();
    if (problem) this.log.warn('SH_TLS_CERT', 'listen.tls not reloaded; the certificate in use stays', { error: problem });
    else this.configureDdr();
    return problem;
  }

  /** DDR's SVCB records (RFC 9462): the bound DoT/DoH endpoints, under the certificate's first DNS name. */
  private configureDdr(): void {
    const endpoints: DdrEndpoint[] = [
      ...this.encrypted.dot.map((a) => ({ alpn: 'dot' as const, host: a.address, port: a.port })),
      ...this.encrypted.doh.map((a) => ({ alpn: 'h2' as const, host: a.address, port: a.port })),
    ];
    this.ddr.configure(this.certificate?.current.names[0], endpoints, DOH_PATH);
  }

  /** The certificate's names (for the log), when listen.tls is loaded. */
  get certificateNames(): readonly string[] {
    return this.certificate?.current.names ?? [];
  }

  /** A new generation is in force: rebuild what its settings changed. */
  swap(next: Generation, previous: Generation): void {
    if (!isDeepStrictEqual(next.config.upstreams, previous.config.upstreams)) {
      const old = this.forwarder;
      this.forwarder = new Forwarder(next.config.upstreams, this.stats, this.log);
      old.close(); // its sockets and TLS connections close once the queries still on them are answered
    }
    if (!isDeepStrictEqual(cacheLimits(next.config), cacheLimits(previous.config))) this.cache = new ReplyCache(cacheLimits(next.config), () => this.clock.now());
    this.queryLog.configure(next.config.log);
    this.auditLog.configure(next.config.log.audit);
    this.dnstap.configure(dnstapSettings(next.config.log));
    this.forwarder.tap = this.dnstap.forwarderTap;
  }

  gauges(): PlaneGauges {
    return {
      cacheEntries: this.cache.size,
      cacheBytes: this.cache.slabBytes,
      tcpConnections: this.tcp.reduce((n, l) => n + l.connections, 0),
      dotConnections: this.dotListeners.reduce((n, l) => n + l.connections, 0),
      dohConnections: this.dohListeners.reduce((n, l) => n + l.connections, 0),
      sourcePorts: this.forwarder.sourcePortsOpen,
      rateLimitBuckets: this.rateLimit.buckets,
      queries: this.stats.queries.reduce((a, b) => a + b, 0),
      loopDelay: this.loopDelay.seconds(),
      tcpEvictions: this.tcp.reduce((n, l) => n + l.evictions, 0),
      tcpRefused: this.tcp.reduce((n, l) => n + l.refused, 0),
      dotEvictions: this.dotListeners.reduce((n, l) => n + l.evictions, 0),
      dotRefused: this.dotListeners.reduce((n, l) => n + l.refused, 0),
      dohEvictions: this.dohListeners.reduce((n, l) => n + l.evictions, 0),
      dohRefused: this.dohListeners.reduce((n, l) => n + l.refused, 0),
      dohCalmed: this.dohListeners.reduce((n, l) => n + l.calmed, 0),
      logs: [this.queryLog.health, this.auditLog.health],
      upstreams: this.forwarder.health(),
      dnstap: this.dnstap.health(),
    };
  }

  async reopenLogs(): Promise<void> {
    await Promise.all([this.queryLog.reopen(), this.auditLog.reopen()]);
  }

  /** Listeners first (each answers what it has in flight), then the upstream sockets and the logs. */
  async close(): Promise<void> {
    await Promise.all([
      ...this.udp.map((l) => l.close()), ...this.tcp.map((l) => l.close()),
      ...this.dotListeners.map((l) => l.close()), ...this.dohListeners.map((l) => l.close()),
    ]);
    this.forwarder.close();
    this.loopDelay.close();
    await Promise.all([this.queryLog.close(), this.auditLog.close(), this.dnstap.close()]);
  }
}

/**
 * What the reply cache itself needs. Serve-stale keeps expired entries for
 * maxStale; the other serve-stale and prefetch settings are read per query by
 * the cache stage, so changing them on reload keeps the cached answers.
 */
export function cacheLimits(c: Generation['config']): CacheLimits {
  const { maxEntries, minTtl, maxTtl, maxNegativeTtl, serveStale } = c.cache;
  return { maxEntries, minTtl, maxTtl, maxNegativeTtl, keepExpiredMs: serveStale.enabled ? serveStale.maxStaleMs : 0 };
}

/** The TCP (and DoT) listener's limits, from listen.* (issue 8: per-client cap, lifetime). */
export function tcpLimits(l: Generation['config']['listen']): TcpLimits {
  return {
    idleTimeoutMs: l.tcpIdleTimeoutMs, maxConnections: l.tcpMaxConnections,
    maxConnectionsPerClient: l.tcpMaxConnectionsPerClient, lifetimeMs: l.tcpConnectionLifetimeMs,
  };
}
