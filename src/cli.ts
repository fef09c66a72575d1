#!/usr/bin/env node
// sinkhole serve | validate | check | exceptions | report (DESIGN.md §3 "CLI").
// A startup error is one clear line per problem and a non-zero exit, never a stack trace.
import { relative } from 'node:path';
import { parseArgs } from 'node:util';
import { start } from './app.js';
import { PolicyError, SinkholeError, formatProblem } from './errors.js';
import { streamLogger } from './log.js';
import { TYPE } from './dns/constants.js';
import { buildGeneration, decide } from './policy/generation.js';
import { isActive } from './policy/exceptions.js';
import { normalizeAddress, parseAddress } from './policy/cidr.js';
import { VERSION } from './version.js';

const USAGE = `usage:
  sinkhole serve [--config PATH]
  sinkhole validate [--config PATH]
  sinkhole check NAME [--client IP] [--type A] [--at ISO-TIME] [--config PATH] [--json]
  sinkhole exceptions [--config PATH] [--json]
  sinkhole report [--url http://127.0.0.1:9153] [--json]
  sinkhole --version`;

const DEFAULT_CONFIG = 'sinkhole.yaml';

function fail(message: string, exit = 2): Promise<never> {
  process.stderr.write(`sinkhole: ${message}\n`);
  return exitAfterOutput(exit);
}

/**
 * Exits once stdout and stderr have handed everything to the kernel. Into a
 * pipe whose reader is slow, process.exit() right after write() cut
 * `validate` off after a pipe's worth of lines (419 of 2,000).
 */
async function exitAfterOutput(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => (s.writableLength === 0 ? resolve() : s.write('', () => resolve())))));
  process.exit(code);
}

function shortPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel.startsWith('..') ? file : rel;
}

/** The LTS line sinkhole is built and measured on (package.json "node"); older lines are past end of life. */
const MIN_NODE_MAJOR = 24;

async function main(argv: string[]): Promise<number> {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < MIN_NODE_MAJOR) {
    throw new SinkholeError(
      'SH_RUNTIME',
      `Node ${process.versions.node} is too old: sinkhole needs Node ${MIN_NODE_MAJOR} or later. Run it as bin/sinkhole or npm start, which use the runtime that npm ci installed`,
    );
  }
  const [command, ...rest] = argv;
  if (command === '--version' || command === 'version') {
    process.stdout.write(`sinkhole ${VERSION}\n`);
    return 0;
  }
  if (!command || command === '--help' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c', default: DEFAULT_CONFIG },
        client: { type: 'string', default: '127.0.0.1' },
        type: { type: 'string', default: 'A' },
        at: { type: 'string' },
        json: { type: 'boolean', default: false },
        url: { type: 'string', default: 'http://127.0.0.1:9153' },
      },
    });
  } catch (e) {
    throw new SinkholeError('SH_USAGE', `${(e as Error).message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  switch (command) {
    case 'serve':
      return serve(values.config);
    case 'validate':
      return validate(values.config);
    case 'check':
      if (positionals.length !== 1) throw new SinkholeError('SH_USAGE', `check takes one NAME\n${USAGE}`);
      return check(positionals[0]!, values);
    case 'exceptions':
      return listExceptions(values.config, values.json);
    case 'report':
      return report(values.url, values.json);
    default:
      throw new SinkholeError('SH_USAGE', `unknown command "${command}"\n${USAGE}`);
  }
}

async function serve(configFile: string): Promise<number> {
  const log = streamLogger();
  // Last line of defence: every query path catches its own errors, but a rejection that escapes
  // would end the process on Node 20; log it and keep serving.
  process.on('unhandledRejection', (e) => log.error('SH_INTERNAL', 'unhandled rejection', { error: String(e) }));
  const running = await start({ configFile, log });
  const g = running.policy.current;
  for (const d of running.dns) log.info('listening for DNS', { udp: `${d.udp.address}:${d.udp.port}`, tcp: `${d.tcp.address}:${d.tcp.port}` });
  if (running.http) log.info('listening for HTTP', { address: `${running.http.address}:${running.http.port}`, paths: '/metrics /healthz /readyz' });
  log.info('serving', {
    version: VERSION,
    upstreams: g.config.upstreams.servers.map((s) => s.label).join(','),
    enforce: g.config.blocking.enforce.join(','),
    rules: [...g.ruleCounts.values()].reduce((a, b) => a + b, 0),
    exceptions: g.exceptions.length,
  });
  // SIGHUP: reopen the log files (logrotate) and reload the policy (coalesced: a storm of
  // SIGHUPs costs a reload per second at most, never one each).
  process.on('SIGHUP', () => {
    void running.reopenLogs();
    running.reloader.request('config');
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('stopping: answering queries in flight', { signal });
      // Bounded drain: queries in flight end within the upstream timeout.
      const limit = setTimeout(() => {
        log.warn('SH_DRAIN_TIMEOUT', 'drain took too long; exiting');
        resolve();
      }, running.policy.current.config.upstreams.timeoutMs + 1000);
      running.close().then(() => {
        clearTimeout(limit);
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

function validate(configFile: string): number {
  try {
    const g = buildGeneration(configFile, 1);
    const rules = [...g.ruleCounts].map(([l, n]) => `${l}=${n}`).join(' ');
    process.stdout.write(`${shortPath(g.config.file)}: ok (lists: ${rules || 'none'}; exceptions: ${g.exceptions.length})\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    for (const p of e.problems) process.stdout.write(`${formatProblem({ ...p, file: shortPath(p.file) })}\n`);
    return 1;
  }
}

function qtypeNumber(text: string): number {
  const upper = text.toUpperCase();
  const known = (TYPE as Record<string, number>)[upper];
  if (known !== undefined) return known;
  const m = /^TYPE(\d+)$/.exec(upper);
  if (m) return Number(m[1]);
  throw new SinkholeError('SH_USAGE', `unknown query type "${text}"; use a name like A, AAAA, HTTPS or TYPE65`);
}

function check(name: string, v: { config: string; client: string; type: string; at?: string; json: boolean }): number {
  const at = v.at === undefined ? Date.now() : Date.parse(v.at);
  if (Number.isNaN(at)) throw new SinkholeError('SH_USAGE', `--at expects an ISO 8601 time like 2026-12-31T23:59:59Z, got "${v.at}"`);
  if (!parseAddress(v.client)) throw new SinkholeError('SH_USAGE', `--client expects an IP address, got "${v.client}"`);
  qtypeNumber(v.type);
  const g = buildGeneration(v.config, 1);
  const qname = name.toLowerCase().replace(/\.$/, '');
  const client = normalizeAddress(v.client);
  const view = g.clients.view(client);
  const d = view.allowed ? decide(g, qname, view, at) : undefined;
  const decision = d ? d.decision : 'refused';
  const source = d?.match ? `${shortPath(d.match.file)}:${d.match.line}` : null;
  const exception = d?.exception
    ? { id: d.exception.id, approvedBy: d.exception.approvedBy, reason: d.exception.reason, expires: d.exception.expires }
    : null;
  if (v.json) {
    const out = {
      decision, name: qname, type: v.type.toUpperCase(), client, at: new Date(at).toISOString(),
      list: d?.match?.list ?? null, rule: d?.match?.rule ?? null, source, exception, groups: view.groups,
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    const lines = [`${decision}: ${qname} ${v.type.toUpperCase()} from ${client} at ${new Date(at).toISOString()}`];
    if (decision === 'refused') lines.push(`  client is outside clients.allowFrom: it gets REFUSED for every name`);
    if (d?.match) lines.push(`  list: ${d.match.list}  rule: ${d.match.rule}  source: ${source}`);
    if (exception) lines.push(`  exception: ${exception.id}  approved by: ${exception.approvedBy}  expires: ${exception.expires}`, `  reason: ${exception.reason}`);
    if (decision === 'allowed') lines.push('  no enforced list matches; forwarded upstream');
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return decision === 'blocked' || decision === 'refused' ? 1 : 0;
}

function listExceptions(configFile: string, json: boolean): number {
  const g = buildGeneration(configFile, 1);
  const now = Date.now();
  const rows = g.exceptions.map((e) => ({
    id: e.id,
    state: isActive(e, now) ? 'active' : 'expired',
    expires: e.expires,
    expiresAt: new Date(e.expiresAt).toISOString(),
    secondsLeft: Math.max(0, Math.floor((e.expiresAt - now) / 1000)),
    clients: e.clients,
    allow: [...e.allowLists, ...e.allowDomains],
    approvedBy: e.approvedBy,
    reason: e.reason,
    source: `${shortPath(e.source.file)}:${e.source.line}`,
  }));
  if (json) {
    process.stdout.write(`${JSON.stringify(rows)}\n`);
    return 0;
  }
  if (!rows.length) process.stdout.write('no exceptions on record\n');
  for (const r of rows) {
    const left = r.state === 'active' ? `${humanDuration(r.secondsLeft)} left` : 'expired';
    process.stdout.write(`${r.id}  ${r.state}  expires ${r.expires} (${left})  clients ${r.clients.join(',')}  allow ${r.allow.join(',')}\n`);
    process.stdout.write(`    approved by ${r.approvedBy}: ${r.reason}\n`);
  }
  return 0;
}

function humanDuration(s: number): string {
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 60)}m ${s % 60}s`;
}

type ReportPage = {
  windowSeconds: number;
  total: number;
  clients: { client: string; blocked: number; firstSeen: string; lastSeen: string; topLists: { list: string; count: number }[] }[];
};

async function report(url: string, json: boolean): Promise<number> {
  // The server pages the report (at most 1,000 clients per request): fetch page after page.
  const body: ReportPage = { windowSeconds: 0, total: 0, clients: [] };
  for (let offset = 0; offset === 0 || offset < body.total; ) {
    const target = new URL(`/api/blocked-clients?offset=${offset}&limit=1000`, url);
    let page: ReportPage;
    try {
      const res = await fetch(target);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      page = (await res.json()) as ReportPage;
    } catch (e) {
      throw new SinkholeError('SH_USAGE', `cannot fetch ${new URL('/api/blocked-clients', url).href}: ${(e as Error).message}`);
    }
    body.windowSeconds = page.windowSeconds;
    body.total = page.total;
    body.clients.push(...page.clients);
    if (!page.clients.length) break;
    offset += page.clients.length;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(body)}\n`);
    return 0;
  }
  process.stdout.write(`clients that sent blocked queries in the last ${humanDuration(body.windowSeconds)}: ${body.clients.length}\n`);
  if (!body.clients.length) return 0;
  const header = ['CLIENT', 'BLOCKED', 'FIRST SEEN', 'LAST SEEN', 'TOP LISTS'];
  const rows = body.clients.map((c) => [c.client, String(c.blocked), c.firstSeen, c.lastSeen, c.topLists.map((l) => `${l.list}(${l.count})`).join(' ')]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => exitAfterOutput(code),
  (e: unknown) => {
    if (e instanceof PolicyError) {
      for (const p of e.problems) process.stderr.write(`sinkhole: ${formatProblem({ ...p, file: shortPath(p.file) })}\n`);
      return exitAfterOutput(2);
    }
    if (e instanceof SinkholeError) return fail(e.message, e.code === 'SH_LISTEN' ? 1 : 2);
    return fail(`unexpected error: ${e instanceof Error ? e.message : String(e)}`, 2);
  },
);
