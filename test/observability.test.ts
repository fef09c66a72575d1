// Metrics, health/readiness, the query log and the compliance report.
import t from 'tap';
import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST, type Harness } from './helpers/sinkhole.js';
import { buildQuery, exchange, rcodeOf, udpExchange } from './helpers/dns.js';
import { streamLogger } from '../src/log.js';
import { ComplianceReport } from '../src/report/report.js';
import { anonymize } from '../src/querylog/anonymize.js';
import { policyHash } from '../src/policy/fingerprint.js';
import { runNode as run } from './helpers/cli.js';
import { LoopDelay } from '../src/metrics/loopDelay.js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { metricsInSlices } from '../src/metrics/registry.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'cli.js');

const CONFIG = {
  listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
  blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
  clients: { allowFrom: ['127.0.0.0/16'] },
  exceptions: [{ id: 'EX-1', clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
};

async function get(h: Harness, path: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`http://127.0.0.1:${h.running.http!.port}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

/** Parses Prometheus text into `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

t.test('metrics: names, labels and values that move with the queries', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('down.example.test', { rcode: 2 });
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  const m0 = samples((await get(h, '/metrics')).body);
  t.equal(m0.get('sinkhole_queries_total{proto="udp",qtype="A"}'), 0, 'series exist before any query');
  t.equal(m0.get('sinkhole_blocked_total{list="tiktok"}'), 0);

  await exchange('udp', h.port, buildQuery('www.tiktok.com', T.A));
  await exchange('tcp', h.port, buildQuery('www.tiktok.com', T.HTTPS));
  await exchange('udp', h.port, buildQuery('a.example.test', T.AAAA));
  await exchange('udp', h.port, buildQuery('a.example.test', T.AAAA));
  await exchange('udp', h.port, buildQuery('x.tiktok.com', T.A), '127.0.0.7');
  await exchange('udp', h.port, buildQuery('down.example.test', 99));
  await exchange('udp', h.port, buildQuery('a.example.test', T.A), '127.1.0.1');
  await h.running.reloader.reload('list');

  const res = await get(h, '/metrics');
  t.equal(res.status, 200);
  t.match(res.type, /^text\/plain; version=0\.0\.4/);
  const m = samples(res.body);
  const expect: Record<string, number> = {
    'sinkhole_queries_total{proto="udp",qtype="A"}': 3,
    'sinkhole_queries_total{proto="tcp",qtype="HTTPS"}': 1,
    'sinkhole_queries_total{proto="udp",qtype="AAAA"}': 2,
    'sinkhole_queries_total{proto="udp",qtype="other"}': 1,
    'sinkhole_responses_total{result="blocked",rcode="NXDOMAIN"}': 2,
    'sinkhole_responses_total{result="forwarded",rcode="NOERROR"}': 1,
    'sinkhole_responses_total{result="cached",rcode="NOERROR"}': 1,
    'sinkhole_responses_total{result="excepted",rcode="NOERROR"}': 1,
    'sinkhole_responses_total{result="servfail",rcode="SERVFAIL"}': 1,
    'sinkhole_responses_total{result="refused",rcode="REFUSED"}': 1,
    'sinkhole_blocked_total{list="tiktok"}': 2,
    'sinkhole_exception_queries_total{exception="EX-1"}': 1,
    sinkhole_cache_hits_total: 1,
    sinkhole_cache_misses_total: 3,
    sinkhole_cache_entries: 2,
    [`sinkhole_upstream_requests_total{upstream="127.0.0.1:${up.port}",outcome="ok"}`]: 2,
    [`sinkhole_upstream_requests_total{upstream="127.0.0.1:${up.port}",outcome="error"}`]: 1,
    'sinkhole_list_rules{list="tiktok"}': 4,
    'sinkhole_reloads_total{kind="list",result="success"}': 1,
    'sinkhole_reloads_total{kind="config",result="failure"}': 0,
    sinkhole_policy_generation: 2,
    'sinkhole_exceptions{state="active"}': 1,
    'sinkhole_exceptions{state="expired"}': 0,
    'sinkhole_exceptions{state="revoked"}': 0,
    [`sinkhole_policy_info{hash="${policyHash(h.running.policy.current)}"}`]: 1,
    'sinkhole_exception_expiry_timestamp_seconds{exception="EX-1"}': new Date(2999, 0, 2).getTime() / 1000,
    'sinkhole_request_duration_seconds_count{result="blocked"}': 2,
    'sinkhole_request_duration_seconds_bucket{result="blocked",le="+Inf"}': 2,
    sinkhole_internal_errors_total: 0,
  };
  for (const [k, v] of Object.entries(expect)) t.equal(m.get(k), v, k);
  t.ok(m.has('sinkhole_request_duration_seconds_bucket{result="cached",le="0.0001"}'), 'buckets start at 100 µs');
  t.ok(m.has('sinkhole_request_duration_seconds_bucket{result="servfail",le="5"}'), 'and go past the upstream timeout');
  t.ok([...m.keys()].some((k) => k.startsWith('sinkhole_build_info{version="')), 'build info');
  t.ok(m.has('process_resident_memory_bytes'), "Node's default process metrics");

  // Labels are bounded: no client address or query name ever appears.
  const names = [...m.keys()].filter((k) => k.startsWith('sinkhole_'));
  t.notOk(names.some((k) => /127\.0\.0\.7|127\.1\.0\.1|example\.test|tiktok\.com/.test(k)), 'no client address or qname in any label');
  t.ok(names.every((k) => /^sinkhole_[a-z_]+(\{.*\})?$/.test(k)), 'every name is snake_case under sinkhole_');
  for (const k of names.filter((n) => n.includes('_total'))) t.match(k, /^sinkhole_[a-z_]+_total(\{|$)/, `counter ${k.split('{')[0]} ends in _total`);
});

t.test('every metric is in the docs/observability.md Metrics section, and it names no metric that does not exist', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  const registered = new Set(h.running.registry.getMetricsAsArray().map((m) => m.name).filter((n) => n.startsWith('sinkhole_')));
  const readme = readFileSync(join(ROOT, 'docs', 'observability.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Metrics'), readme.indexOf('\n## ', readme.indexOf('## Metrics') + 5));
  const documented = new Set([...section.matchAll(/`(sinkhole_[a-z_]+)`/g)].map((x) => x[1]!));
  t.same([...registered].filter((n) => !documented.has(n)), [], 'registered but undocumented');
  t.same([...documented].filter((n) => !registered.has(n)), [], 'documented but not registered');
});

t.test('sinkhole_policy_info: one hash for one policy, wherever its files are; another for any change that decides answers', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const a = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  const hashOf = async (h: Harness): Promise<string> => /sinkhole_policy_info\{hash="([0-9a-f]{16})"\} 1/.exec((await get(h, '/metrics')).body)![1]!;
  const base = await hashOf(a);
  // A second instance from the same repository: same files, another folder, another port, a comment and the upstreams differ.
  const b = await startSinkhole(t, up.port, { ...CONFIG, upstreams: { servers: ['127.0.0.1:9'], timeout: '2s' } }, { 'tiktok.txt': `# checked out elsewhere\n${TIKTOK_LIST}` });
  t.equal(await hashOf(b), base, 'the same policy: the same hash');
  const differs: [string, Record<string, unknown>, string][] = [
    ['one more rule', CONFIG, `${TIKTOK_LIST}newapp.example\n`],
    ['another response', { ...CONFIG, blocking: { ...CONFIG.blocking, response: 'refused' } }, TIKTOK_LIST],
    ['another allowFrom', { ...CONFIG, clients: { allowFrom: ['127.0.0.0/8'] } }, TIKTOK_LIST],
    ['an exception renewed', { ...CONFIG, exceptions: [{ ...CONFIG.exceptions[0]!, expires: '2999-01-02' }] }, TIKTOK_LIST],
  ];
  for (const [what, config, list] of differs) {
    const c = await startSinkhole(t, up.port, config, { 'tiktok.txt': list });
    t.not(await hashOf(c), base, what);
  }
  // A reload to another policy moves the series.
  a.write('tiktok.txt', `${TIKTOK_LIST}newapp.example\n`);
  t.same(await a.running.reloader.reload('list'), []);
  const after = (await get(a, '/metrics')).body.match(/^sinkhole_policy_info\{.*$/gm);
  t.equal(after?.length, 1, 'one series at a time');
  t.notMatch(after![0], base, 'the new hash');
  // validate prints the same hash, so a checkout can be compared with what runs.
  const v = await run([CLI, 'validate', '--config', b.configFile]);
  t.match(v.stdout, new RegExp(`policy ${base}\\)`), 'validate prints it');
});

t.test('the dashboard and the alert rules: instance and policy panels, and only metrics that exist', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  const registered = new Set(h.running.registry.getMetricsAsArray().map((m) => m.name));
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'dashboards', 'sinkhole.json'), 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  const exprOf = (title: string): string => dashboard.panels.find((p) => p.title === title)?.targets?.map((x) => x.expr).join(' ') ?? '';
  t.match(exprOf('Instances down'), /\bup\{job=~"\$job".*== 0/);
  t.match(exprOf('Policies in force'), /count\(count by \(hash\) \(sinkhole_policy_info/);
  t.match(exprOf('Policy hash by instance'), /sinkhole_policy_info/);
  const alerts = readFileSync(join(ROOT, 'dashboards', 'alerts.yml'), 'utf8');
  for (const name of ['SinkholeInstanceDown', 'SinkholeReloadFailing', 'SinkholePolicyDegraded', 'SinkholeExceptionExpiringSoon', 'SinkholeUpstreamFailures']) {
    t.match(alerts, `- alert: ${name}`, name);
  }
  // sinkhole_policy_degraded comes with the availability work (issue 9); every other name must exist now.
  const used = new Set([...JSON.stringify(dashboard).matchAll(/\b(sinkhole_[a-z_]+?)(_bucket|_sum|_count)?\b/g), ...alerts.matchAll(/\b(sinkhole_[a-z_]+?)(_bucket|_sum|_count)?\b/g)].map((m) => m[1]!));
  t.same([...used].filter((n) => !registered.has(n) && n !== 'sinkhole_policy_degraded'), [], 'no panel or alert reads a metric sinkhole does not export');
});

t.test('sinkhole health asks /healthz at listen.http', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  const port = h.running.http!.port;
  const cfg = (http: string | undefined): string => {
    const file = join(h.dir, `health-${http ?? 'none'}.yaml`.replace(/[:/]/g, '_'));
    writeFileSync(file, http ? `listen:\n  http: "${http}"\n` : 'listen:\n  dns: ["127.0.0.1:53"]\n');
    return file;
  };
  const ok = await run([CLI, 'health', '--config', cfg(`127.0.0.1:${port}`)]);
  t.equal(ok.status, 0, 'healthy: exit 0');
  t.match(ok.stdout, `healthy: http://127.0.0.1:${port}/healthz 200`);
  t.equal((await run([CLI, 'health', '--config', cfg(`0.0.0.0:${port}`)])).status, 0, 'an unspecified address is asked on loopback');
  const none = await run([CLI, 'health', '--config', cfg(undefined)]);
  t.equal(none.status, 1, 'no listen.http: unhealthy (nothing to ask)');
  t.match(none.stderr, /^SH_USAGE \S+ has no listen\.http/);
  await h.running.close();
  const down = await run([CLI, 'health', '--url', `http://127.0.0.1:${port}`]);
  t.equal(down.status, 1, 'unreachable: exit 1, as Docker reads unhealthy');
  t.match(down.stderr, /^SH_UNREACHABLE cannot fetch http:\/\/127\.0\.0\.1:\d+\/healthz/);
});

t.test('health and readiness', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('slow.example.test', { delayMs: 300 });
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  t.match(await get(h, '/healthz'), { status: 200 });
  t.match(await get(h, '/readyz'), { status: 200 });
  t.match(await get(h, '/nope'), { status: 404 });
  const post = await fetch(`http://127.0.0.1:${h.running.http!.port}/metrics`, { method: 'POST' });
  t.equal(post.status, 405);
  const slow = exchange('udp', h.port, buildQuery('slow.example.test', T.A));
  await new Promise<void>((r) => {
    const wait = (): void => void (up.count('slow.example.test') ? r() : setTimeout(wait, 5));
    wait();
  });
  const closing = h.running.close();
  t.match(await get(h, '/readyz'), { status: 503 }, 'not ready while draining');
  t.match(await get(h, '/healthz'), { status: 200 }, 'still alive while draining');
  await slow;
  await closing;
});

t.test('query log: blocked by default, all when asked, addresses truncated when asked', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  for (const [mode, anonymizeClients, expected] of [
    ['blocked', false, ['www.tiktok.com|blocked|127.0.0.1']],
    ['all', true, ['www.tiktok.com|blocked|127.0.0.0', 'ok.example.test|forwarded|127.0.0.0']],
    ['none', false, []],
  ] as const) {
    const h = await startSinkhole(t, up.port, { ...CONFIG, log: { queries: mode, file: 'queries.jsonl', anonymizeClients } }, { 'tiktok.txt': TIKTOK_LIST });
    await exchange('udp', h.port, buildQuery('www.tiktok.com', T.A));
    await exchange('udp', h.port, buildQuery('ok.example.test', T.A));
    await h.running.close();
    let lines: string[] = [];
    try {
      lines = readFileSync(join(h.dir, 'queries.jsonl'), 'utf8').trim().split('\n').filter(Boolean);
    } catch {
      lines = [];
    }
    const got = lines.map((l) => JSON.parse(l) as { name: string; result: string; client: string }).map((r) => `${r.name}|${r.result}|${r.client}`);
    t.same(got, expected, `log.queries: ${mode}, anonymizeClients: ${anonymizeClients}`);
  }
  // Lines are built by hand (querylog/jsonLine.ts): a name with quotes, backslashes, control and
  // non-ASCII bytes must still come out as JSON that decodes to the same name.
  const h = await startSinkhole(t, up.port, { ...CONFIG, log: { queries: 'all', file: 'odd.jsonl' } }, { 'tiktok.txt': TIKTOK_LIST });
  const odd = 'a"b\\c\x01\xe9.example.test';
  await exchange('udp', h.port, buildQuery(odd, T.A));
  await h.running.close();
  const line = JSON.parse(readFileSync(join(h.dir, 'odd.jsonl'), 'utf8').trim()) as Record<string, unknown>;
  t.equal(line.name, odd.replace(/\\/g, '\\\\'), 'an odd name survives as JSON (with its backslash escaped, RFC 4343)');
  t.same(Object.keys(line), ['time', 'client', 'proto', 'name', 'type', 'result', 'rcode'], 'the fields, in order');
  t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'time is ISO 8601 UTC');
  t.equal(anonymize('10.20.1.17'), '10.20.1.0', 'IPv4 → /24');
  t.equal(anonymize('2001:db8:1234:5678:9abc::1'), '2001:db8:1234:5600::', 'IPv6 → /56');
});

t.test('compliance report: who still asks for TikTok, over HTTP and the CLI', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  for (let i = 0; i < 3; i++) await exchange('udp', h.port, buildQuery('www.tiktok.com', T.A), '127.0.0.5');
  await exchange('udp', h.port, buildQuery('x.tiktokv.com', T.A), '127.0.0.6');
  await exchange('udp', h.port, buildQuery('fine.example.test', T.A), '127.0.0.9');
  const api = JSON.parse((await get(h, '/api/blocked-clients')).body) as { windowSeconds: number; clients: { client: string; blocked: number; topLists: { list: string }[] }[] };
  t.equal(api.windowSeconds, 86400, 'default window 24 h');
  t.same(api.clients.map((c) => [c.client, c.blocked]), [['127.0.0.5', 3], ['127.0.0.6', 1]], 'blocked clients, most active first');
  t.equal(api.clients[0]?.topLists[0]?.list, 'tiktok');
  // Asynchronously: the server answering it lives in this process's event loop.
  const cli = await run([CLI, 'report', '--url', `http://127.0.0.1:${h.running.http!.port}`]);
  t.equal(cli.status, 0);
  t.match(cli.stdout, /devices that sent blocked queries in the last 1d 0h: 2\nCLIENT\s+MAC\s+HOSTNAME\s+BLOCKED\s+FIRST SEEN\s+LAST SEEN\s+TOP LISTS\n127\.0\.0\.5\s+-\s+-\s+3\s+\S+\s+\S+\s+tiktok\(3\)/);
  const down = await run([CLI, 'report', '--url', 'http://127.0.0.1:1']);
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

t.test('HTTP work is bounded: one /metrics render per second, a paged report, a request budget', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST }, { httpCacheMs: 1000 });
  const registry = h.running.registry;
  const render = registry.getMetricsAsArray.bind(registry);
  let renders = 0;
  registry.getMetricsAsArray = () => {
    renders++; // once per render of the whole text
    return render();
  };
  const scrapes = await Promise.all(Array.from({ length: 15 }, () => get(h, '/metrics')));
  t.ok(scrapes.every((s) => s.status === 200 && s.body.includes('sinkhole_queries_total')), '15 concurrent scrapes all answered');
  t.equal(renders, 1, 'with one render between them');

  // 2,500 clients in the report: a page is 100 by default, 1,000 at most.
  const report = h.running.report;
  for (let i = 0; i < 2500; i++) {
    report.observe({ client: `10.0.${i >> 8}.${i & 255}` } as never, { wire: Buffer.alloc(4), result: 'blocked', list: 'tiktok' });
  }
  for (let i = 0; i < 5; i++) report.observe({ client: '10.9.9.9' } as never, { wire: Buffer.alloc(4), result: 'blocked', list: 'tiktok' });
  const first = JSON.parse((await get(h, '/api/blocked-clients')).body) as { total: number; offset: number; limit: number; clients: { client: string }[] };
  t.match(first, { total: 2501, offset: 0, limit: 100 }, 'the default page');
  t.equal(first.clients.length, 100);
  t.equal(first.clients[0]?.client, '10.9.9.9', 'most active first');
  const last = JSON.parse((await get(h, '/api/blocked-clients?offset=2000&limit=1000')).body) as { clients: unknown[] };
  t.equal(last.clients.length, 501, 'the last page');
  const tooBig = await get(h, '/api/blocked-clients?limit=5000');
  t.equal(tooBig.status, 400, 'limit past 1000: 400');
  t.match(tooBig.body, /limit must be a whole number from 1 to 1000, got "5000"/);
  const cli = await run([CLI, 'report', '--url', `http://127.0.0.1:${h.running.http!.port}`, '--json']);
  t.equal((JSON.parse(cli.stdout) as { clients: unknown[] }).clients.length, 2501, 'sinkhole report fetches every page');

  // Past 20 requests a second from one address, a flood gets a cheap 503, a second later. (16 sockets:
  // the connections one address may hold; past them its newest would replace its own idle ones.)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  t.teardown(() => agent.destroy());
  const status = (path: string): Promise<number> =>
    new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: h.running.http!.port, path, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', () => resolve(0));
    });
  const started = Date.now();
  const flood = await Promise.all(Array.from({ length: 60 }, () => status('/healthz')));
  const count = (code: number): number => flood.filter((c) => c === code).length;
  t.ok(count(503) >= 10, `${count(503)} of 60 requests in a burst got 503`);
  t.equal(count(200) + count(503), 60, `the others were served (${count(200)})`);
  t.ok(Date.now() - started >= 900, 'the 503s came a second late: a looping client is slowed down');
  // More connections than one address may hold: each past 16 replaces its own oldest idle one, at accept. They are opened one after another:
  // a burst would overflow the short accept queue (32), and the kernel would park the rest in SYN and
  // SYN-ACK retries for seconds, which is the point of a short queue but not what this test is about.
  agent.destroy();
  const socks: net.Socket[] = [];
  t.teardown(() => socks.forEach((s) => s.destroy()));
  let closed = 0;
  let extraClosed: () => void = () => {};
  const enoughClosed = new Promise<void>((resolve) => (extraClosed = resolve));
  for (let i = 0; i < 80; i++) {
    socks.push(await new Promise<net.Socket>((resolve) => {
      const s = net.connect(h.running.http!.port, '127.0.0.1', () => resolve(s));
      s.on('error', () => {});
      s.on('close', () => ++closed === 64 && extraClosed());
    }));
  }
  // The 64 past the 16 are closed by the server.
  await enoughClosed;
  const open = socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
  t.ok(open <= 16, `at most 16 connections kept from one address (${open} of 80 still open)`);
});

t.test('HTTP connection slots: one address flooding them cannot keep /healthz from another address', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  const port = h.running.http!.port;
  const socks: net.Socket[] = [];
  t.teardown(() => socks.forEach((s) => s.destroy()));
  /** One connection from `from` that writes `text` and keeps reading; resolves when connected. */
  const open = (from: string, text: string): Promise<net.Socket> =>
    new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: from }, () => {
        s.write(text);
        resolve(s);
      });
      s.on('error', () => {});
      s.resume();
      socks.push(s);
    });
  const healthz = (from: string): Promise<{ status: number; ms: number }> =>
    new Promise((resolve) => {
      const started = Date.now();
      const req = http.get({ host: '127.0.0.1', port, path: '/healthz', localAddress: from, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: Date.now() - started }));
      });
      req.on('error', (e) => resolve({ status: 0, ms: Date.now() - started, ...{ error: e.message } }));
    });
  // Opened one after another: a burst would overflow the short accept queue (32) into SYN retries.
  const flood = async (from: string, text: string, n: number): Promise<void> => {
    for (let i = 0; i < n; i++) await open(from, text);
  };
  // Keep-alive: each asks once, then holds its connection (HTTP/1.1 keeps it open).
  await flood('127.0.0.5', 'GET /healthz HTTP/1.1\r\nHost: sinkhole\r\n\r\n', 200);
  const kept = await healthz('127.0.0.2');
  t.comment(`/healthz during a keep-alive flood: ${kept.status} in ${kept.ms} ms`);
  t.equal(kept.status, 200, '/healthz from another address while one holds 200 keep-alive connections');
  t.ok(kept.ms < 1000, 'within a second');
  // Slowloris: headers begun, never finished.
  await flood('127.0.0.6', 'GET /healthz HTTP/1.1\r\nHost: sinkhole\r\nX-A: ', 200);
  const loris = await healthz('127.0.0.3');
  t.comment(`/healthz during a slowloris flood: ${loris.status} in ${loris.ms} ms`);
  t.equal(loris.status, 200, '/healthz from another address while one holds 200 unfinished headers');
  t.ok(loris.ms < 1000, 'within a second');
  // Four addresses at their cap of 16 fill the table: a newcomer takes an idle slot, one waiting for headers first.
  for (let a = 0; a < 4; a++) await flood(`127.0.1.${a + 1}`, a % 2 ? 'GET /healthz HTTP/1.1\r\nHost: s\r\n\r\n' : 'GET /h', 16);
  const full = await healthz('127.0.0.4');
  t.equal(full.status, 200, `/healthz from a newcomer while 4 addresses hold all 64 slots (${full.ms} ms)`);
  const m = samples(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
  t.ok(m.get('sinkhole_tcp_evictions_total{proto="http"}')! > 0, 'evictions counted under proto="http"');
});

t.test('log targets that fail recover by themselves; lines lost are counted; a failing audit trail is loud', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const lines: string[] = [];
  const log = streamLogger((l) => lines.push(l));
  const config = { ...CONFIG, log: { queries: 'all', file: 'q.jsonl', audit: 'logs/audit.jsonl' } };
  const h = await startSinkhole(t, up.port, config, { 'tiktok.txt': TIKTOK_LIST }, { log });
  const metric = async (name: string): Promise<number> => samples((await get(h, '/metrics')).body).get(name) ?? NaN;
  const until = async (what: string, ok: () => Promise<boolean> | boolean, query = true): Promise<void> => {
    const deadline = Date.now() + 8000;
    for (let i = 0; !(await ok()); i++) {
      if (Date.now() > deadline) throw new Error(`never: ${what}`);
      if (query) await exchange('udp', h.port, buildQuery(`q${i}.example.test`, T.A));
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const qlog = join(h.dir, 'q.jsonl');
  const linesIn = (f: string): number => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0);
  /** Audit lines of exceptions used (the trail also records the exception records themselves). */
  const usesIn = (f: string): number => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter((l) => l.includes('"event":"use"')).length : 0);

  // A full disk: the query log's path leads to /dev/full, where every write fails with ENOSPC.
  symlinkSync('/dev/full', qlog);
  await until('the query log fails', async () => (await metric('sinkhole_log_failing{log="queries"}')) === 1);
  t.ok((await metric('sinkhole_log_dropped_lines_total{log="queries"}')) >= 1, 'dropped lines are counted');
  t.ok(lines.some((l) => /error SH_LOG_WRITE cannot write the query log.*error=ENOSPC/.test(l)), 'and the failure is logged once');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('still.example.test', T.A))), 0, 'DNS keeps answering');
  // Room again: the path is a plain file now. The writer retries by itself, with no SIGHUP.
  rmSync(qlog);
  writeFileSync(qlog, '');
  await until('the query log is written again', () => linesIn(qlog) > 0);
  t.equal(await metric('sinkhole_log_failing{log="queries"}'), 0, 'no longer failing');
  t.ok(lines.some((l) => /info queries log is written again/.test(l)), 'the recovery is logged');

  // A deleted folder: the audit trail's folder is removed under it.
  const excepted = (): Promise<Buffer> => exchange('udp', h.port, buildQuery('www.tiktok.com', T.A), '127.0.0.7');
  await excepted();
  const audit = join(h.dir, 'logs', 'audit.jsonl');
  await until('the audit line is written', () => usesIn(audit) === 1, false);
  rmSync(join(h.dir, 'logs'), { recursive: true });
  await excepted();
  await until('the audit folder is recreated and written', async () => {
    await excepted();
    return usesIn(audit) > 0;
  }, false);
  t.ok((await metric('sinkhole_log_dropped_lines_total{log="audit"}')) >= 1, 'audit lines written into the deleted file are counted as lost');
  t.ok(lines.some((l) => /error SH_LOG_WRITE audit log file was deleted; reopening it/.test(l)), 'and logged');

  // The audit trail failing is loud: a metric, the /readyz body, the log.
  rmSync(audit);
  symlinkSync('/dev/full', audit);
  await until('the audit trail fails', async () => {
    await excepted();
    return (await metric('sinkhole_log_failing{log="audit"}')) === 1;
  }, false);
  const ready = await get(h, '/readyz');
  t.equal(ready.status, 200, '/readyz stays 200: DNS is still answered');
  t.match(ready.body, /^ready, degraded: audit log failing: ENOSPC since \S+ \(.*audit\.jsonl\); \d+ lines dropped\n$/, 'and its body says the audit trail is failing');
  t.ok(lines.some((l) => /error SH_LOG_WRITE cannot write the audit trail; exceptions used are NOT being recorded/.test(l)), 'logged as an error');
});

t.test('event-loop delay: the sampling interval is not counted as delay, a blocked loop is, into the next window', async (t) => {
  const WINDOW = 300;
  const d = new LoopDelay(WINDOW);
  t.teardown(() => d.close());
  const samples = async (n: number): Promise<void> => {
    while (d.samples < n) await new Promise((r) => setTimeout(r, 5));
  };
  await samples(5);
  const [p50] = d.seconds();
  t.ok(p50! < 0.005, `an idle loop is late by about nothing (p50 ${(p50! * 1000).toFixed(2)} ms), not by the 10 ms interval`);
  const before = d.samples;
  const start = Date.now();
  // The loop blocked for 150 ms, as by a long GC or a big reload: far more than this machine's own noise
  // (another test process taking the core for a few tens of ms), so the checks below cannot mistake one for the other.
  while (Date.now() - start < 150);
  await samples(before + 2);
  const max = d.seconds()[2]!;
  t.ok(max >= 0.13 && max < 0.5, `a 150 ms block reads as about 140-150 ms late (${(max * 1000).toFixed(1)} ms)`);
  // The window restarts; a scrape just after still sees the stall (a scrape every 15 s would otherwise miss it).
  const restarted = async (): Promise<void> => {
    await samples(2); // a restart shows as the count falling back: it must have risen first
    const seen = d.samples;
    while (d.samples >= seen) await new Promise((r) => setTimeout(r, 5));
  };
  await restarted();
  t.ok(d.seconds()[2]! >= 0.13, `after the window restarts, the stall is still reported (${(d.seconds()[2]! * 1000).toFixed(1)} ms)`);
  await restarted();
  await samples(3);
  t.ok(d.seconds()[2]! < 0.1, `two windows later it is gone (${(d.seconds()[2]! * 1000).toFixed(1)} ms)`);
});

/**
 * How many turns the event loop got while `work` ran, and the longest it went without one (a setImmediate
 * chain counts them). The count is what the tests assert: one piece of work lets no turn in, whatever the
 * machine; the longest gap is only reported, since another process on a busy machine stretches it too.
 */
async function loopTurns<T>(work: () => Promise<T>): Promise<{ value: T; turns: number; stallMs: number; totalMs: number }> {
  let last = performance.now();
  let stallMs = 0;
  let turns = 0;
  let running = true;
  const tick = (): void => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
    if (!running) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  await new Promise((r) => setImmediate(r)); // the chain runs
  turns = 0;
  const started = performance.now();
  const value = await work();
  const totalMs = performance.now() - started;
  running = false;
  tick();
  return { value, turns, stallMs, totalMs };
}

t.test('HTTP renders on the query thread run in slices: /metrics and the report let queries in between', async (t) => {
  // /metrics: the same text as prom-client's own render, metric for metric.
  const reg = new Registry();
  new Counter({ name: 'a_total', help: 'a "quoted" help\\', labelNames: ['l'], registers: [reg] }).inc({ l: 'x\ny' }, 3);
  new Gauge({ name: 'b', help: 'b', registers: [reg] }).set(1.5);
  new Histogram({ name: 'c_seconds', help: 'c', buckets: [0.1, 1], registers: [reg] }).observe(0.5);
  t.equal(await metricsInSlices(reg), await reg.metrics(), 'the sliced render is byte for byte what prom-client renders');
  // 40 metrics that each take 1 ms to collect: one piece would hold the loop for 40 ms.
  const slow = new Registry();
  for (let i = 0; i < 40; i++) {
    new Gauge({
      name: `slow_${i}`, help: 'slow', registers: [slow],
      collect(this: Gauge) {
        const until = performance.now() + 1;
        while (performance.now() < until);
        this.set(i);
      },
    });
  }
  const m = await loopTurns(() => metricsInSlices(slow));
  t.match(m.value, /slow_39 39\n$/, 'every metric rendered');
  t.ok(m.turns >= 10, `the loop got ${m.turns} turns during a ${m.totalMs.toFixed(0)} ms render (longest without: ${m.stallMs.toFixed(1)} ms)`);

  // The report: 30,000 devices (a reportRow is a few µs; one piece would be 60+ ms).
  let now = 1_000_000;
  const r = new ComplianceReport({ windowMs: 86_400_000, maxClients: 100_000, store: { kind: 'memory' }, retentionMs: 86_400_000 }, () => now);
  for (let i = 0; i < 30_000; i++) {
    now++;
    r.observe({ client: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, mac: undefined } as never, { wire: Buffer.alloc(4), result: 'blocked', list: 'tiktok' });
    if (i % 1000 === 999) r.drain(); // the intake holds a bounded burst between two event-loop turns
  }
  r.observe({ client: '10.9.9.9', mac: undefined } as never, { wire: Buffer.alloc(4), result: 'blocked', list: 'tiktok' });
  r.observe({ client: '10.9.9.9', mac: undefined } as never, { wire: Buffer.alloc(4), result: 'blocked', list: 'tiktok' });
  const rep = await loopTurns(() => r.snapshot());
  t.equal(rep.value.clients.length, 30_001, 'every device');
  t.equal(rep.value.clients[0]!.client, '10.9.9.9', 'the most active first');
  t.equal(rep.value.clients[1]!.client, '10.0.117.47', 'then the most recently seen');
  t.ok(rep.turns >= 5, `the loop got ${rep.turns} turns during a ${rep.totalMs.toFixed(0)} ms snapshot (longest without: ${rep.stallMs.toFixed(1)} ms)`);
});

t.test('report and health reach listen.http through one URL helper: wildcards on loopback, IPv6 in brackets', async (t) => {
  const { serverUrl } = await import('../src/http/server.js');
  t.equal(serverUrl({ host: '0.0.0.0', port: 9153 }), 'http://127.0.0.1:9153');
  t.equal(serverUrl({ host: '::', port: 9153 }), 'http://[::1]:9153', 'the :: branch report never reached');
  t.equal(serverUrl({ host: '192.0.2.7', port: 80 }), 'http://192.0.2.7:80');
  t.equal(serverUrl({ host: 'fd00::53', port: 9153 }), 'http://[fd00::53]:9153');
});
