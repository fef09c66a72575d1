// src/events/ (tracker.ts, cef.ts, syslog.ts, webhook.ts, delivery.ts, spool.ts, arbiter.ts).
// Compliance events (issue 20 §1): when a device is announced (threshold,
// window, cooldown), the CEF body and its escaping, RFC 5424 over real UDP,
// TCP and TLS receivers, the signed webhook, at-least-once delivery through
// the spool (receiver down, restart), and two instances on one PostgreSQL
// announcing once. Clients are c-ares (dns.Resolver) bound to the device's
// address; receivers are node:dgram / net / tls / https servers in this file.
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import https from 'node:https';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadConfig } from '../../src/config/config.js';
import { PolicyError } from '../../src/errors.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST } from '../helpers/sinkhole.js';
import { buildQuery, exchange } from '../helpers/dns.js';
import { makePki } from '../helpers/pki.js';
import { POSTGRES_NEEDS, startPostgres } from '../helpers/postgres.js';
import { skipUnless } from '../helpers/requires.js';
import { EventTracker, type Attempt } from '../../src/events/tracker.js';
import { cefHeader, cefValue, toCef } from '../../src/events/cef.js';
import { octetCounted, rfc5424 } from '../../src/events/syslog.js';
import { signature } from '../../src/events/webhook.js';
import { eventId, type ComplianceEvent } from '../../src/events/event.js';
import { policyHash } from '../../src/policy/fingerprint.js';
import { runCli } from '../helpers/cli.js';

const MAC1 = '02:00:00:00:00:01';
const KEA_HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n';
const leases = (): string => `${KEA_HEADER}127.0.0.31,${MAC1},,86400,${Math.floor(Date.now() / 1000) + 86000},1,0,0,phone,0,,0\n`;
const SECRET = 'webhook-secret-0123456789abcdef';

interface TapLike {
  teardown(fn: () => unknown): void;
  fail(message: string): void;
}

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(t: TapLike, what: string, ok: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) {
      t.fail(`timed out waiting for ${what}`);
      return;
    }
    await wait(20);
  }
}

// ---------------------------------------------------------------- the rules, with an injected clock

t.test('tracker: threshold within the window, then nothing until the cooldown ends, then the new count if still trying', async (t) => {
  const tr = new EventTracker({ threshold: 3, windowMs: 10_000, cooldownMs: 60_000, maxTracked: 2 });
  const at = (s: number, mac = MAC1, list = 'tiktok'): Attempt => ({ at: s * 1000, client: '10.0.0.5', mac, hostname: 'phone', list, name: `n${s}.tiktok.com` });
  t.equal(tr.record(at(0)), undefined);
  t.equal(tr.record(at(1)), undefined);
  t.equal(tr.record(at(20)), undefined, 'three attempts, but not within 10 s');
  t.equal(tr.record(at(21)), undefined);
  const first = tr.record(at(22));
  t.match(first, { device: MAC1, list: 'tiktok', count: 3, start: 20_000, end: 22_000, at: 22_000, until: 82_000, name: 'n22.tiktok.com' }, 'the third within the window announces');
  for (const s of [23, 30, 40, 50]) t.equal(tr.record(at(s)), undefined, `cooldown: nothing at ${s}s`);
  t.same(tr.tick(81_999), [], 'cooldown not over');
  t.equal(tr.record(at(75)), undefined);
  const again = tr.tick(82_000);
  t.equal(again.length, 1, 'still trying when the cooldown ends: one event');
  t.match(again[0], { count: 5, start: 23_000, end: 75_000, at: 82_000, until: 142_000 }, 'with the count of the cooldown');
  t.same(tr.tick(142_000), [], 'not trying in the last window of the second cooldown: it rests');
  t.equal(tr.record(at(150)), undefined, 'resting: counts from zero');
  t.equal(tr.record(at(151)), undefined);
  t.match(tr.record(at(152)), { count: 3, start: 150_000 }, 'and announces again at the threshold');
  // Another list is another pair; past maxTracked a new pair is dropped and counted.
  t.match(tr.record(at(153, MAC1, 'ads')), undefined);
  t.equal(tr.tracked, 2);
  t.equal(tr.record(at(154, '02:00:00:00:00:09')), undefined);
  t.equal(tr.dropped, 1, 'a third pair over maxTracked: 2 is counted, not tracked');
  // A device without a MAC is its address.
  const byAddress = new EventTracker({ threshold: 1, windowMs: 1000, cooldownMs: 1000, maxTracked: 10 });
  t.match(byAddress.record({ ...at(0), mac: '' }), { device: '10.0.0.5', mac: '' });
});

const EVENT: ComplianceEvent = {
  id: eventId(MAC1, 'tiktok', 1_764_000_000_000), device: MAC1, mac: MAC1, client: '10.20.4.31', hostname: 'odd=host\\name\nx', list: 'tiktok',
  count: 20, start: 1_763_999_400_000, end: 1_764_000_000_000, name: 'www.tiktok.com', policy: '0123456789abcdef', at: 1_764_000_000_000, instance: 'ns1:53',
};

t.test('CEF: header and extension escaping, the fields, RFC 5424 and octet counting', async (t) => {
  t.equal(cefHeader('a|b\\c'), 'a\\|b\\\\c', 'header: | and \\ escaped, backslash first');
  t.equal(cefValue('a=b\\c\nd\re|f'), 'a\\=b\\\\c\\nd\\re|f', 'extension: =, \\ and line breaks escaped; | is not');
  const cef = toCef(EVENT);
  t.match(cef, /^CEF:0\|sinkhole\|sinkhole\|[^|]+\|device-trying\|Device keeps asking for a blocked service\|7\|/);
  const ext = cef.split('|').slice(7).join('|');
  for (const f of [
    `smac=${MAC1}`, 'src=10.20.4.31', 'shost=odd\\=host\\\\name\\nx', 'destinationDnsDomain=www.tiktok.com', 'cs1Label=list', 'cs1=tiktok',
    'cnt=20', 'start=1763999400000', 'end=1764000000000', 'act=blocked', 'cs2Label=policy', 'cs2=0123456789abcdef', `externalId=${EVENT.id}`,
  ]) t.ok(ext.split(' ').includes(f), f);
  t.notOk(/[\r\n]/.test(cef), 'one line');
  const line = rfc5424(EVENT, 'ns1');
  t.match(line, /^<84>1 2025-11-24T16:00:00\.000Z ns1 sinkhole \d+ device-trying - CEF:0\|/);
  const framed = octetCounted('é x');
  t.equal(framed.toString('utf8'), '4 é x', 'the length counts octets, not characters');
  t.equal(eventId(MAC1, 'tiktok', 1), eventId(MAC1, 'tiktok', 1), 'the id is stable');
  t.match(eventId(MAC1, 'tiktok', 1), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
});

t.test('config: events is checked at file:line:col like every section', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-events-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'short.key'), 'tooshort\n');
  writeFileSync(join(dir, 'ok.key'), `${SECRET}\n`);
  const file = join(dir, 'sinkhole.yaml');
  writeFileSync(file, [
    'events:',
    '  threshold: 0',
    '  window: soon',
    '  syslog:',
    '    - address: syslog.example:514',
    '    - address: udp://127.0.0.1:514',
    '      ca: ca.pem',
    '    - { address: "tcp://127.0.0.1:514", cert: ok.key }',
    '  webhook:',
    '    - { url: "http://nac.example/hook", secretFile: ok.key }',
    '    - { url: "https://nac.example/hook", secretFile: short.key }',
    '',
  ].join('\n'));
  const e = (() => { try { loadConfig(file); return undefined; } catch (err) { return err as PolicyError; } })();
  t.ok(e instanceof PolicyError);
  const lines = e!.problems.map((p) => `${p.line}:${p.col} ${p.message}`);
  t.match(lines, [
    /^2:14 events\.threshold: expected a whole number from 1 to 10000/,
    /^3:11 events\.window: expected a duration/,
    /^5:16 events\.syslog\[0\]\.address: expected udp:\/\/HOST:PORT, tcp:\/\/HOST:PORT or tls:\/\/HOST:PORT, got "syslog\.example:514"/,
    /^7:11 events\.syslog\[1\]\.ca: cannot read .*ca\.pem: ENOENT/,
    /^8:7 events\.syslog\[2\]: ca, cert and key are for tls:\/\/ only/,
    /^8:7 events\.syslog\[2\]: a client certificate needs both cert and key/,
    /^10:14 events\.webhook\[0\]\.url: expected an https:\/\/ URL/,
    /^11:54 events\.webhook\[1\]\.secretFile: .*short\.key must hold a secret of at least 16 characters/,
  ]);
  writeFileSync(file, 'events: { syslog: [{ address: "tls://siem.example:6514" }], webhook: [{ url: "https://nac.example/h", secretFile: ok.key }] }\n');
  const c = loadConfig(file).events!;
  t.match(c, { threshold: 20, windowMs: 600_000, cooldownMs: 3_600_000, syslog: [{ transport: 'tls', host: 'siem.example', port: 6514, format: 'cef' }] }, 'the defaults, and a SIEM by name');
});

// ---------------------------------------------------------------- real receivers

/** Splits an RFC 6587 octet-counted stream into messages. */
function octetReader(onMessage: (m: string) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const sp = buf.indexOf(0x20);
      if (sp < 0) return;
      const len = Number(buf.subarray(0, sp).toString('ascii'));
      if (buf.length < sp + 1 + len) return;
      onMessage(buf.subarray(sp + 1, sp + 1 + len).toString('utf8'));
      buf = buf.subarray(sp + 1 + len);
    }
  };
}

interface Receiver {
  port: number;
  got: string[];
  close(): Promise<void>;
}

async function udpReceiver(t: TapLike): Promise<Receiver> {
  const s = dgram.createSocket('udp4');
  const got: string[] = [];
  s.on('message', (m) => got.push(m.toString('utf8')));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const r = { port: s.address().port, got, close: () => new Promise<void>((res) => s.close(() => res())) };
  t.teardown(() => r.close().catch(() => {}));
  return r;
}

async function streamReceiver(t: TapLike, kind: 'tcp' | 'tls', pki?: ReturnType<typeof makePki>, port = 0, got: string[] = []): Promise<Receiver> {
  const sockets = new Set<net.Socket>();
  const onConn = (c: net.Socket): void => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
    c.on('error', () => {});
    c.on('data', octetReader((m) => got.push(m)));
  };
  const server = kind === 'tls' ? tls.createServer({ cert: pki!.server.certPem, key: pki!.server.keyPem }, onConn) : net.createServer(onConn);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  let closed = false;
  const r: Receiver = {
    port: (server.address() as net.AddressInfo).port,
    got,
    close: async () => {
      if (closed) return;
      closed = true;
      for (const c of sockets) c.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
  t.teardown(() => r.close());
  return r;
}

interface Hook {
  port: number;
  /** Every request as received, verified or not. */
  requests: { key: string; verified: boolean; body: Record<string, unknown> }[];
  /** Status to answer with (503 = "down"). */
  status: number;
}

async function webhookReceiver(t: TapLike, pki: ReturnType<typeof makePki>): Promise<Hook> {
  const hook: Hook = { port: 0, requests: [], status: 200 };
  const server = https.createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      // What the README tells a receiver to do: HMAC over timestamp "." raw body, compared in constant time.
      const ts = String(req.headers['x-sinkhole-timestamp']);
      const want = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(`${ts}.${raw}`).digest('hex')}`);
      const got = Buffer.from(String(req.headers['x-sinkhole-signature']));
      const verified = got.length === want.length && timingSafeEqual(got, want) && Math.abs(Date.now() / 1000 - Number(ts)) < 300;
      hook.requests.push({ key: String(req.headers['idempotency-key']), verified, body: JSON.parse(raw) as Record<string, unknown> });
      res.writeHead(hook.status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hook.port = (server.address() as net.AddressInfo).port;
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return hook;
}

function resolverFrom(port: number, address: string): Resolver {
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  r.setLocalAddress(address);
  return r;
}

/** `n` queries for a blocked name from one address, through c-ares; each is answered NXDOMAIN. */
async function tryTikTok(port: number, from: string, n: number, name = 'www.tiktok.com'): Promise<void> {
  const r = resolverFrom(port, from);
  for (let i = 0; i < n; i++) await r.resolve4(name).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOTFOUND') throw e; });
}

const cefOf = (syslogLine: string): Map<string, string> => {
  const ext = syslogLine.slice(syslogLine.indexOf('CEF:0|')).split('|').slice(7).join('|');
  // Split on spaces before key=; values here hold no spaces.
  return new Map(ext.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
};

t.test('one event after the threshold at real UDP, TCP and TLS syslog receivers and the signed webhook; an excepted device never counts', async (t) => {
  const pki = makePki();
  t.teardown(() => pki.close());
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const [udp, tcp, tlsR, hook] = await Promise.all([udpReceiver(t), streamReceiver(t, 'tcp'), streamReceiver(t, 'tls', pki), webhookReceiver(t, pki)]);
  const h = await startSinkhole(t, up.port, {
    listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
    blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
    clients: { allowFrom: ['127.0.0.0/16'] },
    identity: { leases: [{ format: 'kea-csv', file: 'leases.csv' }], static: { [MAC1]: 'member-phone' } },
    exceptions: [{ id: 'EX-32', clients: ['127.0.0.32'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
    events: {
      threshold: 3, window: '10m', cooldown: '1h',
      syslog: [{ address: `udp://127.0.0.1:${udp.port}` }, { address: `tcp://127.0.0.1:${tcp.port}` }, { address: `tls://127.0.0.1:${tlsR.port}`, ca: pki.ca, format: 'cef' }],
      webhook: [{ url: `https://127.0.0.1:${hook.port}/hooks/sinkhole`, secretFile: 'webhook.key', ca: pki.ca }],
    },
  }, { 'tiktok.txt': TIKTOK_LIST, 'leases.csv': leases(), 'webhook.key': `${SECRET}\n` });
  const events = h.running.events!;
  await tryTikTok(h.port, '127.0.0.32', 6); // excepted: answered, never counted
  await tryTikTok(h.port, '127.0.0.31', 2);
  h.running.report.drain();
  await events.settled();
  t.equal(events.counts().announced, 0, 'below the threshold, and the excepted device not at all');
  await tryTikTok(h.port, '127.0.0.31', 4, 'm.tiktok.com');
  h.running.report.drain();
  await events.settled();
  await until(t, 'every receiver', () => udp.got.length >= 1 && tcp.got.length >= 1 && tlsR.got.length >= 1 && hook.requests.length >= 1);
  await wait(300);
  t.same([udp.got.length, tcp.got.length, tlsR.got.length, hook.requests.length], [1, 1, 1, 1], 'exactly one event at each receiver');
  const cef = cefOf(tcp.got[0]!);
  t.match(tcp.got[0], /^<84>1 \S+Z \S+ sinkhole \d+ device-trying - CEF:0\|sinkhole\|sinkhole\|/);
  t.same(
    ['smac', 'src', 'shost', 'destinationDnsDomain', 'cs1Label', 'cs1', 'cnt', 'act', 'cs2Label', 'cs2'].map((k) => cef.get(k)),
    [MAC1, '127.0.0.31', 'member-phone', 'm.tiktok.com', 'list', 'tiktok', '3', 'blocked', 'policy', policyHash(h.running.policy.current)],
  );
  t.ok(Number(cef.get('start')) <= Number(cef.get('end')));
  t.equal(udp.got[0], tcp.got[0], 'the same message over UDP');
  t.equal(tlsR.got[0], tcp.got[0], 'and over TLS');
  const req = hook.requests[0]!;
  t.ok(req.verified, 'the HMAC over timestamp.body verifies');
  t.equal(req.key, req.body.id, 'the idempotency key is the event id');
  t.equal(req.key, cef.get('externalId'), 'and CEF carries it as externalId');
  t.match(req.body, { type: 'sinkhole.device.trying', device: MAC1, mac: MAC1, hostname: 'member-phone', client: '127.0.0.31', list: 'tiktok', count: 3, lastName: 'm.tiktok.com', action: 'blocked' });
  t.match(events.counts().sinks.map((s) => [s.sink.split(':')[0], s.sent, s.spooled]), [['syslog', 1, 0], ['syslog', 1, 0], ['syslog', 1, 0], ['webhook', 1, 0]]);
  // The cooldown: more attempts, no more events.
  await tryTikTok(h.port, '127.0.0.31', 5);
  h.running.report.drain();
  await events.settled();
  await wait(200);
  t.equal(tcp.got.length, 1, 'nothing more during the cooldown');
  const metrics = await h.running.registry.metrics();
  t.match(metrics, new RegExp(`sinkhole_event_sink_sent_total\\{sink="syslog:tls://127.0.0.1:${tlsR.port}"\\} 1`));
  t.match(metrics, /sinkhole_events_announced_total 1/);
  // The admin page lists the announcement.
  const page = await (await fetch(`http://127.0.0.1:${h.running.http!.port}/`)).text();
  t.match(page, new RegExp(`<tr data-device="${MAC1}" data-list="tiktok">.*member-phone.*<code>${MAC1}</code>`));
  // One-off exports: report --format json|csv|cef --since.
  const url = `http://127.0.0.1:${h.running.http!.port}`;
  const json = await runCli(['report', '--url', url, '--format', 'json', '--since', '1h']);
  t.equal(json.status, 0, json.stderr);
  const body = JSON.parse(json.stdout) as { clients: { client: string; mac: string | null }[]; policy: string };
  t.same(body.clients.map((c) => c.client).sort(), ['127.0.0.31'], 'only devices that were blocked (the excepted one was not)');
  t.equal(body.policy, policyHash(h.running.policy.current));
  const csv = await runCli(['report', '--url', url, '--format', 'csv']);
  t.match(csv.stdout, /^client,mac,hostname,blocked,firstSeen,lastSeen,topLists,rateLimited\r\n127\.0\.0\.31,02:00:00:00:00:01,member-phone,11,\S+,\S+,tiktok:11,0\r\n$/);
  const cefOut = await runCli(['report', '--url', url, '--format', 'cef']);
  const lines = cefOut.stdout.trimEnd().split('\n');
  t.equal(lines.length, 1, 'one CEF line per device and list');
  t.match(Object.fromEntries(cefOf(lines[0]!)), { smac: MAC1, src: '127.0.0.31', shost: 'member-phone', cs1: 'tiktok', cnt: '11', act: 'blocked', cs2: body.policy });
  const future = await runCli(['report', '--url', url, '--format', 'csv', '--since', '2999-01-01T00:00:00Z']);
  t.equal(future.stdout, 'client,mac,hostname,blocked,firstSeen,lastSeen,topLists,rateLimited\r\n', '--since in the future: no device');
  const bad = await runCli(['report', '--url', url, '--format', 'xml']);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /^SH_USAGE --format expects table, json, csv, cef, got "xml"/);
  const badSince = await runCli(['report', '--url', url, '--since', 'yesterday']);
  t.match(badSince.stderr, /^SH_USAGE --since expects a duration like 2h or 1d, or an ISO time/);
});

t.test('receiver down: events wait in the spool, retried with the same idempotency key, drained when it is back; the spool survives a restart', async (t) => {
  const pki = makePki();
  t.teardown(() => pki.close());
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const stateDir = mkdtempSync(join(tmpdir(), 'sinkhole-events-state-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const got: string[] = [];
  let tcp = await streamReceiver(t, 'tcp', undefined, 0, got);
  const tcpPort = tcp.port;
  const hook = await webhookReceiver(t, pki);
  const config = {
    listen: { dns: ['127.0.0.1:0'] },
    blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
    clients: { allowFrom: ['127.0.0.0/16'] },
    state: { dir: stateDir },
    events: {
      threshold: 2, window: '10m', cooldown: '1h',
      syslog: [{ address: `tcp://127.0.0.1:${tcpPort}` }],
      webhook: [{ url: `https://127.0.0.1:${hook.port}/hooks/sinkhole`, secretFile: 'webhook.key', ca: pki.ca }],
    },
  };
  const files = { 'tiktok.txt': TIKTOK_LIST, 'webhook.key': `${SECRET}\n` };
  const a = await startSinkhole(t, up.port, config, files);
  const ev = a.running.events!;
  await tryTikTok(a.port, '127.0.0.41', 2);
  a.running.report.drain();
  await ev.settled();
  await until(t, 'the first event', () => got.length === 1 && hook.requests.length === 1);
  // Both receivers go down: the webhook answers 503, the syslog port refuses connections.
  await tcp.close();
  hook.status = 503;
  const devices = ['127.0.0.42', '127.0.0.43', '127.0.0.44'];
  for (const d of devices) await tryTikTok(a.port, d, 2);
  a.running.report.drain();
  await ev.settled();
  await until(t, 'failed attempts', () => ev.counts().sinks.every((s) => s.failed >= 1 && s.spooled === 3));
  for (let i = 0; i < 2; i++) await ev.retryNow();
  t.match(ev.counts().sinks.map((s) => [s.sent, s.spooled, s.dropped]), [[1, 3, 0], [1, 3, 0]], 'three events spooled per sink, none lost');
  const retriedKey = hook.requests.at(-1)!.key;
  t.ok(hook.requests.length >= 3, 'the webhook was retried');
  // The webhook comes back while sinkhole runs: drained, in order, no loss.
  hook.status = 200;
  await ev.retryNow();
  await until(t, 'the webhook drained', () => ev.counts().sinks[1]!.spooled === 0);
  const delivered = hook.requests.filter((r, i) => i > 0 && r.verified);
  const ok = delivered.slice(-3);
  t.same(ok.map((r) => r.body.client), devices, 'every spooled event, in order');
  t.equal(ok[0]!.key, retriedKey, 'the retry carries the same idempotency key as the failed attempts');
  t.same(new Set(hook.requests.slice(1).map((r) => r.key)).size, 3, 'three keys over every attempt: retries never mint a new one');
  // Syslog is still down at the stop: its three events are spooled on disk...
  await a.running.close();
  // ...and a new run with the same state.dir, with the receiver back on its port, sends them.
  tcp = await streamReceiver(t, 'tcp', undefined, tcpPort, got);
  const b = await startSinkhole(t, up.port, config, files);
  await until(t, 'the spool from the last run', () => got.length === 4);
  t.same(got.slice(1).map((m) => cefOf(m).get('src')), devices, 'the restart lost nothing, in order');
  t.equal(b.running.events!.counts().sinks[0]!.spooled, 0);
});

t.test('two instances on one PostgreSQL: a device trying through both is announced once per cooldown; 1,000 devices, once each', { skip: skipUnless(POSTGRES_NEEDS) }, async (t) => {
  const pg = await startPostgres(t);
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const got: string[] = [];
  const tcp = await streamReceiver(t, 'tcp', undefined, 0, got);
  const config = {
    listen: { dns: ['127.0.0.1:0'] },
    blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
    clients: { allowFrom: ['127.0.0.0/16'] },
    report: { store: pg.url },
    events: { threshold: 3, window: '10m', cooldown: '1h', syslog: [{ address: `tcp://127.0.0.1:${tcp.port}` }] },
  };
  const files = { 'tiktok.txt': TIKTOK_LIST };
  const a = await startSinkhole(t, up.port, config, files);
  const b = await startSinkhole(t, up.port, config, files);
  const DEVICES = 1000;
  const devices = Array.from({ length: DEVICES }, (_, i) => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`);
  const q = buildQuery('www.tiktok.com', T.A);
  const started = performance.now();
  // Every device tries 3 times through each instance, interleaved: both cross the threshold.
  await Promise.all(devices.map(async (d) => {
    for (let i = 0; i < 3; i++) {
      await exchange('udp', a.port, q, d);
      await exchange('udp', b.port, q, d);
    }
  }));
  const queryMs = performance.now() - started;
  for (const h of [a, b]) h.running.report.drain();
  await Promise.all([a.running.events!.settled(), b.running.events!.settled()]);
  await until(t, `${DEVICES} events`, () => got.length >= DEVICES, 30_000);
  await wait(300);
  const srcs = got.map((m) => cefOf(m).get('src'));
  t.equal(got.length, DEVICES, 'one event per device, not one per instance');
  t.equal(new Set(srcs).size, DEVICES, 'every device announced');
  const [ca, cb] = [a.running.events!.counts(), b.running.events!.counts()];
  t.equal(ca.announced + cb.announced, DEVICES);
  t.equal(ca.suppressed + cb.suppressed, DEVICES, 'the other instance stood down for each');
  t.comment(`${DEVICES * 6} blocked queries from ${DEVICES} devices through two instances in ${queryMs.toFixed(0)} ms; announced ${ca.announced}+${cb.announced}, suppressed ${ca.suppressed}+${cb.suppressed}`);
  const recent = await b.running.events!.recent(2000);
  t.equal(recent.length, DEVICES, 'either instance lists every announcement (from the table)');
});
