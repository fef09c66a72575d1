#!/usr/bin/env node
// sinkhole serve | validate | check | exceptions | report (DESIGN.md §3 "CLI").
// A startup error is one clear line per problem and a non-zero exit, never a stack trace.
import { relative } from 'node:path';
import { parseArgs } from 'node:util';
import { start } from './app.js';
import { PolicyError, SinkholeError, formatProblem } from './errors.js';
import { streamLogger } from './log.js';
import { TYPE } from './dns/constants.js';
import { buildGeneration, decide, type Generation } from './policy/generation.js';
import { lastGood } from './state/lastGood.js';
import { loadConfig } from './config/config.js';
import { loadIdentity } from './identity/sources.js';
import { normalizeMac, parseSelector } from './identity/mac.js';
import type { IdentityTable } from './identity/table.js';
import { readHttpToken } from './metrics/token.js';
import type { ReportSnapshot } from './querylog/report.js';
import { isActive } from './policy/exceptions.js';
import { normalizeAddress, parseAddress } from './policy/cidr.js';
import { VERSION } from './version.js';

const USAGE = `usage:
  sinkhole serve [--config PATH]
  sinkhole validate [--config PATH]
  sinkhole check NAME [--client IP|MAC] [--type A] [--at ISO-TIME] [--config PATH] [--json]
  sinkhole exceptions [--config PATH] [--json]
  sinkhole report [--config PATH | --url http://127.0.0.1:9153] [--json]
  sinkhole --version`;

const DEFAULT_CONFIG = 'sinkhole.yaml';

function fail(message: string, exit = 2): never {
  process.stderr.write(`sinkhole: ${message}\n`);
  process.exit(exit);
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
  const all = {
    config: { type: 'string', short: 'c', default: DEFAULT_CONFIG },
    client: { type: 'string', default: '127.0.0.1' },
    type: { type: 'string', default: 'A' },
    at: { type: 'string' },
    json: { type: 'boolean', default: false },
    url: { type: 'string' },
  } as const;
  // Each command takes only its own options: `report --client x` is a mistake to point out, not to ignore.
  const allowed: Record<string, readonly (keyof typeof all)[]> = {
    serve: ['config'], validate: ['config'], check: ['config', 'client', 'type', 'at', 'json'],
    exceptions: ['config', 'json'], report: ['config', 'url', 'json'],
  };
  let parsed;
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, options: all, tokens: true });
  } catch (e) {
    throw new SinkholeError('SH_USAGE', `${(e as Error).message}\n${USAGE}`);
  }
  const own = allowed[command];
  for (const tok of parsed.tokens) {
    if (own && tok.kind === 'option' && !own.includes(tok.name as keyof typeof all)) {
      throw new SinkholeError('SH_USAGE', `${command} does not take ${tok.rawName}\n${USAGE}`);
    }
  }
  if (command !== 'check' && parsed.positionals.length) {
    throw new SinkholeError('SH_USAGE', `${command} takes no argument "${parsed.positionals[0]}"\n${USAGE}`);
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
      return report(values, parsed.tokens.some((t) => t.kind === 'option' && t.name === 'config'));
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
  // SIGHUP: reopen the log files (logrotate) and reload the policy.
  process.on('SIGHUP', () => {
    void running.reopenLogs();
    void running.reloader.reload('config');
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
    // Warnings: things that are valid but probably not what was meant. They do not fail validation.
    const warnings: string[] = [];
    if (g.config.listen.httpToken) {
      try {
        readHttpToken(g.config.listen.httpToken);
      } catch (e) {
        warnings.push(`${shortPath(g.config.file)}:1:1: warning: ${(e as Error).message}; serve will refuse to start`);
      }
    }
    const { table, problems } = loadIdentity(g.config.identity, Date.now());
    for (const p of problems) warnings.push(`${formatProblem({ ...p, file: shortPath(p.file) })} (warning: serve keeps watching this source)`);
    warnings.push(...deviceWarnings(g, table).map((w) => `${shortPath(w.file)}:${w.line}:${w.col}: warning: ${w.message}`));
    for (const w of warnings) process.stdout.write(`${w}\n`);
    process.stdout.write(`${shortPath(g.config.file)}: ok (lists: ${rules || 'none'}; exceptions: ${g.exceptions.length}; lease sources: ${g.config.identity.leases.length}, devices: ${table.size})${warnings.length ? `, ${warnings.length} warning(s)` : ''}\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    for (const p of e.problems) process.stdout.write(`${formatProblem({ ...p, file: shortPath(p.file) })}\n`);
    // What a start-up with these files would do (issue 9). On stderr, so stdout stays one line per problem.
    const fallback = lastGood(configFile);
    if (fallback.kind === 'snapshot') {
      const m = fallback.manifest;
      process.stderr.write(
        `sinkhole: degraded: serve would start from the last good policy saved ${m.takenAt} (generation ${m.generation}, ${m.files.length} files in ${shortPath(fallback.dir)}) ` +
          `and report it on /readyz and sinkhole_policy_degraded until these files compile\n`,
      );
    } else {
      process.stderr.write(`sinkhole: ${fallback.reason}: serve would exit 2 until these files compile\n`);
    }
    return 1;
  }
}

/** An exception whose mac: or host: is in no lease source nor identity.static can never apply: say so. */
function deviceWarnings(g: Generation, table: IdentityTable): { file: string; line: number; col: number; message: string }[] {
  const out: { file: string; line: number; col: number; message: string }[] = [];
  for (const e of g.exceptions) {
    for (const ref of e.deviceRefs) {
      const sel = parseSelector(ref.client);
      if (typeof sel === 'string' || sel.kind === 'net') continue;
      const known = sel.kind === 'mac' ? table.knowsMac(sel.mac) : table.knowsHost(sel.host);
      if (!known) {
        const where = g.config.identity.leases.length ? 'in any lease file nor in identity.static' : 'in identity.static, and no identity.leases are configured';
        out.push({ file: e.source.file, line: ref.line, col: ref.col, message: `exception ${e.id}: ${ref.client} is not ${where}; it applies to nothing until a device with it appears` });
      }
    }
  }
  return out;
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
  const mac = normalizeMac(v.client.replace(/^mac:/, ''));
  if (!mac && !parseAddress(v.client)) throw new SinkholeError('SH_USAGE', `--client expects an IP address or a MAC address like aa:bb:cc:dd:ee:ff, got "${v.client}"`);
  qtypeNumber(v.type);
  const g = buildGeneration(v.config, 1);
  const qname = name.toLowerCase().replace(/\.$/, '');
  // The device as the lease files say at --at: by MAC, wherever it is; by IP, whoever holds it.
  const { table, history } = loadIdentity(g.config.identity, at);
  const device = mac ? table.byMac(mac) ?? table.relayed(mac) : history.deviceAt(normalizeAddress(v.client), at);
  const address = mac ? (device?.ip && table.lookup(device.ip, at) === device ? device.ip : undefined) : normalizeAddress(v.client);
  const client = address ?? mac!;
  const view = address === undefined ? g.clients.viewOfDevice(device!) : g.clients.viewOf(address, device);
  const d = view.allowed ? decide(g, qname, view, at) : undefined;
  const decision = d ? d.decision : 'refused';
  const source = d?.match ? `${shortPath(d.match.file)}:${d.match.line}` : null;
  const exception = d?.exception
    ? { id: d.exception.id, approvedBy: d.exception.approvedBy, reason: d.exception.reason, expires: d.exception.expires }
    : null;
  if (v.json) {
    const out = {
      decision, name: qname, type: v.type.toUpperCase(), client, at: new Date(at).toISOString(),
      device: device ? { mac: device.mac || null, hostname: device.hostname || null, address: address ?? null } : null,
      list: d?.match?.list ?? null, rule: d?.match?.rule ?? null, source, exception, groups: view.groups,
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    const lines = [`${decision}: ${qname} ${v.type.toUpperCase()} from ${client} at ${new Date(at).toISOString()}`];
    if (device) lines.push(`  device: ${device.mac || '(no MAC)'}${device.hostname ? ` "${device.hostname}"` : ''}${address ? ` at ${address}` : ' (no current lease: address rules not applied)'}`);
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

async function report(v: { config: string; url?: string; json: boolean }, configGiven: boolean): Promise<number> {
  // The server's own address and token come from its config, unless --url names one.
  let url = v.url;
  let token: string | undefined;
  if (url === undefined || configGiven) {
    const config = loadConfig(v.config);
    if (url === undefined) {
      const ep = config.listen.http;
      if (!ep) throw new SinkholeError('SH_USAGE', `${shortPath(config.file)}: listen.http is not set, so there is no report to read; set it or pass --url`);
      url = `http://${ep.host.includes(':') ? `[${ep.host}]` : ep.host === '0.0.0.0' ? '127.0.0.1' : ep.host === '::' ? '[::1]' : ep.host}:${ep.port}`;
    }
    if (config.listen.httpToken) token = readHttpToken(config.listen.httpToken);
  }
  let target: URL;
  try {
    target = new URL('/api/blocked-clients', url);
  } catch {
    throw new SinkholeError('SH_USAGE', `--url expects a URL like http://127.0.0.1:9153, got "${url}"`);
  }
  let body: ReportSnapshot;
  try {
    const res = await fetch(target, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = (await res.json()) as typeof body;
  } catch (e) {
    throw new SinkholeError('SH_USAGE', `cannot fetch ${target.href}: ${(e as Error).message}`);
  }
  if (v.json) {
    process.stdout.write(`${JSON.stringify(body)}\n`);
    return 0;
  }
  const from = body.source === 'postgres' ? ` (PostgreSQL, ${body.instances} instance(s))` : body.source === 'memory' ? '' : ` (${body.source})`;
  const who = body.clients.some((c) => c.rateLimited) ? 'devices that sent blocked queries or went over the rate limit' : 'devices that sent blocked queries';
  process.stdout.write(`${who} in the last ${humanDuration(body.windowSeconds)}${from}: ${body.clients.length}\n`);
  if (!body.clients.length) return 0;
  const header = ['CLIENT', 'MAC', 'HOSTNAME', 'BLOCKED', 'FIRST SEEN', 'LAST SEEN', 'TOP LISTS'];
  const rows = body.clients.map((c) => [c.client, c.mac ?? '-', c.hostname ?? '-', String(c.blocked), c.firstSeen, c.lastSeen, c.topLists.map((l) => `${l.list}(${l.count})`).join(' ')]);
  // Issue 9: how many of each client's queries were over clients.rateLimit; shown once any client was limited.
  if (body.clients.some((c) => c.rateLimited)) {
    header.splice(4, 0, 'RATE LIMITED');
    body.clients.forEach((c, i) => rows[i]!.splice(4, 0, String(c.rateLimited ?? 0)));
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof PolicyError) {
      for (const p of e.problems) process.stderr.write(`sinkhole: ${formatProblem({ ...p, file: shortPath(p.file) })}\n`);
      process.exit(2);
    }
    if (e instanceof SinkholeError) fail(e.message, e.code === 'SH_LISTEN' ? 1 : 2);
    fail(`unexpected error: ${e instanceof Error ? e.message : String(e)}`, 2);
  },
);
