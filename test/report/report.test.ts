// The compliance report (src/querylog/report.ts, reportState.ts, reportPostgres.ts, reportPages.ts;
// moving to src/report/) (issue 11): who still asks for TikTok, over HTTP and the CLI, its memory
// bound, rows that name devices, the report surviving a restart (state file), and with
// report.store: postgres:// two instances keeping one report — and a database that goes away never
// slowing DNS.
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST, type Harness } from '../helpers/sinkhole.js';
import { buildQuery, exchange, rcodeOf } from '../helpers/dns.js';
import { silentLogger } from '../../src/log.js';
import { ComplianceReport, type ReportSnapshot } from '../../src/report/report.js';
import { runNode, runCli as run } from '../helpers/cli.js';
import { performance } from 'node:perf_hooks';
import { POSTGRES_NEEDS, startPostgres } from '../helpers/postgres.js';
import { skipUnless } from '../helpers/requires.js';
import { start } from '../../src/app.js';
import { PostgresStore } from '../../src/report/postgres.js';
import pgClient from 'pg';
import { get } from '../helpers/http.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli.js');

const PLAIN_CONFIG = {
  listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
  blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
  clients: { allowFrom: ['127.0.0.0/16'] },
  exceptions: [{ id: 'EX-1', clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
};

t.test('compliance report: who still asks for TikTok, over HTTP and the CLI', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, PLAIN_CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  for (let i = 0; i < 3; i++) await exchange('udp', h.port, buildQuery('www.tiktok.com', T.A), '127.0.0.5');
  await exchange('udp', h.port, buildQuery('x.tiktokv.com', T.A), '127.0.0.6');
  await exchange('udp', h.port, buildQuery('fine.example.test', T.A), '127.0.0.9');
  const api = JSON.parse((await get(h, '/api/blocked-clients')).body) as { windowSeconds: number; clients: { client: string; blocked: number; topLists: { list: string }[] }[] };
  t.equal(api.windowSeconds, 86400, 'default window 24 h');
  t.same(api.clients.map((c) => [c.client, c.blocked]), [['127.0.0.5', 3], ['127.0.0.6', 1]], 'blocked clients, most active first');
  t.equal(api.clients[0]?.topLists[0]?.list, 'tiktok');
  // Asynchronously: the server answering it lives in this process's event loop.
  const cli = await runNode([CLI, 'report', '--url', `http://127.0.0.1:${h.running.http!.port}`]);
  t.equal(cli.status, 0);
  t.match(cli.stdout, /devices that sent blocked queries in the last 1d 0h: 2\nCLIENT\s+MAC\s+HOSTNAME\s+BLOCKED\s+FIRST SEEN\s+LAST SEEN\s+TOP LISTS\n127\.0\.0\.5\s+-\s+-\s+3\s+\S+\s+\S+\s+tiktok\(3\)/);
  const down = await runNode([CLI, 'report', '--url', 'http://127.0.0.1:1']);
  t.equal(down.status, 2, 'unreachable: exit 2');
  t.match(down.stderr, /^SH_UNREACHABLE cannot fetch http:\/\/127\.0\.0\.1:1\/api\/blocked-clients/);
});

t.test('compliance report memory stays bounded with 100k distinct clients', async (t) => {
  let now = 0;
  const r = new ComplianceReport({ windowMs: 86_400_000, maxClients: 1000, store: { kind: 'memory' }, retentionMs: 86_400_000 }, () => now);
  const q = (client: string): never => ({ client, mac: undefined }) as never;
  for (let i = 0; i < 50; i++) r.observe(q('10.0.0.1'), { wire: Buffer.alloc(4), result: 'blocked', list: 'tiktok' });
  for (let i = 0; i < 100_000; i++) {
    now++;
    r.observe(q(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`), { wire: Buffer.alloc(4), result: 'blocked', list: 'tiktok' });
  }
  t.ok(r.size <= 1000, `at most maxClients kept (${r.size})`);
  t.ok((await r.snapshot()).clients.some((c) => c.client === '10.0.0.1' && c.blocked >= 50), 'the most active client survived eviction');
  now += 86_400_001;
  t.equal((await r.snapshot()).clients.length, 0, 'everything older than the window is forgotten');
});

const MAC1 = '02:00:00:00:00:01';
const KEA_HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n';
const leases = (): string => {
  const s = Math.floor(Date.now() / 1000);
  return `${KEA_HEADER}127.0.0.31,${MAC1},,86400,${s + 86000},1,0,0,phone,0,,0\n`;
};

const CONFIG = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
  blocking: { lists: { tiktok: ['tiktok.txt'], ads: ['ads.txt'] }, enforce: ['tiktok', 'ads'] },
  clients: { allowFrom: ['127.0.0.0/16'] },
  identity: { leases: [{ format: 'kea-csv', file: 'leases.csv' }], static: { [MAC1]: 'member-phone' } },
  ...extra,
});
const FILES = (): Record<string, string> => ({ 'tiktok.txt': TIKTOK_LIST, 'ads.txt': 'ads.tiktok.example\n', 'leases.csv': leases() });

async function api(h: Harness | { running: Harness['running'] }, path = '/api/blocked-clients', token?: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${h.running.http!.port}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: res.status, body: await res.text() };
}

const blocked = (port: number, from: string, name = 'www.tiktok.com'): Promise<Buffer> => exchange('udp', port, buildQuery(name, T.A), from);

t.test('report rows name devices: HTTP, report --json, and report reading listen.http from --config', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG(), FILES());
  for (let i = 0; i < 3; i++) await blocked(h.port, '127.0.0.31');
  await blocked(h.port, '127.0.0.31', 'ads.tiktok.example');
  await blocked(h.port, '127.0.0.32');
  const body = JSON.parse((await api(h)).body) as ReportSnapshot;
  t.match(body, { source: 'memory', instances: 1, windowSeconds: 86400 });
  t.same(body.clients.map((c) => [c.client, c.mac, c.hostname, c.blocked]), [
    ['127.0.0.31', MAC1, 'member-phone', 4],
    ['127.0.0.32', null, null, 1],
  ]);
  t.same(body.clients[0]!.topLists, [{ list: 'tiktok', count: 3 }, { list: 'ads', count: 1 }]);
  t.equal(body.hourly.length, 24, 'one bar per hour of the window');
  t.equal(body.hourly.reduce((n, x) => n + x.count, 0), 5, 'every attempt is in the chart');
  // `report` finds the server from its config (not port 9153): a config naming the real port.
  const cli = join(h.dir, 'cli.yaml');
  writeFileSync(cli, `listen: { http: "127.0.0.1:${h.running.http!.port}" }\n`);
  const json = await run(['report', '--config', cli, '--json']);
  t.equal(json.status, 0, json.stderr);
  t.same(JSON.parse(json.stdout).clients[0], body.clients[0], 'report --json has mac and hostname too');
  const table = await run(['report', '--config', cli]);
  t.match(table.stdout, /^devices that sent blocked queries in the last 1d 0h: 2\nCLIENT\s+MAC\s+HOSTNAME\s+BLOCKED\s+FIRST SEEN\s+LAST SEEN\s+TOP LISTS\n127\.0\.0\.31\s+02:00:00:00:00:01\s+member-phone\s+4\s+\S+\s+\S+\s+tiktok\(3\) ads\(1\)\n127\.0\.0\.32\s+-\s+-\s+1/);
  const unknown = await run(['report', '--config', cli, '--client', '10.0.0.1']);
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /^SH_USAGE report has no option "--client"/);
  const typo = await run(['report', '--jsn']);
  t.equal(typo.status, 2);
  t.match(typo.stderr, /report has no option "--jsn"; did you mean "--json"/);
  writeFileSync(cli, 'listen: { dns: ["127.0.0.1:1053"] }\n');
  const noHttp = await run(['report', '--config', cli]);
  t.equal(noHttp.status, 2);
  t.match(noHttp.stderr, /listen\.http is not set, so there is no report to read/);
});

t.test('first seen is the earliest event, also when another thread hands over an older one late', async (t) => {
  const now = Date.UTC(2026, 11, 7, 12);
  const r = new ComplianceReport({ windowMs: 86_400_000, maxClients: 100, store: { kind: 'memory' }, retentionMs: 86_400_000 }, () => now);
  const ev = (at: number) => ({ client: '10.0.0.1', mac: MAC1, hostname: 'phone', list: 'tiktok', limited: false, at });
  r.ingest([ev(now - 60_000)]);
  r.ingest([ev(now - 3_600_000), ev(now - 1000)]);
  const row = (await r.snapshot()).clients[0]!;
  t.equal(row.firstSeen, new Date(now - 3_600_000).toISOString(), 'first seen');
  t.equal(row.lastSeen, new Date(now - 1000).toISOString(), 'last seen');
  t.equal(row.blocked, 3);
});

t.test('the report survives a restart: a state file under state.dir, written atomically; a corrupt one is moved aside', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG({ state: { dir: 'state' } }), FILES());
  for (let i = 0; i < 2; i++) await blocked(h.port, '127.0.0.31');
  await blocked(h.port, '127.0.0.33');
  await h.running.saveState();
  const file = join(h.dir, 'state', 'report.json');
  t.ok(existsSync(file), 'written under state.dir');
  t.equal(JSON.parse(readFileSync(file, 'utf8')).format, 1);
  await blocked(h.port, '127.0.0.31');
  await h.running.close(); // a clean stop writes the last changes
  const again = await start({ configFile: h.configFile, log: silentLogger, watch: false });
  t.teardown(() => again.close());
  const rows = (await again.readReport()).clients;
  t.same(rows.map((c) => [c.client, c.mac, c.blocked]), [['127.0.0.31', MAC1, 3], ['127.0.0.33', null, 1]], 'the same rows after the restart');
  await blocked(again.dns[0]!.udp.port, '127.0.0.31');
  t.equal((await again.readReport()).clients[0]!.blocked, 4, 'and it goes on counting');
  await again.close();
  writeFileSync(file, '{"format": 1, "devices": "nope"');
  const lines: string[] = [];
  const third = await start({ configFile: h.configFile, log: { info() {}, warn() {}, error: (code, m) => lines.push(`${code} ${m}`) }, watch: false });
  t.teardown(() => third.close());
  t.same((await third.readReport()).clients, [], 'a corrupt state file starts an empty report');
  t.ok(existsSync(`${file}.bad`), 'and is kept aside for a look');
  t.match(lines.join('\n'), /SH_REPORT_STORE the report state file is not a sinkhole report; moved aside/);
});

t.test('PostgreSQL: two instances keep one report; with the database stopped under load DNS is still answered, and the events are replayed', { skip: skipUnless(POSTGRES_NEEDS) }, async (t) => {
  const pg = await startPostgres(t);
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const config = CONFIG({ report: { store: pg.url, window: '1d', retention: '7d' } });
  const a = await startSinkhole(t, up.port, config, FILES());
  const b = await startSinkhole(t, up.port, config, FILES());
  for (let i = 0; i < 3; i++) await blocked(a.port, '127.0.0.31');
  await blocked(b.port, '127.0.0.31');
  await blocked(b.port, '127.0.0.32');
  await blocked(b.port, '127.0.0.32', 'ads.tiktok.example');
  // Each instance inserts about once a second; a read flushes its own spool, so flush the other's too.
  b.running.report.drain();
  await b.running.reportStore!.flush(true);
  const shared = JSON.parse((await api(a)).body) as ReportSnapshot;
  t.match(shared, { source: 'postgres', instances: 2 });
  t.same(shared.clients.map((c) => [c.client, c.mac, c.hostname, c.blocked]), [
    ['127.0.0.31', MAC1, 'member-phone', 4],
    ['127.0.0.32', null, null, 2],
  ], 'one row per device across both instances');
  // min(at) over the device's rows: the earliest attempt on either instance.
  t.ok(shared.clients.every((c) => Date.parse(c.firstSeen) <= Date.parse(c.lastSeen) && Date.parse(c.firstSeen) > Date.now() - 60_000), 'first seen, from the events\' timestamps');
  t.same(JSON.parse((await api(b)).body).clients, shared.clients, 'both instances serve the same report');
  t.equal(shared.hourly.reduce((n, x) => n + x.count, 0), 6);

  // Load on both instances; the database is stopped a moment after the load starts.
  const stores = [a.running.reportStore!, b.running.reportStore!];
  let sent = 0;
  let answered = 0;
  let worst = 0;
  const loadFor = async (ms: number): Promise<void> => {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const h = i % 2 ? a : b;
        const t0 = performance.now();
        sent++;
        const r = await blocked(h.port, `127.0.1.${i}`);
        worst = Math.max(worst, performance.now() - t0);
        if (rcodeOf(r) === 3) answered++;
      }));
    }
  };
  const load = loadFor(3000);
  // Long enough for a flush or two to reach the database before it goes away.
  await new Promise((r) => setTimeout(r, 1200));
  const insertedBefore = stores.reduce((n, s) => n + s.inserted, 0);
  await pg.stop();
  await load;
  t.equal(answered, sent, `all ${sent} queries answered while the database was down`);
  t.ok(worst < 1000, `no query waited on the database (slowest ${worst.toFixed(1)} ms)`);
  a.running.report.drain();
  b.running.report.drain();
  await Promise.all(stores.map((s) => s.flush(true)));
  t.ok(stores.every((s) => !s.up), 'both stores know the database is down');
  const spooled = stores.reduce((n, s) => n + s.spooled, 0);
  t.ok(spooled > 0, `${spooled} events spooled`);
  const fallback = JSON.parse((await api(a)).body) as ReportSnapshot;
  t.equal(fallback.source, 'memory (postgres unreachable)', 'the report still answers, from this instance');
  t.match((await api(a, '/metrics')).body, /sinkhole_report_store_up 0/);

  const restarted = performance.now();
  await pg.start();
  for (let i = 0; i < 100 && stores.some((s) => s.spooled > 0 || !s.up); i++) {
    await Promise.all(stores.map((s) => s.flush(true)));
    if (stores.some((s) => s.spooled > 0)) await new Promise((r) => setTimeout(r, 100));
  }
  const replayMs = performance.now() - restarted;
  t.equal(stores.reduce((n, s) => n + s.spooled, 0), 0, 'spools replayed');
  const after = JSON.parse((await api(b)).body) as ReportSnapshot;
  t.equal(after.source, 'postgres');
  t.equal(after.clients.reduce((n, c) => n + c.blocked, 0), 6 + sent, 'every blocked query is in the shared report, none lost');
  t.equal(stores.reduce((n, s) => n + s.dropped, 0), 0);
  // Retention: events older than report.retention are deleted (checked every 10 minutes).
  let now = Date.now();
  const store = new PostgresStore({ url: pg.url, instance: 'retention-test', windowMs: 3_600_000, retentionMs: 3_600_000, now: () => now }, silentLogger);
  t.teardown(() => store.close());
  store.push({ at: now - 2 * 3_600_000, client: '127.0.9.1', mac: '', hostname: '', list: 'tiktok' });
  store.push({ at: now, client: '127.0.9.2', mac: '', hostname: '', list: 'tiktok' });
  await store.flush(true);
  const count = async (): Promise<number> => {
    const c = new pgClient.Client(pg.url);
    await c.connect();
    const r = await c.query<{ n: string }>("SELECT count(*) AS n FROM sinkhole_blocked WHERE client LIKE '127.0.9.%'");
    await c.end();
    return Number(r.rows[0]!.n);
  };
  t.equal(await count(), 1, 'the first round pruned the event older than the retention window');
  store.push({ at: now - 2 * 3_600_000, client: '127.0.9.3', mac: '', hostname: '', list: 'tiktok' });
  await store.flush(true);
  t.equal(await count(), 2, 'no second prune within 10 minutes');
  now += 11 * 60_000;
  await store.flush(true);
  t.equal(await count(), 1, 'pruned again 10 minutes later');
  // A forced flush (a read, a stop) writes what is spooled when it is called, also while a round is
  // past its inserts: here one held at its prune by a lock. It used to return that round, which did not.
  const locker = new pgClient.Client(pg.url);
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE sinkhole_blocked IN ACCESS EXCLUSIVE MODE');
  now += 11 * 60_000;
  const held = store.flush(true);
  const pruneWaits = async (): Promise<boolean> =>
    (await locker.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM sinkhole_blocked%'")).rowCount! > 0;
  for (const deadline = Date.now() + 5000; !(await pruneWaits()); ) {
    if (Date.now() > deadline) throw new Error('the prune never waited for the lock');
  }
  store.push({ at: now, client: '127.0.9.4', mac: '', hostname: '', list: 'tiktok' });
  const forced = store.flush(true);
  await locker.query('COMMIT');
  await locker.end();
  await Promise.all([held, forced]);
  t.equal(await count(), 2, 'an event spooled while a round was pruning is written by the flush forced then');
  t.comment(`PostgreSQL stopped under load: ${sent} blocked queries over 3 s on two instances, all answered (slowest ${worst.toFixed(1)} ms); ${insertedBefore} events inserted before the stop, ${spooled} spooled during the outage; replayed ${replayMs.toFixed(0)} ms after restart; report total ${6 + sent}`);
});
