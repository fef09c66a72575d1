// src/ratelimit/limiter.ts and src/stages/rateLimit.ts: per-client rate limits (clients.rateLimit),
// truncate or refuse, slip, dry run, keys by prefix, bounded memory, and the CLI report column.
import t from 'tap';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { FakeClock, startSinkhole } from '../helpers/sinkhole.js';
import { buildQuery, decode, exchange, rcodeOf, udpExchange, type Decoded } from '../helpers/dns.js';
import { RateLimiter } from '../../src/ratelimit/limiter.js';
import { until } from '../helpers/wait.js';


const addr = (d: Decoded): string | undefined => (d.answers as { address?: string }[]).find((a) => a.address)?.address;

const LIMITED = { clients: { allowFrom: ['127.0.0.0/8'], groups: { servers: ['127.0.0.9'] }, rateLimit: { qps: 5, burst: 10, action: 'truncate', exempt: ['servers'], slip: 1 } } };

t.test('rate limit: over its bucket a client gets TC over UDP and REFUSED over TCP; others are served; tokens come back', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  const h = await startSinkhole(t, up.port, { ...LIMITED, listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' } }, {}, { clock });
  const from = (client: string, proto: 'udp' | 'tcp' = 'udp'): Promise<Decoded> => exchange(proto, h.port, buildQuery('www.example.test', T.A, { id: 77 }), client).then(decode);
  for (let i = 0; i < 10; i++) t.equal(addr(await from('127.0.0.2')), '192.0.2.10', `query ${i + 1} of the burst answered`);
  const over = await from('127.0.0.2');
  t.equal(over.header.tc, 1, 'the 11th: TC set, so a real client retries over TCP');
  t.equal(over.header.rcode, 0, 'NOERROR');
  t.equal(over.answers.length, 0, 'empty: a spoofed source gets nothing bigger than its query');
  t.equal(over.header.id, 77, 'its own ID');
  t.equal((await from('127.0.0.2', 'tcp')).header.rcode, 5, 'over TCP there is nothing to truncate: REFUSED');
  t.equal(addr(await from('127.0.0.3')), '192.0.2.10', 'another client is unaffected');
  for (let i = 0; i < 15; i++) t.equal(addr(await from('127.0.0.9')), '192.0.2.10', `exempt group, query ${i + 1}`);
  clock.advance(1_000);
  for (let i = 0; i < 5; i++) t.equal(addr(await from('127.0.0.2')), '192.0.2.10', `1 s later, query ${i + 1} of 5 qps answered`);
  t.equal((await from('127.0.0.2')).header.tc, 1, 'and the 6th is over again');
  t.same(await h.running.reloader.reload('config'), [], 'a reload that leaves the limit as it was');
  t.equal((await from('127.0.0.2')).header.tc, 1, 'keeps the buckets: still over');
  t.same(h.running.stats.rateLimited, { truncate: 3, refuse: 1, drop: 0, dryrun: 0 });
  t.equal(up.count('www.example.test'), 1, 'limited queries cost no upstream work');
  const metrics = await (await fetch(`http://127.0.0.1:${h.running.http!.port}/metrics`)).text();
  t.match(metrics, /sinkhole_ratelimited_total\{action="truncate"\} 3/);
  t.match(metrics, /sinkhole_ratelimit_buckets 3\n/, 'one bucket per client seen: .2, .3, .9');
  t.match(metrics, /sinkhole_responses_total\{result="ratelimited",rcode="REFUSED"\} 1/);
  const report = (await (await fetch(`http://127.0.0.1:${h.running.http!.port}/api/blocked-clients`)).json()) as { clients: { client: string; rateLimited: number }[] };
  t.same(report.clients.map((c) => [c.client, c.rateLimited]), [['127.0.0.2', 4]], 'the compliance report lists the limited client');
});

t.test('rate limit: refuse, dry run, off when absent, and the CLI report column', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  const refuse = await startSinkhole(t, up.port, { clients: { ...LIMITED.clients, rateLimit: { qps: 1, burst: 2, action: 'refuse', slip: 1 } } }, {}, { clock });
  const codes: number[] = [];
  for (let i = 0; i < 3; i++) codes.push(rcodeOf(await udpExchange(refuse.port, buildQuery('www.example.test', T.A), 4000, '127.0.0.2')));
  t.same(codes, [0, 0, 5], 'action refuse: REFUSED past the burst');

  const dry = await startSinkhole(
    t, up.port,
    { listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' }, clients: { ...LIMITED.clients, rateLimit: { qps: 1, burst: 2, dryRun: true } } },
    {}, { clock },
  );
  for (let i = 0; i < 5; i++) t.equal(rcodeOf(await udpExchange(dry.port, buildQuery('www.example.test', T.A), 4000, '127.0.0.4')), 0, `dry run: query ${i + 1} answered`);
  t.same(dry.running.stats.rateLimited, { truncate: 0, refuse: 0, drop: 0, dryrun: 3 }, 'dry run: counted, not acted on');
  const { execFile } = await import('node:child_process');
  const cli = await new Promise<string>((resolve) =>
    execFile(process.execPath, [new URL('../../dist/cli.js', import.meta.url).pathname, 'report', '--url', `http://127.0.0.1:${dry.running.http!.port}`], (_e, out) => resolve(out)),
  );
  t.match(cli, /CLIENT\s+MAC\s+HOSTNAME\s+BLOCKED\s+RATE LIMITED\s+FIRST SEEN/, 'sinkhole report shows the column');
  t.match(cli, /\n127\.0\.0\.4\s+-\s+-\s+0\s+3\s/, 'with the client and its count');

  const none = await startSinkhole(t, up.port, {}, {}, { clock });
  for (let i = 0; i < 30; i++) await udpExchange(none.port, buildQuery('www.example.test', T.A));
  t.same(none.running.stats.rateLimited, { truncate: 0, refuse: 0, drop: 0, dryrun: 0 }, 'no clients.rateLimit: no limit');
});

t.test('rate limit: slip — over UDP one over-limit query in `slip` gets its reply, the others none; TCP is always answered', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-slip-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'queries.jsonl');
  const h = await startSinkhole(
    t, up.port,
    {
      listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
      clients: { ...LIMITED.clients, rateLimit: { qps: 1, burst: 2 } }, // slip absent: 2, as BIND's RRL
      log: { queries: 'all', file: logFile },
    },
    {}, { clock },
  );
  const sock = dgram.createSocket('udp4');
  t.teardown(() => sock.close());
  await new Promise<void>((r) => sock.bind(0, '127.0.0.2', r));
  const replies: Decoded[] = [];
  sock.on('message', (m) => replies.push(decode(m)));
  const replyTo = (id: number): Promise<Decoded> =>
    until(() => replies.some((d) => d.header.id === id), `the reply to ${id}`).then(() => replies.find((d) => d.header.id === id)!);
  const send = (id: number): void => sock.send(buildQuery('www.example.test', T.A, { id }), h.port, '127.0.0.1');
  const limited = (): number => h.running.stats.rateLimited.drop + h.running.stats.rateLimited.truncate;

  send(1);
  send(2);
  await replyTo(2);
  for (let id = 11; id <= 16; id++) send(id);
  await until(() => limited() === 6, 'six over-limit queries');
  // Replies from one socket to one socket arrive in order on loopback: once the reply to 99 (a
  // query within the refilled bucket) is here, every reply to 11..16 that was sent is here too.
  clock.advance(10_000);
  send(99);
  t.equal(addr(await replyTo(99)), '192.0.2.10', 'within the bucket again: answered');
  const over = replies.filter((d) => d.header.id >= 11 && d.header.id <= 16);
  t.same(over.map((d) => d.header.id), [12, 14, 16], 'slip 2: every second over-limit query gets a reply');
  t.ok(over.every((d) => d.header.tc === 1 && d.answers.length === 0), 'and that reply is the empty TC one');
  t.same(h.running.stats.rateLimited, { truncate: 3, refuse: 0, drop: 3, dryrun: 0 });
  const metrics = await (await fetch(`http://127.0.0.1:${h.running.http!.port}/metrics`)).text();
  t.match(metrics, /sinkhole_ratelimited_total\{action="drop"\} 3/, 'drops are counted');
  t.match(metrics, /sinkhole_responses_total\{result="ratelimited",rcode="NOERROR"\} 3\n/, 'only the replies sent count as responses');
  await until(() => existsSync(logFile) && readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"ratelimited"')).length === 6, 'six log lines');
  const logged = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"ratelimited"')).map((l) => (JSON.parse(l) as { rcode: string }).rcode);
  t.same(logged, ['none', 'NOERROR', 'none', 'NOERROR', 'none', 'NOERROR'], 'the query log says which got no reply');

  for (let id = 21; id <= 24; id++) send(id); // 21 takes the token left after 99; 22-24 are over
  await until(() => limited() === 9, 'three more over the limit');
  const tcp = await exchange('tcp', h.port, buildQuery('www.example.test', T.A, { id: 30 }), '127.0.0.2').then(decode);
  t.equal(tcp.header.rcode, 5, 'over TCP, never dropped: REFUSED');

  const none = await startSinkhole(t, up.port, { clients: { ...LIMITED.clients, rateLimit: { qps: 1, burst: 1, slip: 0 } } }, {}, { clock });
  for (let id = 40; id <= 43; id++) sock.send(buildQuery('www.example.test', T.A, { id }), none.port, '127.0.0.1');
  t.equal(addr(await replyTo(40)), '192.0.2.10', 'slip 0: the bucket is still answered');
  await until(() => none.running.stats.rateLimited.drop + none.running.stats.rateLimited.truncate === 3, 'three over-limit queries');
  t.same(none.running.stats.rateLimited, { truncate: 0, refuse: 0, drop: 3, dryrun: 0 }, 'slip 0: no over-limit query gets a reply (as Unbound drops)');
});

t.test('rate limit: client keys by prefix, and memory bounded by evicting the least recently seen', async (t) => {
  const settings = { qps: 1, burst: 1, action: 'truncate' as const, exempt: [], dryRun: false, ipv4Prefix: 24, ipv6Prefix: 56, slip: 2 };
  const l = new RateLimiter(settings, 100);
  t.equal(l.keyOf('10.1.2.3'), l.keyOf('10.1.2.200'), 'IPv4 /24: one key');
  t.not(l.keyOf('10.1.2.3'), l.keyOf('10.1.3.3'), 'another /24: another key');
  t.equal(l.keyOf('2001:db8:0:1200::1'), l.keyOf('2001:db8:0:12ff:ffff::2'), 'IPv6 /56: one key');
  t.not(l.keyOf('2001:db8:0:1200::1'), l.keyOf('2001:db8:0:1300::1'), 'another /56: another key');
  t.equal(new RateLimiter({ ...settings, ipv4Prefix: 32 }).keyOf('10.1.2.3'), '10.1.2.3', 'IPv4 /32: the address itself, no allocation');
  t.equal(l.take('10.9.9.9', 0), undefined, 'first query: allowed');
  t.ok(l.take('10.9.9.9', 0), 'second in the same instant: over');
  for (let i = 0; i < 1000; i++) {
    l.take(`10.${(i >> 8) & 255}.${i & 255}.1`, 1);
    if (i % 50 === 0) l.take('10.9.9.9', 1); // the flooder stays recently seen
  }
  t.ok(l.size <= 100, `at most 100 buckets kept (${l.size})`);
  t.ok(l.take('10.9.9.9', 1), 'a recently seen flooder keeps its empty bucket: eviction is no way out');
  t.equal(l.take('10.9.9.9', 1_001), undefined, 'a second later it has a token again');
  t.ok(l.take('10.9.9.9', 500), 'a clock that steps back refills nothing');
});
