// sinkhole.yaml: the schema, its defaults, and the strict reader. Every problem
// names file:line:col and the key path (DESIGN.md §3 "Config"). The result is
// frozen: nothing downstream may mutate what was validated.
import { dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import { isScalar } from 'yaml';
import { YamlReader, type YNode } from './yamlReader.js';
import { parseCidr } from '../policy/cidr.js';
import { parseUpstream, systemResolvers, type UpstreamSpec } from '../upstream/spec.js';
import { PolicyError, type Problem } from '../errors.js';

export interface Endpoint {
  host: string;
  port: number;
}

export type ResponseMode =
  | { kind: 'nxdomain' | 'nodata' | 'null-ip' | 'refused' }
  | { kind: 'custom'; a?: string; aaaa?: string };

export interface SourceRef {
  file: string;
  line: number;
  col: number;
}

export interface Config {
  file: string;
  dir: string;
  listen: {
    dns: Endpoint[];
    http?: Endpoint;
    tcpIdleTimeoutMs: number;
    tcpMaxConnections: number;
    tcpMaxConnectionsPerClient: number;
    tcpConnectionLifetimeMs: number;
  };
  upstreams: {
    servers: UpstreamSpec[];
    conditional: { domain: string; servers: UpstreamSpec[] }[];
    strategy: 'failover' | 'random' | 'race';
    timeoutMs: number;
    sourcePortReuse: number;
    maxInflight: number;
  };
  cache: { maxEntries: number; minTtl: number; maxTtl: number; maxNegativeTtl: number };
  blocking: {
    lists: { name: string; files: string[]; ref: SourceRef }[];
    enforce: string[];
    response: ResponseMode;
    ttl: number;
    inspectCnames: boolean;
  };
  clients: { allowFrom: string[]; groups: { name: string; members: string[] }[] };
  /** A file path, or the YAML node of an inline list (read with this config's reader). */
  exceptions: { file: string } | { inline: YNode; reader: YamlReader } | undefined;
  log: { queries: 'none' | 'blocked' | 'all'; file?: string; anonymizeClients: boolean; audit?: string };
  report: { windowMs: number; maxClients: number };
  /** The TXT string for CHAOS version.bind & co.; undefined: REFUSED. */
  chaos: string | undefined;
}

/** Parses "host:port" or "[v6]:port". */
export function parseEndpoint(text: string): Endpoint | string {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!m || !isIP(m[1]!)) return `expected "address:port" like 127.0.0.1:1053 or [::1]:1053, got "${text}"`;
  const port = Number(m[2]);
  if (port > 65535) return `port must be 0 to 65535, got ${port}`;
  return { host: m[1]!, port };
}

const sec = (ms: number): number => Math.floor(ms / 1000);
// Every duration has a documented range (README "Configuration"), none past what a Node timer holds.
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export function defaultConfig(file: string): Config {
  return {
    file,
    dir: dirname(file),
    listen: {
      dns: [{ host: '127.0.0.1', port: 1053 }], tcpIdleTimeoutMs: 10_000, tcpMaxConnections: 1000,
      tcpMaxConnectionsPerClient: 32, tcpConnectionLifetimeMs: 2 * 60_000,
    },
    upstreams: { servers: systemResolvers(), conditional: [], strategy: 'failover', timeoutMs: 2000, sourcePortReuse: 1, maxInflight: 1000 },
    cache: { maxEntries: 100_000, minTtl: 0, maxTtl: 86_400, maxNegativeTtl: 3600 },
    blocking: { lists: [], enforce: [], response: { kind: 'nxdomain' }, ttl: 10, inspectCnames: true },
    clients: { allowFrom: ['127.0.0.0/8', '::1/128'], groups: [] },
    exceptions: undefined,
    log: { queries: 'blocked', anonymizeClients: false },
    report: { windowMs: 86_400_000, maxClients: 100_000 },
    chaos: undefined,
  };
}

/** Reads and validates a config file; throws PolicyError listing every problem. */
export function loadConfig(file: string): Config {
  const path = resolve(file);
  const r = YamlReader.fromFile(path, 'SH_CONFIG_INVALID');
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
  const upstreamList = (node: YNode, p: string): UpstreamSpec[] => {
    const out: UpstreamSpec[] = [];
    for (const { value, node: n } of r.strings(node, p)) {
      if (value === 'system') {
        const sys = systemResolvers();
        if (!sys.length) r.fail(n, p, '"system" found no nameserver in /etc/resolv.conf');
        out.push(...sys);
        continue;
      }
      const spec = parseUpstream(value);
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
      }),
    upstreams: (n, p) =>
      r.map(n, p, {
        servers: (v, q) => (c.upstreams.servers = upstreamList(v, q)),
        conditional: (v, q) => {
          c.upstreams.conditional = r.entries(v, q).map(({ key, keyNode, value }) => {
            const domain = normalizeDomain(key);
            if (!domain) r.fail(keyNode, `${q}.${key}`, 'expected a domain name');
            return { domain, servers: upstreamList(value, `${q}.${key}`) };
          });
        },
        strategy: (v, q) => (c.upstreams.strategy = r.oneOf(v, q, ['failover', 'random', 'race'] as const) ?? c.upstreams.strategy),
        timeout: (v, q) => (c.upstreams.timeoutMs = r.duration(v, q, 50, MINUTE) ?? c.upstreams.timeoutMs),
        sourcePortReuse: (v, q) => (c.upstreams.sourcePortReuse = r.integer(v, q, 1, 1000) ?? c.upstreams.sourcePortReuse),
        maxInflight: (v, q) => (c.upstreams.maxInflight = r.integer(v, q, 1, 100_000) ?? c.upstreams.maxInflight),
      }),
    cache: (n, p) =>
      r.map(n, p, {
        maxEntries: (v, q) => (c.cache.maxEntries = r.integer(v, q, 0, 100_000_000) ?? c.cache.maxEntries),
        minTtl: (v, q) => (c.cache.minTtl = sec(r.duration(v, q, 0, HOUR) ?? c.cache.minTtl * 1000)),
        maxTtl: (v, q) => (c.cache.maxTtl = sec(r.duration(v, q, 1000, 7 * DAY) ?? c.cache.maxTtl * 1000)),
        maxNegativeTtl: (v, q) => (c.cache.maxNegativeTtl = sec(r.duration(v, q, 0, DAY) ?? c.cache.maxNegativeTtl * 1000)),
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
          c.clients.groups = r.entries(v, q).map(({ key, value }) => ({ name: key, members: cidrs(r, value, `${q}.${key}`) }));
        },
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
      }),
    report: (n, p) =>
      r.map(n, p, {
        window: (v, q) => (c.report.windowMs = r.duration(v, q, 1000, 90 * DAY) ?? c.report.windowMs),
        maxClients: (v, q) => (c.report.maxClients = r.integer(v, q, 1, 10_000_000) ?? c.report.maxClients),
      }),
    chaos: (v, q) => {
      const s = r.string(v, q);
      // RFC 1035 §3.3: a TXT character-string holds at most 255 bytes.
      if (s !== undefined && Buffer.byteLength(s) > 255) r.fail(v, q, `expected "refused" or a string of at most 255 bytes, got ${Buffer.byteLength(s)} bytes`);
      else c.chaos = s === 'refused' ? undefined : s;
    },
  });
  // `enforce` may come before `lists` in the file, so names are checked once both are read.
  for (const { value, node, q } of pendingEnforce) {
    if (!c.blocking.lists.some((l) => l.name === value)) {
      r.fail(node, q, `unknown list "${value}"; defined lists are ${c.blocking.lists.map((l) => l.name).join(', ') || '(none)'}`);
    }
  }
  if (c.cache.minTtl > c.cache.maxTtl) r.fail(root, 'cache', `minTtl (${c.cache.minTtl}s) is above maxTtl (${c.cache.maxTtl}s)`);
  if (!c.listen.dns.length && !r.problems.length) r.fail(root, 'listen.dns', 'expected at least one address to listen on');
  return Object.freeze(c);
}

function resolveOptional(dir: string, file: string | undefined): string | undefined {
  if (file === undefined || file === '-' || file === 'stdout') return file === undefined ? undefined : '-';
  return resolve(dir, file);
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
export function normalizeDomain(name: string): string {
  const d = name.trim().toLowerCase().replace(/\.$/, '');
  if (d.length === 0 || d.length > 253) return '';
  for (const label of d.split('.')) if (!/^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label)) return '';
  return d;
}
