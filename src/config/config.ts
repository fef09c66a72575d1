// sinkhole.yaml: the schema, its defaults, and the strict reader. Every problem
// names file:line:col and the key path (docs/design.md §4 and docs/configuration.md). The result is
// frozen: nothing downstream may mutate what was validated.
import { dirname, join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isScalar } from 'yaml';
import { YamlReader, describe, type YNode } from './yamlReader.js';
import { parseCidr } from '../policy/cidr.js';
import { parseUpstream, systemResolvers, type UpstreamSpec } from '../upstream/spec.js';
import { loadTlsFiles, type TlsPaths } from '../transport/tlsFiles.js';
import { PolicyError } from '../errors.js';
import { diskSource, type FileSource } from '../policy/sources.js';
import { LEASE_FORMATS, type LeaseFormat } from '../identity/leaseFormats.js';
import { normalizeMac, parseSelector } from '../identity/mac.js';
import { CREDENTIAL_PREFIX, credentialNameProblem } from '../metrics/token.js';
import { readRpzExport, type RpzExportConfig } from './rpzExport.js';
import { DAY, HOUR, MINUTE, normalizeDomain, parseEndpoint, resolveOptional, resolvePath, type Endpoint, type SourceRef, type TsigConfig } from './values.js';
import { readEvents, type EventsConfig, type SyslogSinkConfig, type WebhookSinkConfig } from './events.js';
import { readDnstap, type DnstapConfig } from './dnstap.js';
import { readRpz, type RpzSpec } from './rpz.js';

export { normalizeDomain, parseEndpoint, type Endpoint, type SourceRef, type TsigConfig };
export { readTsig } from './values.js';
export type { EventsConfig, SyslogSinkConfig, WebhookSinkConfig, DnstapConfig, RpzSpec };


export type ResponseMode =
  | { kind: 'nxdomain' | 'nodata' | 'null-ip' | 'refused' }
  | { kind: 'custom'; a?: string; aaaa?: string };


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
  upstreams: {
    servers: UpstreamSpec[];
    conditional: { domain: string; servers: UpstreamSpec[] }[];
    strategy: 'failover' | 'random' | 'race';
    timeoutMs: number;
    sourcePorts: number;
    sourcePortReuse: number;
    maxInflight: number;
    /** For tls:// and https:// upstreams. */
    tls: UpstreamTls;
  };
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
  /** Members are IPs/CIDRs, `mac:...` or `host:...` (identity/mac.ts parseSelector). */
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

/** Parses "host:port" or "[v6]:port". */

const sec = (ms: number): number => Math.floor(ms / 1000);
// Every duration has a documented range (docs/configuration.md). One that arms a timer stays far
// below 2^31-1 ms (about 24.8 days), where Node's timers overflow and fire after 1 ms:
// upstreams.timeout: 30d used to make every forwarded query SERVFAIL.

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

/** Reads and validates a config file; throws PolicyError listing every problem. */
export function loadConfig(file: string, source: FileSource = diskSource): Config {
  const path = resolve(file);
  const r = YamlReader.fromFile(path, 'SH_CONFIG_INVALID', source);
  const config = readConfig(r, path);
  if (r.problems.length) throw new PolicyError(r.problems);
  return config;
}

function readConfig(r: YamlReader, path: string): Config {
  const c = defaultConfig(path);
  const root = r.root;
  if (root === undefined) return c;
  if (root === null || (isScalar(root) && root.value === null)) {
    r.fail(root, '', 'the config is empty; expected a mapping with listen, upstreams, cache, blocking, clients, exceptions');
    return c;
  }
  const pendingEnforce: { value: string; node: YNode; q: string }[] = [];
  const pendingExempt: { value: string; node: YNode; q: string }[] = [];
  const bootstrap = new Map<string, string>();
  const upstreamList = (node: YNode, p: string): UpstreamSpec[] => {
    const out: UpstreamSpec[] = [];
    for (const { value, node: n } of r.strings(node, p)) {
      if (value === 'system') {
        const sys = systemResolvers();
        if (!sys.length) r.fail(n, p, '"system" found no nameserver in /etc/resolv.conf');
        out.push(...sys);
        continue;
      }
      const spec = parseUpstream(value, bootstrap);
      if (typeof spec === 'string') r.fail(n, p, spec);
      else out.push(spec);
    }
    if (!out.length && !r.problems.length) r.fail(node, p, 'expected at least one upstream server');
    return out;
  };

  r.map(root, '', {
    listen: (n, p) =>
      r.map(n, p, {
        dns: (v, q) => {
          const eps: Endpoint[] = [];
          for (const { value, node } of r.strings(v, q)) {
            const ep = parseEndpoint(value);
            if (typeof ep === 'string') r.fail(node, q, ep);
            else eps.push(ep);
          }
          c.listen.dns = eps;
        },
        http: (v, q) => {
          const s = r.string(v, q);
          const ep = s === undefined ? undefined : parseEndpoint(s);
          if (typeof ep === 'string') r.fail(v, q, ep);
          else c.listen.http = ep;
        },
        tcpIdleTimeout: (v, q) => (c.listen.tcpIdleTimeoutMs = r.duration(v, q, 100, HOUR) ?? c.listen.tcpIdleTimeoutMs),
        tcpMaxConnections: (v, q) => (c.listen.tcpMaxConnections = r.integer(v, q, 1, 1_000_000) ?? c.listen.tcpMaxConnections),
        tcpMaxConnectionsPerClient: (v, q) =>
          (c.listen.tcpMaxConnectionsPerClient = r.integer(v, q, 1, 1_000_000) ?? c.listen.tcpMaxConnectionsPerClient),
        tcpConnectionLifetime: (v, q) => (c.listen.tcpConnectionLifetimeMs = r.duration(v, q, 1000, DAY) ?? c.listen.tcpConnectionLifetimeMs),
        httpToken: (v, q) => {
          const s = r.string(v, q);
          // credential:NAME is read from $CREDENTIALS_DIRECTORY when used (metrics/token.ts), not resolved as a path.
          if (s?.startsWith(CREDENTIAL_PREFIX)) {
            const problem = credentialNameProblem(s.slice(CREDENTIAL_PREFIX.length));
            if (problem) r.fail(v, q, problem);
            else c.listen.httpToken = s;
          } else c.listen.httpToken = resolveOptional(c.dir, s);
        },
        dot: (v, q) => (c.listen.dot = endpoints(r, v, q)),
        doh: (v, q) => (c.listen.doh = endpoints(r, v, q)),
        tls: (v, q) => (c.listen.tls = readListenTls(r, v, q, c.dir)),
        rpz: (v, q) => (c.listen.rpz = readRpzExport(r, v, q, c.dir)),
      }),
    upstreams: (n, p) => {
      // The server lists are read after the whole block, so upstreams.tls.bootstrap may come after them.
      const lists: { v: YNode; q: string; conditional: boolean }[] = [];
      let tlsNode: { v: YNode; q: string } | undefined;
      r.map(n, p, {
        servers: (v, q) => lists.push({ v, q, conditional: false }),
        conditional: (v, q) => lists.push({ v, q, conditional: true }),
        tls: (v, q) => (tlsNode = { v, q }),
        strategy: (v, q) => (c.upstreams.strategy = r.oneOf(v, q, ['failover', 'random', 'race'] as const) ?? c.upstreams.strategy),
        timeout: (v, q) => (c.upstreams.timeoutMs = r.duration(v, q, 50, MINUTE) ?? c.upstreams.timeoutMs),
        sourcePorts: (v, q) => (c.upstreams.sourcePorts = r.integer(v, q, 1, 16384) ?? c.upstreams.sourcePorts),
        sourcePortReuse: (v, q) => (c.upstreams.sourcePortReuse = r.integer(v, q, 1, 10000) ?? c.upstreams.sourcePortReuse),
        maxInflight: (v, q) => (c.upstreams.maxInflight = r.integer(v, q, 1, 100_000) ?? c.upstreams.maxInflight),
      });
      const pins = tlsNode ? readUpstreamTls(r, tlsNode.v, tlsNode.q, c, bootstrap) : [];
      for (const { v, q, conditional } of lists) {
        if (!conditional) c.upstreams.servers = upstreamList(v, q);
        else {
          c.upstreams.conditional = r.entries(v, q).map(({ key, keyNode, value }) => {
            const domain = normalizeDomain(key);
            if (!domain) r.fail(keyNode, `${q}.${key}`, 'expected a domain name');
            return { domain, servers: upstreamList(value, `${q}.${key}`) };
          });
        }
      }
      // A pin for a name no upstream uses would pin nothing: almost surely a typo.
      const names = new Set(
        [...c.upstreams.servers, ...c.upstreams.conditional.flatMap((x) => x.servers)]
          .filter((s) => s.transport === 'tls' || s.transport === 'https')
          .map((s) => s.authName ?? s.host),
      );
      for (const { name, node, q } of pins) {
        if (!names.has(name)) r.fail(node, q, `no tls:// or https:// upstream is checked against "${name}"; pins are keyed by the #name of an upstream (or its IP when it has none)`);
      }
    },
    cache: (n, p) =>
      r.map(n, p, {
        maxEntries: (v, q) => (c.cache.maxEntries = r.integer(v, q, 0, 100_000_000) ?? c.cache.maxEntries),
        minTtl: (v, q) => (c.cache.minTtl = sec(r.duration(v, q, 0, HOUR) ?? c.cache.minTtl * 1000)),
        maxTtl: (v, q) => (c.cache.maxTtl = sec(r.duration(v, q, 1000, 7 * DAY) ?? c.cache.maxTtl * 1000)),
        maxNegativeTtl: (v, q) => (c.cache.maxNegativeTtl = sec(r.duration(v, q, 0, DAY) ?? c.cache.maxNegativeTtl * 1000)),
        serveStale: (v, q) => readServeStale(r, v, q, c.cache.serveStale),
        prefetch: (v, q) => (c.cache.prefetch = r.boolean(v, q) ?? c.cache.prefetch),
        // RFC 2308 §7.1: a server failure MUST NOT be cached for longer than five minutes.
        servfailTtl: (v, q) => (c.cache.servfailTtlMs = r.duration(v, q, 0, 300_000) ?? c.cache.servfailTtlMs),
      }),
    blocking: (n, p) =>
      r.map(n, p, {
        lists: (v, q) => {
          c.blocking.lists = r.entries(v, q).map(({ key, keyNode, value }) => {
            if (!/^[A-Za-z0-9_-]+$/.test(key)) r.fail(keyNode, `${q}.${key}`, 'a list name may use letters, digits, - and _');
            const files = r.strings(value, `${q}.${key}`).map((f) => resolve(c.dir, f.value));
            return { name: key, files, ref: { file: r.file, ...r.pos(keyNode) } };
          });
        },
        rpz: (v, q) => (c.blocking.rpz = readRpz(r, v, q, c.dir)),
        enforce: (v, q) => {
          c.blocking.enforce = r.strings(v, q).map(({ value, node }) => {
            pendingEnforce.push({ value, node, q });
            return value;
          });
        },
        response: (v, q) => (c.blocking.response = readResponse(r, v, q) ?? c.blocking.response),
        ttl: (v, q) => (c.blocking.ttl = sec(r.duration(v, q, 0, DAY) ?? c.blocking.ttl * 1000)),
        inspectCnames: (v, q) => (c.blocking.inspectCnames = r.boolean(v, q) ?? c.blocking.inspectCnames),
      }),
    clients: (n, p) =>
      r.map(n, p, {
        allowFrom: (v, q) => (c.clients.allowFrom = cidrs(r, v, q)),
        groups: (v, q) => {
          c.clients.groups = r.entries(v, q).map(({ key, value }) => ({ name: key, members: selectors(r, value, `${q}.${key}`) }));
        },
        rateLimit: (v, q) => (c.clients.rateLimit = readRateLimit(r, v, q, pendingExempt)),
        trustedRelays: (v, q) => (c.clients.trustedRelays = cidrs(r, v, q)),
      }),
    exceptions: (n, p) => {
      if (isScalar(n) && typeof n.value === 'string') c.exceptions = { file: resolve(c.dir, n.value) };
      else if (n && !isScalar(n)) c.exceptions = { inline: n, reader: r };
      else r.fail(n, p, 'expected a file path or a list of exceptions');
    },
    log: (n, p) =>
      r.map(n, p, {
        queries: (v, q) => (c.log.queries = r.oneOf(v, q, ['none', 'blocked', 'all'] as const) ?? c.log.queries),
        file: (v, q) => (c.log.file = resolveOptional(c.dir, r.string(v, q))),
        anonymizeClients: (v, q) => (c.log.anonymizeClients = r.boolean(v, q) ?? false),
        audit: (v, q) => (c.log.audit = resolveOptional(c.dir, r.string(v, q))),
        dnstap: (v, q) => (c.log.dnstap = readDnstap(r, v, q, c.dir)),
      }),
    report: (n, p) =>
      r.map(n, p, {
        window: (v, q) => (c.report.windowMs = r.duration(v, q, 1000, 90 * DAY) ?? c.report.windowMs),
        maxClients: (v, q) => (c.report.maxClients = r.integer(v, q, 1, 10_000_000) ?? c.report.maxClients),
        store: (v, q) => {
          const s = r.string(v, q);
          if (s === undefined) return;
          if (s === 'memory') c.report.store = { kind: 'memory' };
          else if (/^postgres(ql)?:\/\/./.test(s) && URL.canParse(s)) c.report.store = { kind: 'postgres', url: s };
          else r.fail(v, q, `expected memory or a PostgreSQL URL like postgres://sinkhole@db.internal/sinkhole, got "${s}"`);
        },
        retention: (v, q) => (c.report.retentionMs = r.duration(v, q, HOUR, 366 * DAY) ?? c.report.retentionMs),
      }),
    state: (n, p) =>
      r.map(n, p, {
        dir: (v, q) => {
          const s = r.string(v, q);
          if (s !== undefined) c.state.dir = resolve(c.dir, s);
        },
      }),
    identity: (n, p) =>
      r.map(n, p, {
        leases: (v, q) => {
          c.identity.leases = r.seq(v, q).flatMap((item, i) => {
            const src: { format?: LeaseFormat; file?: string } = {};
            r.map(item, `${q}[${i}]`, {
              format: (x, xq) => (src.format = r.oneOf(x, xq, LEASE_FORMATS)),
              file: (x, xq) => {
                const f = r.string(x, xq);
                if (f !== undefined) src.file = resolve(c.dir, f);
              },
            });
            if (src.format && src.file) return [{ format: src.format, file: src.file }];
            if (!r.problems.length) r.fail(item, `${q}[${i}]`, 'expected { format: kea-csv | dnsmasq | dhcpd | csv, file: PATH }');
            return [];
          });
        },
        static: (v, q) => {
          const m = new Map<string, string>();
          for (const { key, keyNode, value } of r.entries(v, q)) {
            const mac = normalizeMac(key);
            const name = r.string(value, `${q}.${key}`);
            if (!mac) r.fail(keyNode, `${q}.${key}`, `expected a MAC address like aa:bb:cc:dd:ee:ff as the key`);
            else if (name !== undefined) m.set(mac, name.trim().toLowerCase());
          }
          c.identity.static = m;
        },
      }),
    workers: (v, q) => {
      const n = isScalar(v) ? v.value : undefined;
      if (n === 'auto') c.workers = availableParallelism();
      else if (typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 256) c.workers = n;
      else r.fail(v, q, `expected a whole number from 1 to 256, or auto (one per core), got ${describe(v)}`);
    },
    events: (v, q) => (c.events = readEvents(r, v, q, c.dir)),
    chaos: (v, q) => {
      const s = r.string(v, q);
      // RFC 1035 §3.3: a TXT character-string holds at most 255 bytes.
      if (s !== undefined && Buffer.byteLength(s) > 255) r.fail(v, q, `expected "refused" or a string of at most 255 bytes, got ${Buffer.byteLength(s)} bytes`);
      else c.chaos = s === 'refused' ? undefined : s;
    },
  });
  // `enforce` may come before `lists` in the file, so names are checked once both are read.
  const listNames = [...c.blocking.lists.map((l) => l.name), ...c.blocking.rpz.map((z) => z.name)];
  for (const { value, node, q } of pendingEnforce) {
    if (!listNames.includes(value)) {
      r.fail(node, q, `unknown list "${value}"; defined lists are ${listNames.join(', ') || '(none)'}`);
    }
  }
  // A zone pulled from a primary is kept as a zone file under state.dir (known only once the whole file is read).
  c.blocking.rpz = c.blocking.rpz.map((z) => (z.primary ? { ...z, file: join(c.state.dir, 'rpz', `${z.name}.zone`) } : z));
  // An RPZ's name is a list name (enforce, exceptions, metrics): it may not be another list's.
  for (const z of c.blocking.rpz) {
    if (c.blocking.lists.some((l) => l.name === z.name)) {
      r.problems.push({ code: 'SH_CONFIG_INVALID', ...z.ref, message: `blocking.rpz: "${z.name}" is also the name of a list in blocking.lists; every list and zone needs its own name` });
    }
  }
  // Groups may be defined after rateLimit in the file, so exempt names are checked once both are read.
  for (const { value, node, q } of pendingExempt) {
    if (!c.clients.groups.some((g) => g.name === value)) {
      r.fail(node, q, `unknown group "${value}"; defined groups are ${c.clients.groups.map((g) => g.name).join(', ') || '(none)'}`);
    }
  }
  if (c.report.retentionMs < c.report.windowMs) {
    r.fail(root, 'report.retention', `must be at least report.window (${c.report.windowMs / 1000}s), got ${c.report.retentionMs / 1000}s`);
  }
  if (c.cache.minTtl > c.cache.maxTtl) r.fail(root, 'cache', `minTtl (${c.cache.minTtl}s) is above maxTtl (${c.cache.maxTtl}s)`);
  if (!c.listen.dns.length && !r.problems.length) r.fail(root, 'listen.dns', 'expected at least one address to listen on');
  if ((c.listen.dot.length || c.listen.doh.length) && !c.listen.tls && !r.problems.length) {
    r.fail(root, 'listen.tls', 'listen.dot and listen.doh need a certificate: listen.tls: { cert: FILE, key: FILE }');
  }
  return Object.freeze(c);
}







function readServeStale(r: YamlReader, node: YNode, path: string, out: Config['cache']['serveStale']): void {
  r.map(node, path, {
    enabled: (v, q) => (out.enabled = r.boolean(v, q) ?? out.enabled),
    // Below the upstream timeout, so a stale answer comes before a SERVFAIL would (RFC 8767 §5: 1.8 s).
    clientTimeout: (v, q) => (out.clientTimeoutMs = r.duration(v, q, 50, 30_000) ?? out.clientTimeoutMs),
    answerTtl: (v, q) => (out.answerTtl = sec(r.duration(v, q, 1000, 3_600_000) ?? out.answerTtl * 1000)),
    // RFC 8767 §5 suggests 1 to 3 days; a week at most, so a long-gone name is never resurrected.
    maxStale: (v, q) => (out.maxStaleMs = r.duration(v, q, 1000, 7 * 86_400_000) ?? out.maxStaleMs),
  });
}

function readRateLimit(r: YamlReader, node: YNode, path: string, pendingExempt: { value: string; node: YNode; q: string }[]): RateLimitConfig {
  // Generous for a LAN (docs/configuration.md "Rate limiting" says why); present means on.
  const out: RateLimitConfig = { qps: 500, burst: 2000, action: 'truncate', exempt: [], dryRun: false, ipv4Prefix: 32, ipv6Prefix: 56, slip: 2 };
  r.map(node, path, {
    qps: (v, q) => (out.qps = r.integer(v, q, 1, 1_000_000) ?? out.qps),
    burst: (v, q) => (out.burst = r.integer(v, q, 1, 10_000_000) ?? out.burst),
    action: (v, q) => (out.action = r.oneOf(v, q, ['truncate', 'refuse'] as const) ?? out.action),
    exempt: (v, q) => {
      out.exempt = r.strings(v, q).map(({ value, node: n }) => {
        pendingExempt.push({ value, node: n, q });
        return value;
      });
    },
    dryRun: (v, q) => (out.dryRun = r.boolean(v, q) ?? out.dryRun),
    ipv4Prefix: (v, q) => (out.ipv4Prefix = r.integer(v, q, 8, 32) ?? out.ipv4Prefix),
    ipv6Prefix: (v, q) => (out.ipv6Prefix = r.integer(v, q, 16, 128) ?? out.ipv6Prefix),
    slip: (v, q) => (out.slip = r.integer(v, q, 0, 10) ?? out.slip),
  });
  return out;
}

function endpoints(r: YamlReader, node: YNode, path: string): Endpoint[] {
  const eps: Endpoint[] = [];
  for (const { value, node: n } of r.strings(node, path)) {
    const ep = parseEndpoint(value);
    if (typeof ep === 'string') r.fail(n, path, ep);
    else eps.push(ep);
  }
  return eps;
}

/** listen.tls: both files, readable, and a certificate with its own key (checked here, so `validate` says so). */
function readListenTls(r: YamlReader, node: YNode, path: string, dir: string): TlsPaths | undefined {
  const out: Partial<TlsPaths> = {};
  r.map(node, path, {
    cert: (v, q) => (out.cert = resolvePath(dir, r.string(v, q))),
    key: (v, q) => (out.key = resolvePath(dir, r.string(v, q))),
  });
  if (!out.cert || !out.key) return r.fail(node, path, 'expected both cert and key files (PEM)');
  const loaded = loadTlsFiles(out as TlsPaths);
  if (typeof loaded === 'string') return r.fail(node, path, loaded);
  return out as TlsPaths;
}

/** SHA-256 digest as RFC 7469 prints it: 32 bytes in base64. */
const PIN = /^sha256\/([A-Za-z0-9+/]{43}=)$/;

/**
 * upstreams.tls: `ca` (a PEM file), `pins` (name → ["sha256/BASE64"]) and
 * `bootstrap` (name → IP). Fills c.upstreams.tls and `bootstrap`; returns
 * the pin names, checked once the upstreams are known.
 */
function readUpstreamTls(
  r: YamlReader, node: YNode, path: string, c: Config, bootstrap: Map<string, string>,
): { name: string; node: YNode; q: string }[] {
  const names: { name: string; node: YNode; q: string }[] = [];
  r.map(node, path, {
    ca: (v, q) => {
      const file = resolvePath(c.dir, r.string(v, q));
      if (!file) return;
      let pem: string;
      try {
        pem = readFileSync(file, 'utf8');
      } catch (e) {
        return r.fail(v, q, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
      if (!blocks.length) return r.fail(v, q, `${file} holds no PEM certificate`);
      for (const [i, b] of blocks.entries()) {
        try {
          new X509Certificate(b);
        } catch (e) {
          return r.fail(v, q, `certificate ${i + 1} in ${file} does not parse: ${(e as Error).message}`);
        }
      }
      c.upstreams.tls.ca = pem;
    },
    pins: (v, q) => {
      for (const { key, keyNode, value } of r.entries(v, q)) {
        const name = key.toLowerCase().replace(/\.$/, '');
        names.push({ name, node: keyNode, q: `${q}.${key}` });
        c.upstreams.tls.pins[name] = r.strings(value, `${q}.${key}`).flatMap(({ value: pin, node: n }) => {
          const m = PIN.exec(pin);
          if (!m || Buffer.from(m[1]!, 'base64').length !== 32) {
            r.fail(n, `${q}.${key}`, `expected "sha256/" and the base64 SHA-256 of the certificate's public key (44 characters), got "${pin}"`);
            return [];
          }
          return [m[1]!];
        });
      }
    },
    bootstrap: (v, q) => {
      for (const { key, value } of r.entries(v, q)) {
        const ip = r.string(value, `${q}.${key}`);
        if (ip === undefined) continue;
        if (!isIP(ip)) r.fail(value, `${q}.${key}`, `expected the IP address of ${key}, got "${ip}"`);
        else bootstrap.set(key.toLowerCase().replace(/\.$/, ''), ip);
      }
    },
  });
  return names;
}



/** Group members: IPs/CIDRs, mac:... or host:... */
function selectors(r: YamlReader, node: YNode, path: string): string[] {
  return r.strings(node, path).map(({ value, node: n }) => {
    const sel = parseSelector(value);
    if (typeof sel === 'string') r.fail(n, path, sel);
    return value;
  });
}

function cidrs(r: YamlReader, node: YNode, path: string): string[] {
  return r.strings(node, path).map(({ value, node: n }) => {
    const net = parseCidr(value);
    if (typeof net === 'string') r.fail(n, path, net);
    return value;
  });
}

function readResponse(r: YamlReader, node: YNode, path: string): ResponseMode | undefined {
  if (isScalar(node)) {
    const kind = r.oneOf(node, path, ['nxdomain', 'nodata', 'null-ip', 'refused'] as const);
    return kind ? { kind } : undefined;
  }
  const out: { kind: 'custom'; a?: string; aaaa?: string } = { kind: 'custom' };
  r.map(node, path, {
    a: (v, q) => {
      const s = r.string(v, q);
      if (s !== undefined && isIP(s) !== 4) r.fail(v, q, `expected an IPv4 address, got "${s}"`);
      else out.a = s;
    },
    aaaa: (v, q) => {
      const s = r.string(v, q);
      if (s !== undefined && isIP(s) !== 6) r.fail(v, q, `expected an IPv6 address, got "${s}"`);
      else out.aaaa = s;
    },
  });
  if (!out.a && !out.aaaa) r.fail(node, path, 'a custom response needs a and/or aaaa');
  return out;
}

/** Lower-cased, without the trailing dot; '' when it is not a plausible domain name. */
