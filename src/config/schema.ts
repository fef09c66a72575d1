// sinkhole.yaml's schema: the Config type every part of sinkhole reads, and its defaults. The reader
// (config.ts and one file per section) fills a default Config from the file and freezes it.
import { dirname, resolve } from 'node:path';
import type { DnstapConfig } from './dnstap.js';
import type { EventsConfig } from './events.js';
import type { RpzSpec } from './rpz.js';
import type { RpzExportConfig } from './rpzExport.js';
import type { TlsPaths } from './tlsPair.js';
import { systemResolvers, type UpstreamSpec } from './upstreamSpec.js';
import type { Endpoint, LeaseFormat, SourceRef } from './values.js';
import type { YamlReader, YNode } from './yamlReader.js';

export type ResponseMode =
  | { kind: 'nxdomain' | 'nodata' | 'null-ip' | 'refused' }
  | { kind: 'custom'; a?: string; aaaa?: string };

/** upstreams: where a cache miss goes (upstream/forwarder.ts takes this as its options). */
export interface UpstreamsConfig {
  servers: UpstreamSpec[];
  conditional: { domain: string; servers: UpstreamSpec[] }[];
  strategy: 'failover' | 'random' | 'race';
  timeoutMs: number;
  /** UDP sockets (random source ports, RFC 5452) in rotation per upstream address (upstream/udp.ts connects each to it). */
  sourcePorts: number;
  /** Queries one UDP source port may carry (1 = a fresh port per query). */
  sourcePortReuse: number;
  /** Upstream exchanges in flight at once; past this, new misses get SERVFAIL at once. */
  maxInflight: number;
  /** CA and pins for tls:// and https:// upstreams. */
  tls: UpstreamTls;
}

export interface Config {
  file: string;
  dir: string;
  listen: {
    dns: Endpoint[];
    http?: Endpoint;
    tcpIdleTimeoutMs: number;
    tcpMaxConnections: number;
    /** Issue 8: TCP (and DoT) connections one client address may hold, and how long one lives. */
    tcpMaxConnectionsPerClient: number;
    tcpConnectionLifetimeMs: number;
    /** A file holding the bearer token HTTP asks for (all but /healthz and /metrics), or credential:NAME; unset = no token. */
    httpToken?: string;
    /** DNS over TLS (RFC 7858) and over HTTPS (RFC 8484) for clients; both need `tls`. */
    dot: Endpoint[];
    doh: Endpoint[];
    tls?: TlsPaths;
    /** Serve the enforced lists as a Response Policy Zone to other resolvers (config/rpzExport.ts). */
    rpz?: RpzExportConfig;
  };
  upstreams: UpstreamsConfig;
  cache: {
    maxEntries: number;
    minTtl: number;
    maxTtl: number;
    maxNegativeTtl: number;
    /** RFC 8767 serve-stale (issue 9). Durations in ms, except answerTtl (seconds, it goes on the wire). */
    serveStale: { enabled: boolean; clientTimeoutMs: number; answerTtl: number; maxStaleMs: number };
    /** Refresh a hit in the last 10 % of its TTL in the background (Unbound's prefetch). */
    prefetch: boolean;
    /** How long a SERVFAIL from every upstream is remembered for a name (RFC 2308 §7.1); 0 = not at all. */
    servfailTtlMs: number;
  };
  blocking: {
    lists: { name: string; files: string[]; ref: SourceRef }[];
    /** Response Policy Zones read from zone files (docs/rpz.md); each name is a list name like any other. */
    rpz: RpzSpec[];
    enforce: string[];
    response: ResponseMode;
    ttl: number;
    inspectCnames: boolean;
  };
  /** Members are IPs/CIDRs, `mac:...` or `host:...` (net/mac.ts parseSelector). */
  clients: { allowFrom: string[]; groups: { name: string; members: string[] }[]; trustedRelays: string[]; rateLimit?: RateLimitConfig };
  /** A file path, or the YAML node of an inline list (read with this config's reader). */
  exceptions: { file: string } | { inline: YNode; reader?: YamlReader } | undefined;
  log: { queries: 'none' | 'blocked' | 'all'; file?: string; anonymizeClients: boolean; audit?: string; dnstap?: DnstapConfig };
  report: {
    windowMs: number; maxClients: number;
    /** memory (persisted under state.dir) or a PostgreSQL URL shared by several instances. */
    store: { kind: 'memory' } | { kind: 'postgres'; url: string };
    /** How long the PostgreSQL store keeps events (at least the window). */
    retentionMs: number;
  };
  /** Query threads, each answering on every listen address (SO_REUSEPORT); `auto` = one per core. */
  workers: number;
  /** Where sinkhole keeps what must survive a restart: the last good policy, the compliance report. */
  state: { dir: string };
  identity: {
    leases: { format: LeaseFormat; file: string }[];
    /** mac → name, for devices with reserved addresses. */
    static: ReadonlyMap<string, string>;
  };
  /** The TXT string for CHAOS version.bind & co.; undefined: REFUSED. */
  chaos: string | undefined;
  /** Compliance events to the network-access system and the SIEM (issue 20 §1); undefined = off. */
  events?: EventsConfig;
}

/** clients.rateLimit: a token bucket per client key (an IPv4 /ipv4Prefix or IPv6 /ipv6Prefix). */
export interface RateLimitConfig {
  qps: number;
  burst: number;
  action: 'truncate' | 'refuse';
  /** Group names from clients.groups that are never limited. */
  exempt: string[];
  /** Count who would be limited, answer them normally. */
  dryRun: boolean;
  ipv4Prefix: number;
  ipv6Prefix: number;
  /**
   * Over UDP, one over-limit query in `slip` gets the action's reply and the others get none, as with
   * BIND's RRL `slip` (default 2). 1 = answer every one; 0 = answer none (Unbound's ip-ratelimit drops).
   */
  slip: number;
}

export interface UpstreamTls {
  /** PEM of upstreams.tls.ca; undefined = the system's trust store. Kept as text, so a changed file is a changed config. */
  ca?: string;
  /** Authentication name (or IP) → base64 SHA-256 SPKI digests (RFC 7858 §4.2). */
  pins: Record<string, string[]>;
}

export function defaultConfig(file: string): Config {
  return {
    file,
    dir: dirname(file),
    listen: {
      dns: [{ host: '127.0.0.1', port: 1053 }], tcpIdleTimeoutMs: 10_000, tcpMaxConnections: 1000, dot: [], doh: [],
      tcpMaxConnectionsPerClient: 32, tcpConnectionLifetimeMs: 2 * 60_000,
    },
    upstreams: {
      servers: systemResolvers(), conditional: [], strategy: 'failover', timeoutMs: 2000, sourcePorts: 1024, sourcePortReuse: 100, maxInflight: 1000,
      tls: { pins: {} },
    },
    cache: {
      maxEntries: 100_000, minTtl: 0, maxTtl: 86_400, maxNegativeTtl: 3600,
      // RFC 8767 §5's suggestions, which are also Unbound's current defaults (serve-expired-client-timeout
      // 1800, serve-expired-reply-ttl 30, serve-expired-ttl 86400).
      serveStale: { enabled: true, clientTimeoutMs: 1800, answerTtl: 30, maxStaleMs: 86_400_000 },
      prefetch: true,
      servfailTtlMs: 5000,
    },
    blocking: { lists: [], rpz: [], enforce: [], response: { kind: 'nxdomain' }, ttl: 10, inspectCnames: true },
    clients: { allowFrom: ['127.0.0.0/8', '::1/128'], groups: [], trustedRelays: [] },
    exceptions: undefined,
    log: { queries: 'blocked', anonymizeClients: false },
    report: { windowMs: 86_400_000, maxClients: 100_000, store: { kind: 'memory' }, retentionMs: 30 * 86_400_000 },
    workers: 1,
    state: { dir: resolve(dirname(file), '.sinkhole-state') },
    identity: { leases: [], static: new Map() },
    chaos: undefined,
  };
}
