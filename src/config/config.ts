// sinkhole.yaml's strict reader: the top-level map, the small sections (cache, blocking, exceptions,
// log, report, state, workers, chaos) and the checks across sections. The schema and its defaults are
// in schema.ts; the bigger sections have a file each (listen.ts, upstreams.ts, clients.ts,
// identity.ts, events.ts, dnstap.ts, rpz.ts, rpzExport.ts). Every problem names file:line:col and the
// key path (docs/configuration.md). The result is frozen: nothing downstream may mutate what was validated.
import { join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { isScalar } from 'yaml';
import { YamlReader, describe, type YNode } from './yamlReader.js';
import { PolicyError } from '../errors.js';
import { diskSource, type FileSource } from './sources.js';
import { DAY, HOUR, normalizeDomain, parseEndpoint, resolveOptional, type Endpoint, type SourceRef, type TsigConfig } from './values.js';
import { readEvents, type EventsConfig, type SyslogSinkConfig, type WebhookSinkConfig } from './events.js';
import { readDnstap, type DnstapConfig } from './dnstap.js';
import { readRpz, type RpzSpec } from './rpz.js';
import { defaultConfig, type Config, type ResponseMode } from './schema.js';
import { readListen } from './listen.js';
import { readUpstreams } from './upstreams.js';
import { readClients, type PendingName } from './clients.js';
import { readIdentity } from './identity.js';

export { normalizeDomain, parseEndpoint, type Endpoint, type SourceRef, type TsigConfig };
export { readTsig } from './values.js';
export type { EventsConfig, SyslogSinkConfig, WebhookSinkConfig, DnstapConfig, RpzSpec };
export { defaultConfig, type Config, type RateLimitConfig, type ResponseMode, type UpstreamTls, type UpstreamsConfig } from './schema.js';

const sec = (ms: number): number => Math.floor(ms / 1000);
// Every duration has a documented range (docs/configuration.md). One that arms a timer stays far
// below 2^31-1 ms (about 24.8 days), where Node's timers overflow and fire after 1 ms:
// upstreams.timeout: 30d used to make every forwarded query SERVFAIL.

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
  const pendingExempt: PendingName[] = [];

  r.map(root, '', {
    listen: (n, p) => readListen(r, n, p, c),
    upstreams: (n, p) => readUpstreams(r, n, p, c),
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
    clients: (n, p) => readClients(r, n, p, c, pendingExempt),
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
    identity: (n, p) => readIdentity(r, n, p, c),
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
