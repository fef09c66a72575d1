#!/usr/bin/env node
// sinkhole serve | validate | check | exceptions | report | health (README "Commands").
// A startup error is one clear line per problem and a non-zero exit, never a stack trace.
import { relative, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { start } from './app.js';
import { checkTarget } from './checkTarget.js';
import { COMMANDS, parseCommandLine } from './cliArgs.js';
import { loadConfig } from './config/config.js';
import { PolicyError, SinkholeError, formatProblem, type Problem } from './errors.js';
import { streamLogger } from './log.js';
import { TYPE } from './dns/constants.js';
import { buildGeneration, covers, decide, hydrate, type Generation } from './policy/generation.js';
import type { RpzHit } from './policy/rpz/evaluate.js';
import { lastGood } from './state/lastGood.js';
import { loadIdentity } from './identity/sources.js';
import { normalizeMac, parseSelector } from './identity/mac.js';
import type { IdentityTable } from './identity/table.js';
import { readHttpToken } from './metrics/token.js';
import { serverUrl } from './metrics/http.js';
import type { ReportPage } from './querylog/reportPages.js';
import { toCef } from './events/cef.js';
import { eventId } from './events/event.js';
import { parseDuration } from './config/duration.js';
import { isActive, isDateOnly, stateOf, type Exception } from './policy/exceptions.js';
import { exceptionWarnings } from './policy/warnings.js';
import { policyHash } from './policy/fingerprint.js';
import { normalizeAddress, parseAddress } from './policy/cidr.js';
import { VERSION } from './version.js';
import { DOH_PATH } from './transport/doh.js';

function shortPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel.startsWith('..') ? file : rel;
}

/** One error line: its code first, then where and what (docs/errors.md). */
function problemLine(p: Problem): string {
  return `${p.code} ${formatProblem({ ...p, file: shortPath(p.file) })}`;
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
  const parsed = parseCommandLine(argv, COMMANDS);
  if (parsed.kind === 'version') {
    process.stdout.write(`sinkhole ${VERSION}\n`);
    return 0;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(`${parsed.text}\n`);
    return 0;
  }
  const { command, values: v, positionals } = parsed;
  const config = v.config as string;
  switch (command) {
    case 'serve':
      return serve(config);
    case 'validate':
      return validate(config);
    case 'check':
      return check(positionals[0]!, { config, client: v.client as string, type: v.type as string, at: v.at as string | undefined, answer: v.answer as string | undefined, json: v.json === true });
    case 'exceptions':
      return listExceptions(config, v.json === true);
    case 'report':
      return report({ config, url: v.url as string | undefined, json: v.json === true, since: v.since as string | undefined, format: v.format as string | undefined }, argv.some((a) => a === '--config' || a === '-c' || a.startsWith('--config=')));
    default:
      return health(config, v.url as string | undefined);
  }
}

async function serve(configFile: string): Promise<number> {
  const log = streamLogger();
  // Last line of defence: every query path catches its own errors, but a rejection that escapes
  // would end the process on Node 20; log it and keep serving.
  process.on('unhandledRejection', (e) => log.error('SH_INTERNAL', 'unhandled rejection', { error: String(e) }));
  const running = await start({ configFile, log });
  const g = running.policy.current;
  const at = (a: { address: string; port: number }): string => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
  for (const d of running.dns) log.info('listening for DNS', { udp: at(d.udp), tcp: at(d.tcp) });
  for (const a of running.dot) log.info('listening for DNS over TLS', { address: at(a) });
  for (const a of running.doh) log.info('listening for DNS over HTTPS', { address: at(a), path: DOH_PATH });
  if (running.http) log.info('listening for HTTP', { address: at(running.http), paths: '/ /metrics /healthz /readyz /api/blocked-clients' });
  log.info('serving', {
    version: VERSION,
    workers: g.config.workers,
    upstreams: g.config.upstreams.servers.map((s) => s.label).join(','),
    enforce: g.config.blocking.enforce.join(','),
    rules: [...g.ruleCounts.values()].reduce((a, b) => a + b, 0),
    exceptions: g.exceptions.length,
    policy: policyHash(g),
  });
  // SIGHUP: reopen the log files (logrotate) and reload the policy.
  process.on('SIGHUP', () => {
    void running.reopenLogs();
    running.reloadTls();
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
        log.info('stopped', { signal });
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
    // Warnings: valid, but probably not what was meant. They do not fail validation, and serve runs.
    const warnings: Problem[] = [...exceptionWarnings(g, Date.now())];
    if (g.config.listen.httpToken) {
      try {
        readHttpToken(g.config.listen.httpToken);
      } catch (e) {
        warnings.push({ code: 'SH_HTTP_TOKEN', file: g.config.file, line: 1, col: 1, message: `warning: ${(e as Error).message}; serve will refuse to start` });
      }
    }
    const { table, problems } = loadIdentity(g.config.identity, Date.now());
    for (const p of problems) warnings.push({ ...p, message: `warning: ${p.message} (serve keeps watching this source)` });
    warnings.push(...deviceWarnings(g, table));
    for (const z of g.rpzZones) {
      if (!z.firstUnsupported) continue;
      const n = z.counts.nsdname + z.counts.nsip;
      warnings.push({
        code: 'SH_RPZ_UNSUPPORTED', file: z.file, ...z.firstUnsupported,
        message: `warning: RPZ "${z.name}": ${z.unsupported} record(s) are counted but not applied (${n} NSDNAME/NSIP trigger(s): a forwarder never sees the NS records of an answer's delegation; the first is a ${z.firstUnsupported.what})`,
      });
    }
    for (const w of warnings) process.stdout.write(`${problemLine(w)}\n`);
    const rules = [...g.ruleCounts].map(([l, n]) => `${l}=${n}`).join(' ') + g.rpzZones.map((z) => ` (rpz ${z.name} serial ${z.serial})`).join('');
    process.stdout.write(
      `${shortPath(g.config.file)}: ok (lists: ${rules || 'none'}; exceptions: ${g.exceptions.length}; lease sources: ${g.config.identity.leases.length}, ` +
        `devices: ${table.size}; policy ${policyHash(g)})${warnings.length ? `, ${warnings.length} warning(s)` : ''}\n`,
    );
    return 0;
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    for (const p of e.problems) process.stdout.write(`${problemLine(p)}\n`);
    // What a start-up with these files would do (issue 9). On stderr, so stdout stays one line per problem.
    const fallback = lastGood(configFile);
    if (fallback.kind === 'snapshot') {
      const m = fallback.manifest;
      process.stderr.write(
        `SH_POLICY_DEGRADED serve would start from the last good policy saved ${m.takenAt} (generation ${m.generation}, ${m.files.length} files in ${shortPath(fallback.dir)}) ` +
          `and report it on /readyz and sinkhole_policy_degraded until these files compile\n`,
      );
    } else if (!existsSync(configFile)) {
      process.stderr.write(`SH_STATE_NONE ${shortPath(resolve(configFile))} does not exist: serve would exit 2\n`);
    } else if (fallback.kind === 'none') {
      process.stderr.write(`SH_STATE_NONE ${fallback.reason}: serve would exit 2 until these files compile\n`);
    } else {
      process.stderr.write(`SH_STATE_INVALID ${fallback.reason}: serve would exit 2 until these files compile\n`);
    }
    return 1;
  }
}

/** An exception whose mac: or host: is in no lease source nor identity.static can never apply: say so. */
function deviceWarnings(g: Generation, table: IdentityTable): Problem[] {
  const out: Problem[] = [];
  for (const e of g.exceptions) {
    for (const ref of e.deviceRefs) {
      const sel = parseSelector(ref.client);
      if (typeof sel === 'string' || sel.kind === 'net') continue;
      const known = sel.kind === 'mac' ? table.knowsMac(sel.mac) : table.knowsHost(sel.host);
      if (!known) {
        const where = g.config.identity.leases.length ? 'in any lease file nor in identity.static' : 'in identity.static, and no identity.leases are configured';
        out.push({
          code: 'SH_EXCEPTION_DEVICE', file: e.source.file, line: ref.line, col: ref.col,
          message: `warning: exception ${e.id}: ${ref.client} is not ${where}; it applies to nothing until a device with it appears`,
        });
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

/**
 * The policy a running sinkhole enforces for this config: its files when they compile, else the
 * last good policy it saved (a running server keeps serving it until they compile). `note` then
 * says so, with the problems of the files on disk, so that an admin can still ask what is in force
 * while an edit is broken (issue 18).
 */
function policyInForce(configFile: string): { g: Generation; note?: string[] } {
  try {
    return { g: buildGeneration(configFile, 1) };
  } catch (e) {
    if (!(e instanceof PolicyError) || !existsSync(configFile)) throw e;
    const fallback = lastGood(configFile);
    if (fallback.kind !== 'snapshot') throw e;
    const m = fallback.manifest;
    const note = [
      `note: the files on disk do not compile; answering from the last good policy (generation ${m.generation}, saved ${m.takenAt} in ${shortPath(fallback.dir)}), which a running sinkhole keeps serving:`,
      ...e.problems.map((p) => `  ${problemLine(p)}`),
    ];
    return { g: hydrate(fallback.data, m.generation), note };
  }
}

/** The note goes first: on stdout before the answer, or on stderr when stdout is JSON. */
function printNote(note: string[] | undefined, json: boolean): void {
  if (note) (json ? process.stderr : process.stdout).write(`${note.join('\n')}\n`);
}

/**
 * The RPZ rule that would apply (docs/rpz.md), after the lists: zones in order, the client's address,
 * the name, then `answer` as an address in the upstream's answer. Exceptions skip a zone, as in serve.
 */
function rpzVerdict(g: Generation, qname: string, client: string | undefined, answer: string | undefined, exceptions: readonly Exception[], at: number): RpzHit | undefined {
  const address = client === undefined ? undefined : parseAddress(client);
  const answers = answer === undefined ? [] : [{ text: answer, address: parseAddress(answer)! }];
  return g.rpz.explain(address, qname, answers).find((h) => h.zone.override !== 'disabled' && !exceptions.some((e) => isActive(e, at) && covers(e, h.zone.name, qname)));
}

function rpzJson(h: RpzHit): Record<string, unknown> {
  const action = h.zone.override === 'none' ? h.rule.action : h.zone.override;
  return {
    zone: h.zone.name, owner: h.rule.owner, trigger: h.rule.trigger, action, prefix: h.rule.prefix ?? null, address: h.address ?? null,
    serial: h.zone.serial, source: `${shortPath(h.zone.file)}:${h.rule.line}`,
  };
}

function check(input: string, v: { config: string; client: string; type: string; at?: string; answer?: string; json: boolean }): number {
  const at = v.at === undefined ? Date.now() : Date.parse(v.at);
  if (Number.isNaN(at)) throw new SinkholeError('SH_USAGE', `--at expects an ISO 8601 time like 2026-12-31T23:59:59Z, got "${v.at}"`);
  const mac = normalizeMac(v.client.replace(/^mac:/, ''));
  if (!mac && !parseAddress(v.client)) throw new SinkholeError('SH_USAGE', `--client expects an IP address or a MAC address like aa:bb:cc:dd:ee:ff, got "${v.client}"`);
  qtypeNumber(v.type);
  if (v.answer !== undefined && !parseAddress(v.answer)) throw new SinkholeError('SH_USAGE', `--answer expects an IP address an answer would hold, like 192.0.2.1, got "${v.answer}"`);
  const target = checkTarget(input);
  const { g, note } = policyInForce(v.config);
  printNote(note, v.json);
  const qname = target.name;
  // The device as the lease files say at --at: by MAC, wherever it is; by IP, whoever holds it.
  const { table, history } = loadIdentity(g.config.identity, at);
  const device = mac ? table.byMac(mac) ?? table.relayed(mac) : history.deviceAt(normalizeAddress(v.client), at);
  const address = mac ? (device?.ip && table.lookup(device.ip, at) === device ? device.ip : undefined) : normalizeAddress(v.client);
  const client = address ?? mac!;
  const view = address === undefined ? g.clients.viewOfDevice(device!) : g.clients.viewOf(address, device);
  const d = view.allowed ? decide(g, qname, view, at) : undefined;
  // RPZ judges what the lists let through (stages/rpz.ts sits below the blocklist).
  const rpz = d && d.decision !== 'blocked' ? rpzVerdict(g, qname, address, v.answer, view.exceptions, at) : undefined;
  const rpzAction = rpz ? (rpz.zone.override === 'none' ? rpz.rule.action : rpz.zone.override) : undefined;
  const rewritten = rpzAction !== undefined && rpzAction !== 'passthru' && !(rpzAction === 'tcp-only');
  const decision = d ? (rewritten ? 'blocked' : d.decision) : 'refused';
  const source = d?.match ? `${shortPath(d.match.file)}:${d.match.line}` : null;
  const exception = d?.exception ? exceptionJson(d.exception, at) : null;
  // Blocked although the client has an exception for this: say which, and why it no longer applies.
  const lapsed = d?.decision === 'blocked' ? view.exceptions.filter((e) => !isActive(e, at) && covers(e, d.match.list, qname)) : [];
  if (v.json) {
    const out = {
      decision, name: qname, input: target.from ?? null, type: v.type.toUpperCase(), client, at: new Date(at).toISOString(),
      device: device ? { mac: device.mac || null, hostname: device.hostname || null, address: address ?? null } : null,
      list: d?.match?.list ?? null, rule: d?.match?.rule ?? null, source, exception, groups: view.groups,
      inactiveExceptions: lapsed.map((e) => exceptionJson(e, at)),
      rpz: rpz ? rpzJson(rpz) : null,
      policy: note ? 'last-good' : 'files',
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    const lines = [`${decision}: ${qname} ${v.type.toUpperCase()} from ${client} at ${new Date(at).toISOString()}`];
    if (target.from) lines.push(`  checked the host ${qname} of "${target.from}": DNS sees only the host`);
    if (device) lines.push(`  device: ${device.mac || '(no MAC)'}${device.hostname ? ` "${device.hostname}"` : ''}${address ? ` at ${address}` : ' (no current lease: address rules not applied)'}`);
    if (decision === 'refused') lines.push(`  client is outside clients.allowFrom: it gets REFUSED for every name`);
    if (d?.match) lines.push(`  list: ${d.match.list}  rule: ${d.match.rule}  source: ${source}`);
    if (d?.exception) {
      lines.push(`  exception: ${d.exception.id}  approved by: ${d.exception.approvedBy}  expires: ${expiryText(d.exception)}`, `  reason: ${d.exception.reason}`);
    }
    for (const e of lapsed) {
      const why = stateOf(e, at) === 'revoked' ? `revoked ${e.revoked} by ${e.revokedBy}` : `expired ${expiryText(e)}`;
      lines.push(`  exception ${e.id} no longer applies: ${why}`);
    }
    if (rpz) {
      const r = rpzJson(rpz);
      const by = rpz.rule.trigger === 'response-ip' ? `an answer holding ${rpz.address} (in ${rpz.rule.prefix})` : rpz.rule.trigger === 'client-ip' ? `the client's address (in ${rpz.rule.prefix})` : `the name (${rpz.rule.trigger})`;
      lines.push(`  rpz: ${r.zone}  owner: ${r.owner}  action: ${r.action}  serial: ${r.serial}  source: ${r.source}`, `  triggered by ${by}`);
      if (rpzAction === 'tcp-only') lines.push('  over UDP the client is told to retry over TCP, where the answer is not rewritten');
    }
    if (decision === 'allowed' && !rpz) lines.push(`  no enforced list matches; forwarded upstream${g.rpz.hasResponseIp && v.answer === undefined ? ' (RPZ response-IP rules apply to the answer: try --answer IP)' : ''}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return decision === 'blocked' || decision === 'refused' ? 1 : 0;
}

/**
 * "2026-12-31, end of day in Pacific/Auckland (2026-12-31T11:00:00.000Z)": a
 * date alone is read in a zone, and which one decides the instant.
 */
function expiryText(e: Exception): string {
  if (!isDateOnly(e.expires)) return e.expires;
  const zone = e.timezoneFrom === 'server' ? `${e.timezone}, the server's zone` : e.timezone;
  return `${e.expires}, end of day in ${zone} (${new Date(e.expiresAt).toISOString()})`;
}

function exceptionJson(e: Exception, now: number): Record<string, unknown> {
  return {
    id: e.id, state: stateOf(e, now), approvedBy: e.approvedBy, reason: e.reason, expires: e.expires, expiresAt: new Date(e.expiresAt).toISOString(),
    timezone: e.timezone, timezoneFrom: e.timezoneFrom, revoked: e.revoked ?? null, revokedBy: e.revokedBy ?? null,
  };
}

function listExceptions(configFile: string, json: boolean): number {
  const { g, note } = policyInForce(configFile);
  printNote(note, json);
  const now = Date.now();
  const rows = g.exceptions.map((e) => ({
    ...exceptionJson(e, now),
    state: stateOf(e, now),
    secondsLeft: Math.max(0, Math.floor((e.endsAt - now) / 1000)),
    clients: e.clients,
    allow: [...e.allowLists, ...e.allowDomains],
    source: `${shortPath(e.source.file)}:${e.source.line}`,
    text: expiryText(e),
    e,
  }));
  if (json) {
    process.stdout.write(`${JSON.stringify(rows.map(({ text: _t, e: _e, ...r }) => r))}\n`);
    return 0;
  }
  if (!rows.length) process.stdout.write('no exceptions on record\n');
  for (const r of rows) {
    const left = r.state === 'active' ? `${humanDuration(r.secondsLeft)} left` : r.state;
    process.stdout.write(`${r.e.id}  ${r.state}  expires ${r.text} (${left})  clients ${r.clients.join(',')}  allow ${r.allow.join(',')}\n`);
    process.stdout.write(`    approved by ${r.e.approvedBy}: ${r.e.reason}\n`);
    if (r.e.revoked !== undefined) process.stdout.write(`    revoked ${r.e.revoked} by ${r.e.revokedBy}\n`);
  }
  return 0;
}

function humanDuration(s: number): string {
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 60)}m ${s % 60}s`;
}

async function report(v: { config: string; url?: string; json: boolean; since?: string; format?: string }, configGiven: boolean): Promise<number> {
  // Options are checked before the server is asked: a typo is a usage error, not a round trip.
  const format = v.format ?? (v.json ? 'json' : 'table');
  if (!REPORT_FORMATS.includes(format as ReportFormat)) throw new SinkholeError('SH_USAGE', `--format expects ${REPORT_FORMATS.join(', ')}, got "${format}"`);
  if (v.json && v.format !== undefined && v.format !== 'json') throw new SinkholeError('SH_USAGE', `--json and --format ${v.format} ask for two formats; give one`);
  const since = v.since === undefined ? undefined : sinceOf(v.since, Date.now());
  // The server's own address and token come from its config, unless --url names one.
  let url = v.url;
  let token: string | undefined;
  if (url === undefined || configGiven) {
    const config = loadConfig(v.config);
    if (url === undefined) {
      const ep = config.listen.http;
      if (!ep) throw new SinkholeError('SH_USAGE', `${shortPath(config.file)}: listen.http is not set, so there is no report to read; set it or pass --url`);
      url = serverUrl(ep);
    }
    if (config.listen.httpToken) token = readHttpToken(config.listen.httpToken);
  }
  let target: URL;
  try {
    target = new URL('/api/blocked-clients', url);
  } catch {
    throw new SinkholeError('SH_USAGE', `--url expects a URL like http://127.0.0.1:9153, got "${url}"`);
  }
  // The server serves the report a page at a time (at most 1,000 clients each): fetch every page.
  const fetchPage = async (offset: number): Promise<ReportPage> => {
    let res: Response;
    try {
      res = await fetch(new URL(`?offset=${offset}&limit=1000`, target), token ? { headers: { authorization: `Bearer ${token}` } } : {});
    } catch (e) {
      throw new SinkholeError('SH_UNREACHABLE', `cannot fetch ${target.href}: ${(e as Error).message}`);
    }
    // Reached, but refused: a wrong or missing token is not an unreachable server.
    if (res.status === 401) {
      throw new SinkholeError('SH_UNAUTHORIZED', `${target.href} answered 401: ${token ? 'the token in listen.httpToken is not the server\'s' : 'the server asks for a token; give --config with its listen.httpToken'}`);
    }
    try {
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return (await res.json()) as ReportPage;
    } catch (e) {
      throw new SinkholeError('SH_UNREACHABLE', `cannot fetch ${target.href}: ${(e as Error).message}`);
    }
  };
  const body = await fetchPage(0);
  while (body.clients.length < body.total) {
    const page = await fetchPage(body.clients.length);
    if (!page.clients.length) break;
    body.clients.push(...page.clients);
  }
  if (since !== undefined) {
    body.clients = body.clients.filter((c) => Date.parse(c.lastSeen) >= since);
    body.total = body.clients.length;
  }
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(body)}\n`);
    return 0;
  }
  if (format === 'csv') {
    process.stdout.write(reportCsv(body.clients));
    return 0;
  }
  if (format === 'cef') {
    process.stdout.write(reportCef(body, target.host));
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

const REPORT_FORMATS = ['table', 'json', 'csv', 'cef'] as const;
type ReportFormat = (typeof REPORT_FORMATS)[number];

/** --since: a duration back from now (2h, 1d) or an ISO 8601 instant. */
function sinceOf(text: string, now: number): number {
  const ms = /^\d/.test(text) && !text.includes('-') ? parseDuration(text) : undefined;
  if (ms !== undefined) return now - ms;
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at)) throw new SinkholeError('SH_USAGE', `--since expects a duration like 2h or 1d, or an ISO time like 2026-11-28T00:00:00Z, got "${text}"`);
  return at;
}

/**
 * RFC 4180: CRLF line ends, a field with a comma, quote or line break quoted, quotes doubled. Hostnames come
 * from DHCP, which a device chooses: a field starting with = + - @ is prefixed with ' so a spreadsheet shows
 * it rather than running it as a formula (OWASP "CSV injection").
 */
export function reportCsv(rows: readonly ReportPage['clients'][number][]): string {
  const field = (s: string): string => {
    const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
    return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
  };
  const lines = [['client', 'mac', 'hostname', 'blocked', 'firstSeen', 'lastSeen', 'topLists', 'rateLimited'].join(',')];
  for (const c of rows) {
    lines.push([c.client, c.mac ?? '', c.hostname ?? '', String(c.blocked), c.firstSeen, c.lastSeen, c.topLists.map((l) => `${l.list}:${l.count}`).join(' '), String(c.rateLimited ?? 0)].map(field).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** One CEF line per device and top list, as the syslog sink writes them (without the syslog header). */
function reportCef(body: ReportPage, instance: string): string {
  const out: string[] = [];
  for (const c of body.clients) {
    const device = c.mac ?? c.client;
    const end = Date.parse(c.lastSeen);
    for (const l of c.topLists) {
      out.push(toCef({
        id: eventId(device, l.list, end), device, mac: c.mac, client: c.client, hostname: c.hostname, list: l.list, count: l.count,
        start: Date.parse(c.firstSeen), end, name: '', policy: body.policy ?? '', at: end, instance,
      }));
    }
  }
  return out.map((l) => `${l}\n`).join('');
}

/**
 * For HEALTHCHECK and service probes: GET /healthz on the config's listen.http
 * (an unspecified address is asked on loopback). Any failure is exit 1, which
 * is what Docker reads as unhealthy.
 */
async function health(configFile: string, url: string | undefined): Promise<number> {
  let target: URL;
  try {
    if (url === undefined) {
      const ep = loadConfig(configFile).listen.http;
      if (!ep) throw new SinkholeError('SH_USAGE', `${shortPath(configFile)} has no listen.http: there is no /healthz to ask (give --url, or set listen.http)`);
      target = new URL('/healthz', serverUrl(ep));
    } else {
      target = new URL('/healthz', url);
    }
  } catch (e) {
    reportError(e);
    return 1;
  }
  let res: Response;
  try {
    res = await fetch(target, { signal: AbortSignal.timeout(3000) });
    await res.arrayBuffer();
  } catch (e) {
    process.stderr.write(`SH_UNREACHABLE cannot fetch ${target.href}: ${(e as Error).message}\n`);
    return 1;
  }
  if (!res.ok) {
    process.stderr.write(`SH_UNHEALTHY ${target.href} answered HTTP ${res.status}\n`);
    return 1;
  }
  process.stdout.write(`healthy: ${target.href} ${res.status}\n`);
  return 0;
}

/** Every error line starts with its SH_* code (docs/errors.md); no stack traces. */
function reportError(e: unknown): number {
  if (e instanceof PolicyError) {
    for (const p of e.problems) process.stderr.write(`${problemLine(p)}\n`);
    return 2;
  }
  if (e instanceof SinkholeError) {
    process.stderr.write(`${e.code} ${e.message}\n`);
    return e.code === 'SH_LISTEN' ? 1 : 2;
  }
  process.stderr.write(`SH_INTERNAL unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
  return 2;
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

main(process.argv.slice(2)).then(
  (code) => exitAfterOutput(code),
  (e: unknown) => exitAfterOutput(reportError(e)),
);
