// Per-client access control and approved exceptions: the matrix from the
// issue, expiry by the clock without a reload, cache independence, the audit
// trail, validation, and the `check` / `exceptions` commands.
import t from 'tap';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { stringify } from 'yaml';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { FakeClock, startSinkhole, TIKTOK_LIST } from './helpers/sinkhole.js';
import { buildQuery, decode, exchange, rcodeOf } from './helpers/dns.js';
import { parseExpiry } from '../src/policy/exceptions.js';
import { cacheKey } from '../src/cache/replyCache.js';
import { decodeQuery } from '../src/dns/query.js';
import { streamLogger } from '../src/log.js';

const CLI = join(import.meta.dirname, '..', 'dist', 'cli.js');
const PROTOS = ['udp', 'tcp'] as const;
const EXPIRES = '2026-11-28T12:00:00Z';
const EXPIRES_MS = Date.parse(EXPIRES);

const ADS_LIST = '# ads\nanalytics.tiktok.com\n';
const EXCEPTIONS = {
  exceptions: [
    { id: 'EX-IP-LIST', clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'Committee inquiry', approvedBy: 'Chief Executive', expires: EXPIRES },
    { id: 'EX-IP-DOMAIN', clients: ['127.0.0.8'], allow: ['tiktok.com'], reason: 'Press monitoring', approvedBy: 'Chief Executive', expires: EXPIRES },
    { id: 'EX-GROUP-DOMAIN', clients: ['press'], allow: ['tiktok.com'], reason: 'Press office', approvedBy: 'Speaker', expires: EXPIRES },
    { id: 'EX-CIDR-LIST', clients: ['127.0.2.0/24'], allow: ['tiktok'], reason: 'Research unit', approvedBy: 'Speaker', expires: EXPIRES },
  ],
};

function policyConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    blocking: { lists: { tiktok: ['tiktok.txt'], 'tiktok-ads': ['ads.txt'] }, enforce: ['tiktok', 'tiktok-ads'] },
    clients: { allowFrom: ['127.0.0.0/16'], groups: { press: ['127.0.1.0/24'] } },
    exceptions: 'exceptions.yaml',
    ...extra,
  };
}

t.test('the matrix: client kind × exception kind × expiry × direct/CNAME, over UDP and TCP', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('alias.example.test', {
    answers: [
      { name: 'alias.example.test', type: T.CNAME, domain: 'video.tiktok.com' },
      { name: 'video.tiktok.com', type: T.A, address: '192.0.2.99' },
    ],
  });
  const clock = new FakeClock(EXPIRES_MS - 10_000);
  const h = await startSinkhole(t, up.port, policyConfig(), { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify(EXCEPTIONS) }, { clock });
  const clients = [
    { kind: 'outside allowFrom', addr: '127.9.0.1', allowedBefore: 'refused' },
    { kind: 'no exception', addr: '127.0.0.1', allowedBefore: 'blocked' },
    { kind: 'single IP, by list', addr: '127.0.0.7', allowedBefore: 'answered' },
    { kind: 'single IP, by domain', addr: '127.0.0.8', allowedBefore: 'answered' },
    { kind: 'group, by domain', addr: '127.0.1.5', allowedBefore: 'answered' },
    { kind: 'CIDR, by list', addr: '127.0.2.9', allowedBefore: 'answered' },
  ] as const;
  const names = [
    { how: 'direct', name: 'www.tiktok.com' },
    { how: 'via CNAME', name: 'alias.example.test' },
  ];
  const outcome = (r: Buffer): string => (rcodeOf(r) === 5 ? 'refused' : rcodeOf(r) === 3 ? 'blocked' : rcodeOf(r) === 0 && decode(r).answers.length ? 'answered' : `rcode ${rcodeOf(r)}`);
  for (const when of ['before expiry', '1 s after expiry'] as const) {
    if (when === '1 s after expiry') clock.ms = EXPIRES_MS + 1000;
    for (const proto of PROTOS) {
      for (const c of clients) {
        for (const n of names) {
          const expected = c.allowedBefore === 'answered' && when === '1 s after expiry' ? 'blocked' : c.allowedBefore;
          const got = outcome(await exchange(proto, h.port, buildQuery(n.name, T.A), c.addr));
          t.equal(got, expected, `${when} | ${proto} | ${c.kind} | ${n.how}`);
        }
      }
    }
  }
  t.equal(h.running.policy.current.number, 1, 'expiry took effect with no reload');
  // A name on a second enforced list: a list exception covers only its list; a domain exception covers the name.
  clock.ms = EXPIRES_MS - 10_000;
  const ads = (addr: string): Promise<string> => exchange('udp', h.port, buildQuery('analytics.tiktok.com', T.A), addr).then(outcome);
  t.equal(await ads('127.0.0.7'), 'blocked', 'exception for list "tiktok" does not cover tiktok-ads');
  t.equal(await ads('127.0.0.8'), 'answered', 'exception for domain tiktok.com covers it on every list');
});

t.test('the cache stays client-independent: interleaved excepted and blocked clients', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock(EXPIRES_MS - 60_000);
  const h = await startSinkhole(t, up.port, policyConfig(), { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify(EXCEPTIONS) }, { clock });
  const q = (addr: string): Promise<Buffer> => exchange('udp', h.port, buildQuery('shared.tiktok.com', T.A), addr);
  for (let round = 0; round < 3; round++) {
    t.equal(rcodeOf(await q('127.0.0.1')), 3, `round ${round}: B (no exception) blocked`);
    const a = decode(await q('127.0.0.7'));
    t.equal(a.answers[0]?.address, '192.0.2.10', `round ${round}: A (excepted) answered`);
    t.equal(rcodeOf(await q('127.0.0.1')), 3, `round ${round}: B still blocked after A's answer was cached`);
  }
  t.equal(up.count('shared.tiktok.com'), 1, 'A was served from the cache after the first time');
  t.equal(h.running.stats.exceptionQueries.get('EX-IP-LIST'), 3, 'exception use counted');
});

t.test('excepted answers are kept no longer than blocking.ttl, fresh and cached, over UDP and TCP; the cache keeps its TTLs', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('alias.example.test', {
    answers: [
      { name: 'alias.example.test', type: T.CNAME, domain: 'video.tiktok.com', ttl: 3600 },
      { name: 'video.tiktok.com', type: T.A, address: '192.0.2.99', ttl: 3600 },
    ],
  });
  up.on('short.tiktok.com', { answers: [{ name: 'short.tiktok.com', type: T.A, address: '192.0.2.98', ttl: 4 }] });
  up.on('gone.tiktok.com', { rcode: 3, soa: { ttl: 900, minimum: 900 } });
  const clock = new FakeClock(EXPIRES_MS - 600_000);
  const h = await startSinkhole(t, up.port, policyConfig({ blocking: { lists: { tiktok: ['tiktok.txt'], 'tiktok-ads': ['ads.txt'] }, enforce: ['tiktok', 'tiktok-ads'], ttl: '20s' } }),
    { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify(EXCEPTIONS) }, { clock });
  const ttls = (r: Buffer): number[] => { const d = decode(r); return [...d.answers, ...d.authorities].map((a) => (a as { ttl: number }).ttl); };
  for (const pass of ['fresh', 'cached']) {
    for (const proto of PROTOS) {
      const direct = await exchange(proto, h.port, buildQuery('www.tiktok.com', T.A), '127.0.0.7');
      t.same(ttls(direct), [20], `${pass} ${proto}: excepted answer (upstream TTL 300) clamped to blocking.ttl`);
      const viaCname = await exchange(proto, h.port, buildQuery('alias.example.test', T.A), '127.0.0.7');
      t.same(ttls(viaCname), [20, 20], `${pass} ${proto}: excepted via a CNAME target: every record clamped`);
      t.same(ttls(await exchange(proto, h.port, buildQuery('short.tiktok.com', T.A), '127.0.0.7')), [4], `${pass} ${proto}: a lower TTL is kept`);
      const negative = await exchange(proto, h.port, buildQuery('gone.tiktok.com', T.A), '127.0.0.7');
      t.equal(rcodeOf(negative), 3, `${pass} ${proto}: upstream NXDOMAIN passed through`);
      t.same(ttls(negative), [20], `${pass} ${proto}: its SOA clamped too (RFC 2308 negative TTL)`);
      t.same(ttls(await exchange(proto, h.port, buildQuery('www.example.test', T.A), '127.0.0.7')), [300], `${pass} ${proto}: an answer no exception was needed for keeps its TTL`);
    }
  }
  t.equal(up.count('www.tiktok.com'), 1, 'the second pass was served from the cache');
  // The cache's own bytes were never clamped: they still say 3600 for the next excepted client's copy to start from.
  const raw = buildQuery('alias.example.test', T.A);
  const hit = h.running.cache().get(cacheKey(decodeQuery(raw, '127.0.0.1', 'udp', 0)!), decodeQuery(raw, '127.0.0.1', 'udp', 0)!);
  t.same(ttls(hit!.wire), [3600, 3600], 'cached bytes untouched');
});

t.test('audit trail: one JSON line per query an exception let through', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock(EXPIRES_MS - 60_000);
  const h = await startSinkhole(
    t, up.port, policyConfig({ log: { queries: 'none', audit: 'audit.jsonl' } }),
    { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify(EXCEPTIONS) }, { clock },
  );
  await exchange('udp', h.port, buildQuery('www.tiktok.com', T.AAAA), '127.0.1.5');
  await exchange('udp', h.port, buildQuery('www.example.test', T.A), '127.0.1.5');
  await exchange('udp', h.port, buildQuery('www.tiktok.com', T.A), '127.0.0.1');
  // The batch is written on a later turn and the file opened asynchronously: wait for the line.
  for (const deadline = Date.now() + 3000; !existsSync(join(h.dir, 'audit.jsonl')) || !readFileSync(join(h.dir, 'audit.jsonl'), 'utf8'); ) {
    if (Date.now() > deadline) throw new Error('audit line never written');
    await new Promise((r) => setTimeout(r, 10));
  }
  // logrotate moves the file away; SIGHUP (reopenLogs) starts a new one at the same path.
  renameSync(join(h.dir, 'audit.jsonl'), join(h.dir, 'audit.jsonl.1'));
  await h.running.reopenLogs();
  await exchange('udp', h.port, buildQuery('m.tiktok.com', T.A), '127.0.1.5');
  await h.running.close();
  const rotated = readFileSync(join(h.dir, 'audit.jsonl.1'), 'utf8').trim().split('\n');
  t.equal(rotated.length, 1, 'after rotation the old file has the first line');
  t.match(JSON.parse(readFileSync(join(h.dir, 'audit.jsonl'), 'utf8')), { name: 'm.tiktok.com' }, 'and the new file the next one');
  const lines = rotated;
  t.equal(lines.length, 1, 'only the excepted query is audited');
  t.match(JSON.parse(lines[0]!), { client: '127.0.1.5', name: 'www.tiktok.com', type: 'AAAA', exception: 'EX-GROUP-DOMAIN', list: 'tiktok', rule: 'tiktok.com', time: /^\d{4}-/ });
});

t.test('exception records: validation names file:line:col', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, policyConfig(), { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify(EXCEPTIONS) });
  const file = join(h.dir, 'exceptions.yaml');
  const base = { id: 'X-1', clients: ['127.0.0.9'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2027-01-01' };
  const cases: [string, Record<string, unknown>[], RegExp][] = [
    ['missing reason', [{ ...base, reason: undefined }], /exceptions\.yaml:2:5: exceptions\[0\]: missing "reason"/],
    ['missing approvedBy', [{ ...base, approvedBy: undefined }], /missing "approvedBy"/],
    ['missing expires', [{ ...base, expires: undefined }], /missing "expires"/],
    ['unknown group', [{ ...base, clients: ['ministers'] }], /exceptions\.yaml:4:9: exceptions\[0\]\.clients: "ministers" is neither an IP, a CIDR, nor a group/],
    ['unknown list', [{ ...base, allow: ['instagram'] }], /allow: "instagram" is neither a list in blocking\.lists/],
    ['duplicate id (aliases resolved)', [base, base], /exceptions\.yaml:\d+:9: exceptions\[1\]\.id: duplicate id "X-1"/],
    ['bad date', [{ ...base, expires: '31/12/2026' }], /expires: expected a date like 2026-12-31/],
    ['impossible date', [{ ...base, expires: '2026-02-30' }], /expires: expected a date/],
    ['unknown key', [{ ...base, approver: 'x' }], /exceptions\[0\]\.approver: unknown key/],
  ];
  for (const [what, list, message] of cases) {
    writeFileSync(file, stringify({ exceptions: list.map((e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined))) }));
    const problems = h.running.reloader.reload('exceptions');
    t.match(problems.join('\n'), message, what);
  }
  t.equal(h.running.policy.current.exceptions.length, 4, 'the previous exceptions stayed in force through every bad edit');
  writeFileSync(file, '');
  t.same(h.running.reloader.reload('exceptions'), [], 'an empty exceptions file is valid: no exceptions');
  t.equal(h.running.policy.current.exceptions.length, 0);
  t.equal(h.running.stats.reloads.get('exceptions|failure'), cases.length, 'failures counted');
});

t.test('expiry dates: a date alone is the end of that day, local time', async (t) => {
  const end = parseExpiry('2026-12-31')!;
  t.equal(end, new Date(2027, 0, 1, 0, 0, 0).getTime(), 'lapses at the next local midnight');
  t.equal(parseExpiry('2026-12-31T18:00:00Z'), Date.UTC(2026, 11, 31, 18));
  t.equal(parseExpiry('2026-12-31T18:00:00+01:00'), Date.UTC(2026, 11, 31, 17));
  t.equal(parseExpiry('2026-12-31T18:00'), undefined, 'a time needs a zone');
  t.equal(parseExpiry('tomorrow'), undefined);
});

t.test('check --client --at, and the exceptions listing', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, policyConfig(), { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify(EXCEPTIONS) });
  const check = (...args: string[]): { status: number | null; out: Record<string, unknown> } => {
    const r = spawnSync(process.execPath, [CLI, 'check', 'www.tiktok.com', '--config', h.configFile, '--json', ...args], { encoding: 'utf8' });
    return { status: r.status, out: JSON.parse(r.stdout) as Record<string, unknown> };
  };
  const before = check('--client', '127.0.1.5', '--at', '2026-11-28T11:59:59Z');
  t.equal(before.status, 0, 'excepted: exit 0');
  t.match(before.out, {
    decision: 'excepted', list: 'tiktok', rule: 'tiktok.com', groups: ['press'],
    exception: { id: 'EX-GROUP-DOMAIN', approvedBy: 'Speaker', reason: 'Press office', expires: EXPIRES },
  });
  const after = check('--client', '127.0.1.5', '--at', '2026-11-28T12:00:01Z');
  t.equal(after.status, 1, 'one second after expiry: blocked, exit 1');
  t.match(after.out, { decision: 'blocked', exception: null });
  const v6mapped = check('--client', '::ffff:127.0.0.7', '--at', '2026-11-28T11:00:00Z');
  t.match(v6mapped.out, { decision: 'excepted', client: '127.0.0.7' }, 'an IPv4-mapped IPv6 client is the same client');
  const outside = check('--client', '10.1.2.3');
  t.match(outside.out, { decision: 'refused' }, 'outside allowFrom');
  t.equal(outside.status, 1);
  const list = spawnSync(process.execPath, [CLI, 'exceptions', '--json', '--config', h.configFile], { encoding: 'utf8' });
  t.equal(list.status, 0);
  const rows = JSON.parse(list.stdout) as { id: string; state: string; secondsLeft: number }[];
  t.same(rows.map((r) => r.id), EXCEPTIONS.exceptions.map((e) => e.id));
  t.ok(rows.every((r) => r.state === (Date.now() < EXPIRES_MS ? 'active' : 'expired')), 'state follows the clock');
  const text = spawnSync(process.execPath, [CLI, 'exceptions', '--config', h.configFile], { encoding: 'utf8' });
  t.match(text.stdout, /EX-IP-LIST\s+(active|expired)\s+expires 2026-11-28T12:00:00Z/);
  t.match(text.stdout, /approved by Chief Executive: Committee inquiry/);
});

t.test('the log names each exception when it is loaded, changed or removed', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const lines: string[] = [];
  const h = await startSinkhole(t, up.port, policyConfig(), { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify(EXCEPTIONS) }, { log: streamLogger((l) => lines.push(l)) });
  t.equal(lines.filter((l) => l.includes('exception loaded')).length, 4, 'all four logged at start');
  t.match(lines.find((l) => l.includes('id=EX-IP-LIST')), /exception loaded id=EX-IP-LIST state=\w+ expires=2026-11-28T12:00:00Z clients=127\.0\.0\.7 allow=tiktok approvedBy="Chief Executive" reason="Committee inquiry"/);
  lines.length = 0;
  const [first, , third] = EXCEPTIONS.exceptions;
  writeFileSync(join(h.dir, 'exceptions.yaml'), stringify({ exceptions: [{ ...first, expires: '2027-06-30' }, third] }));
  t.same(h.running.reloader.reload('exceptions'), []);
  t.match(lines.join(''), /exception changed id=EX-IP-LIST .*expires=2027-06-30/);
  t.match(lines.join(''), /exception removed id=EX-IP-DOMAIN/);
  t.match(lines.join(''), /exception removed id=EX-CIDR-LIST/);
  t.notMatch(lines.join(''), /id=EX-GROUP-DOMAIN/, 'an unchanged exception is not logged again');
});
