// src/policy/ (clients.ts, exceptions.ts, exceptionEvents.ts, zonedDate.ts, warnings.ts) and the
// exception audit (src/querylog/auditLog.ts, exceptionAudit.ts).
// Per-client access control and approved exceptions: the matrix from the
// issue, expiry by the clock without a reload, cache independence, the audit
// trail, validation, and the `check` / `exceptions` commands.
import t from 'tap';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { stringify } from 'yaml';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { FakeClock, startSinkhole, TIKTOK_LIST } from '../helpers/sinkhole.js';
import { buildQuery, decode, exchange, rcodeOf } from '../helpers/dns.js';
import { parseExpiry, parseRevoked } from '../../src/policy/exceptions.js';
import { decodeQuery } from '../../src/dns/query.js';
import { streamLogger } from '../../src/log.js';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli.js');
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
  const hit = h.running.cache().get(decodeQuery(raw, '127.0.0.1', 'udp', 0)!);
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
  const uses = (file: string): Record<string, unknown>[] =>
    readFileSync(join(h.dir, file), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.event === 'use');
  const rotated = uses('audit.jsonl.1');
  t.equal(rotated.length, 1, 'after rotation the old file has the first use; only the excepted query is audited');
  t.match(uses('audit.jsonl'), [{ name: 'm.tiktok.com' }], 'and the new file the next one');
  t.match(rotated[0], { event: 'use', client: '127.0.1.5', name: 'www.tiktok.com', type: 'AAAA', exception: 'EX-GROUP-DOMAIN', list: 'tiktok', rule: 'tiktok.com', time: /^\d{4}-/ });
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
    const problems = await h.running.reloader.reload('exceptions');
    t.match(problems.join('\n'), message, what);
  }
  t.equal(h.running.policy.current.exceptions.length, 4, 'the previous exceptions stayed in force through every bad edit');
  writeFileSync(file, '');
  t.same(await h.running.reloader.reload('exceptions'), [], 'an empty exceptions file is valid: no exceptions');
  t.equal(h.running.policy.current.exceptions.length, 0);
  t.equal(h.running.stats.reloads.get('exceptions|failure'), cases.length, 'failures counted');
});

t.test('expiry dates: a date alone is the end of that day in a named zone, the server\'s by default', async (t) => {
  const end = parseExpiry('2026-12-31')!;
  t.equal(end, new Date(2027, 0, 1, 0, 0, 0).getTime(), 'default: lapses at the next midnight of the server\'s zone');
  t.equal(parseExpiry('2026-12-07', 'Pacific/Auckland'), Date.UTC(2026, 11, 7, 11), 'Pacific/Auckland (NZDT, +13)');
  t.equal(parseExpiry('2026-12-07', 'UTC'), Date.UTC(2026, 11, 8));
  t.equal(parseExpiry('2026-10-24', 'Europe/London'), Date.UTC(2026, 9, 24, 23), 'the night summer time ends: midnight BST');
  t.equal(parseExpiry('2026-09-05', 'America/Santiago'), Date.UTC(2026, 8, 6, 4), 'clocks skip midnight (00:00 to 01:00): the day starts at 01:00 local');
  t.equal(parseRevoked('2026-12-07', 'Pacific/Auckland'), Date.UTC(2026, 11, 6, 11), 'a revoke date means from the start of that day');
  t.equal(parseExpiry('2026-12-31T18:00:00Z', 'Pacific/Auckland'), Date.UTC(2026, 11, 31, 18), 'a full time ignores the zone');
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
  t.match(lines.find((l) => l.includes('id=EX-IP-LIST')), /exception loaded id=EX-IP-LIST state=\w+ expires=2026-11-28T12:00:00Z timezone=\S+ clients=127\.0\.0\.7 allow=tiktok approvedBy="Chief Executive" reason="Committee inquiry"/);
  lines.length = 0;
  const [first, , third] = EXCEPTIONS.exceptions;
  writeFileSync(join(h.dir, 'exceptions.yaml'), stringify({ exceptions: [{ ...first, expires: '2027-06-30' }, third] }));
  t.same(await h.running.reloader.reload('exceptions'), []);
  t.match(lines.join(''), /exception renewed id=EX-IP-LIST .*expires=2027-06-30/);
  t.match(lines.join(''), /exception removed id=EX-IP-DOMAIN/);
  t.match(lines.join(''), /exception removed id=EX-CIDR-LIST/);
  t.notMatch(lines.join(''), /id=EX-GROUP-DOMAIN/, 'an unchanged exception is not logged again');
});

t.test('an exception lapsing by the clock is in the server\'s log too, not only the audit trail', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const lines: string[] = [];
  const clock = new FakeClock(Date.UTC(2026, 11, 1, 9));
  const record = { id: 'LAPSE-1', clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'Inquiry', approvedBy: 'Speaker', expires: '2026-12-01T10:00:00Z' };
  const h = await startSinkhole(t, up.port, policyConfig(), { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify({ exceptions: [record] }) }, { log: streamLogger((l) => lines.push(l)), clock });
  lines.length = 0;
  clock.ms = Date.UTC(2026, 11, 1, 10, 0, 1);
  h.running.exceptionAudit.check();
  t.match(lines.join('\n'), /info exception lapsed id=LAPSE-1 state=expired expires=2026-12-01T10:00:00Z/, 'one info line with the record');
});

t.test('timezone: the same instant whatever zone the server runs in; shown by check and exceptions', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const record = { id: 'NZ-1', clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'Inquiry', approvedBy: 'Speaker', expires: '2026-12-07' };
  const h = await startSinkhole(t, up.port, policyConfig(), { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify({ exceptions: [record] }) });
  const file = join(h.dir, 'exceptions.yaml');
  const check = (tz: string): { status: number | null; stdout: string } =>
    spawnSync(process.execPath, [CLI, 'check', 'www.tiktok.com', '--client', '127.0.0.7', '--at', '2026-12-07T12:30:00Z', '--config', h.configFile], { encoding: 'utf8', env: { ...process.env, TZ: tz } });
  // The case: with no zone written, the answer depended on the process's TZ.
  t.equal(check('Pacific/Auckland').status, 1, 'no timezone: server in Auckland, lapsed');
  t.equal(check('UTC').status, 0, 'no timezone: server in UTC, still excepted');
  t.match(check('UTC').stdout, /expires: 2026-12-07, end of day in UTC, the server's zone \(2026-12-08T00:00:00\.000Z\)/, 'check names the zone it used');
  for (const [what, text] of [
    ['per record', stringify({ exceptions: [{ ...record, timezone: 'Pacific/Auckland' }] })],
    ['for the whole file', stringify({ timezone: 'Pacific/Auckland', exceptions: [record] })],
  ] as const) {
    writeFileSync(file, text);
    const auckland = check('Pacific/Auckland');
    const utc = check('UTC');
    t.equal(auckland.status, 1, `${what}: lapsed, server in Auckland`);
    t.equal(utc.status, 1, `${what}: lapsed, server in UTC too`);
    t.match(utc.stdout, /exception NZ-1 no longer applies: expired 2026-12-07, end of day in Pacific\/Auckland \(2026-12-07T11:00:00\.000Z\)/, `${what}: check says why`);
  }
  const list = spawnSync(process.execPath, [CLI, 'exceptions', '--config', h.configFile], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
  t.match(list.stdout, /NZ-1\s+(active|expired)\s+expires 2026-12-07, end of day in Pacific\/Auckland \(2026-12-07T11:00:00\.000Z\)/, 'exceptions names the zone');
  const json = JSON.parse(spawnSync(process.execPath, [CLI, 'exceptions', '--json', '--config', h.configFile], { encoding: 'utf8' }).stdout) as Record<string, unknown>[];
  t.match(json[0], { id: 'NZ-1', timezone: 'Pacific/Auckland', timezoneFrom: 'file', expiresAt: '2026-12-07T11:00:00.000Z' });
  writeFileSync(file, stringify({ exceptions: [{ ...record, timezone: 'Mars/Olympus' }] }));
  t.match((await h.running.reloader.reload('exceptions')).join('\n'), /exceptions\.yaml:\d+:\d+: exceptions\[0\]\.timezone: expected an IANA time zone name like Europe\/London, Pacific\/Auckland or UTC, got "Mars\/Olympus"/);
  writeFileSync(file, stringify({ timezone: 'CEST+2', exceptions: [record] }));
  t.match((await h.running.reloader.reload('exceptions')).join('\n'), /exceptions\.yaml:1:\d+: timezone: expected an IANA time zone name/);
});

t.test('revoked: takes effect from its date, says who, and is neither active nor expired', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock(Date.UTC(2026, 10, 30, 12));
  const base = { clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'Inquiry', approvedBy: 'Speaker', expires: '2027-01-31', timezone: 'UTC' };
  const records = [
    { ...base, id: 'REV-TODAY', revoked: '2026-11-30', revokedBy: 'Clerk of the House' },
    { ...base, id: 'REV-LATER', clients: ['127.0.0.8'], revoked: '2026-12-15T09:00:00Z', revokedBy: 'Clerk of the House' },
  ];
  const h = await startSinkhole(t, up.port, policyConfig(), { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify({ exceptions: records }) }, { clock });
  const outcome = async (addr: string): Promise<number> => rcodeOf(await exchange('udp', h.port, buildQuery('www.tiktok.com', T.A), addr));
  t.equal(await outcome('127.0.0.7'), 3, 'revoked today (a date alone: from the start of the day): blocked at once');
  t.equal(await outcome('127.0.0.8'), 0, 'a revoke dated later: still excepted until then');
  clock.ms = Date.UTC(2026, 11, 15, 9);
  t.equal(await outcome('127.0.0.8'), 3, 'from that instant, blocked');
  const metrics = await h.running.registry.getSingleMetricAsString('sinkhole_exceptions');
  t.match(metrics, /sinkhole_exceptions\{state="revoked"\} 2/, 'counted as revoked, not expired');
  const expiry = await h.running.registry.getSingleMetricAsString('sinkhole_exception_expiry_timestamp_seconds');
  t.match(expiry, new RegExp(`exception="REV-LATER"\\} ${Date.UTC(2026, 11, 15, 9) / 1000}`), 'the expiry metric shows when it stopped applying');
  const check = spawnSync(process.execPath, [CLI, 'check', 'www.tiktok.com', '--client', '127.0.0.7', '--at', '2026-12-01T00:00:00Z', '--config', h.configFile], { encoding: 'utf8' });
  t.match(check.stdout, /exception REV-TODAY no longer applies: revoked 2026-11-30 by Clerk of the House/);
  const file = join(h.dir, 'exceptions.yaml');
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...base, id: 'X', revoked: '2026-11-30' }, /exceptions\[0\]: revoked needs revokedBy/],
    [{ ...base, id: 'X', revokedBy: 'Clerk' }, /exceptions\[0\]: revokedBy needs revoked/],
    [{ ...base, id: 'X', revoked: 'yesterday', revokedBy: 'Clerk' }, /exceptions\[0\]\.revoked: expected a date like 2026-12-01/],
  ];
  for (const [record, message] of cases) {
    writeFileSync(file, stringify({ exceptions: [record] }));
    t.match((await h.running.reloader.reload('exceptions')).join('\n'), message, String(message));
  }
});

t.test('validate warns (and serve still runs) about clients outside allowFrom, very wide ranges and far expiries', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const far = `${new Date().getUTCFullYear() + 2}-01-31`;
  const near = `${new Date().getUTCFullYear() + 1}-01-01`;
  const base = { allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: near };
  const records = [
    { ...base, id: 'W-OUTSIDE', clients: ['10.1.2.3'] },
    { ...base, id: 'W-PART', clients: ['127.0.0.0/8'] },
    { ...base, id: 'W-GROUP', clients: ['press'] },
    { ...base, id: 'W-WIDE4', clients: ['0.0.0.0/0'] },
    { ...base, id: 'W-WIDE6', clients: ['2001:db8::/32'] },
    { ...base, id: 'W-SUFFIX', clients: ['127.0.0.9'], allow: ['co.uk'] },
    { ...base, id: 'W-FAR', clients: ['127.0.0.9'], expires: far },
    { ...base, id: 'QUIET', clients: ['127.0.0.9', '127.0.2.0/24'] },
    { ...base, id: 'OLD', clients: ['10.9.9.9'], expires: '2020-01-01' },
  ];
  const lines: string[] = [];
  const h = await startSinkhole(
    t, up.port,
    policyConfig({ clients: { allowFrom: ['127.0.0.0/16', '::1/128'], groups: { press: ['127.0.1.0/24', '192.0.2.0/24'] } } }),
    { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify({ exceptions: records }) },
    { log: streamLogger((l) => lines.push(l)) },
  );
  t.equal(h.running.policy.current.exceptions.length, records.length, 'serve runs with every record in force');
  const r = spawnSync(process.execPath, [CLI, 'validate', '--config', h.configFile], { encoding: 'utf8' });
  t.equal(r.status, 0, 'warnings do not fail validate');
  const out = r.stdout.trim().split('\n');
  t.match(out.at(-1), /sinkhole\.yaml: ok/);
  const warnings = out.slice(0, -1);
  t.match(warnings, [
    /^SH_EXCEPTION_OUTSIDE \S*exceptions\.yaml:\d+:\d+: warning: exception W-OUTSIDE: client 10\.1\.2\.3 is outside clients\.allowFrom \(127\.0\.0\.0\/16, ::1\/128\): it gets REFUSED/,
    /^SH_EXCEPTION_OUTSIDE .* exception W-PART: client 127\.0\.0\.0\/8 is only partly inside clients\.allowFrom/,
    /^SH_EXCEPTION_WIDE .* exception W-PART: client 127\.0\.0\.0\/8 is \/8, 16777216 addresses/,
    /^SH_EXCEPTION_OUTSIDE .* exception W-GROUP: client group "press" member 192\.0\.2\.0\/24 is outside clients\.allowFrom/,
    /^SH_EXCEPTION_OUTSIDE .* exception W-WIDE4: client 0\.0\.0\.0\/0 is only partly inside/,
    /^SH_EXCEPTION_WIDE .* exception W-WIDE4: client 0\.0\.0\.0\/0 is \/0/,
    /^SH_EXCEPTION_OUTSIDE .* exception W-WIDE6: client 2001:db8::\/32 is outside/,
    /^SH_EXCEPTION_WIDE .* exception W-WIDE6: client 2001:db8::\/32 is \/32, 2\^96 addresses/,
    /^SH_EXCEPTION_WIDE .* exception W-SUFFIX allows "co\.uk", a public suffix/,
    new RegExp(`^SH_EXCEPTION_LONG .* exception W-FAR expires ${far}, more than a year away`),
  ]);
  t.equal(warnings.length, 10, 'nothing about QUIET (inside allowFrom, narrow, within a year) or OLD (expired: history)');
  t.match(warnings[0], /exceptions\.yaml:9:9:/, 'points at the client entry');
  t.equal(lines.filter((l) => / warn SH_EXCEPTION_/.test(l)).length, 10, 'serve logged the same warnings');
});

t.test('audit trail of the records: loaded, grant, change, renew, revoke, remove and lapse, with old and new values', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock(Date.UTC(2026, 10, 30, 12));
  const base = { clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'Inquiry', approvedBy: 'Speaker', timezone: 'UTC' };
  const a = { ...base, id: 'A', expires: '2026-12-31' };
  const b = { ...base, id: 'B', expires: '2026-12-31' };
  const c = { ...base, id: 'C', expires: '2026-11-30T12:00:10Z' };
  const h = await startSinkhole(
    t, up.port, policyConfig({ log: { queries: 'none', audit: 'audit.jsonl' } }),
    { 'tiktok.txt': TIKTOK_LIST, 'ads.txt': ADS_LIST, 'exceptions.yaml': stringify({ exceptions: [a, b, c] }) }, { clock },
  );
  const file = join(h.dir, 'exceptions.yaml');
  const save = async (records: object[]): Promise<void> => {
    writeFileSync(file, stringify({ exceptions: records }));
    t.same(await h.running.reloader.reload('exceptions'), [], 'reload');
  };
  clock.ms += 20_000; // C lapses by the clock
  h.running.exceptionAudit.check();
  h.running.exceptionAudit.check(); // a second look writes nothing more
  await save([{ ...a, expires: '2027-03-31' }, { ...b, allow: ['tiktok', 'tiktok-ads'] }, c, { ...base, id: 'D', expires: '2026-12-15' }]);
  await save([{ ...a, expires: '2027-03-31' }, { ...b, allow: ['tiktok', 'tiktok-ads'], revoked: '2026-11-30', revokedBy: 'Clerk' }, { ...base, id: 'D', expires: '2026-12-15' }]);
  await save([{ ...a, expires: '2027-03-31', reason: 'Inquiry, extended' }, { ...b, allow: ['tiktok', 'tiktok-ads'], revoked: '2026-11-30', revokedBy: 'Clerk' }, { ...base, id: 'D', expires: '2026-12-15' }]);
  clock.ms = Date.UTC(2027, 0, 1);
  h.running.exceptionAudit.check(); // D lapses; B was revoked first, so it does not
  await h.running.close();
  const events = readFileSync(join(h.dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(events, [
    { event: 'loaded', exception: 'A', new: { clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'Inquiry', approvedBy: 'Speaker', expires: '2026-12-31', expiresAt: '2027-01-01T00:00:00.000Z', timezone: 'UTC' }, source: /exceptions\.yaml:\d+$/ },
    { event: 'loaded', exception: 'B' },
    { event: 'loaded', exception: 'C' },
    { event: 'lapse', exception: 'C', old: { expires: '2026-11-30T12:00:10Z' }, time: '2026-11-30T12:00:20.000Z' },
    { event: 'renew', exception: 'A', old: { expires: '2026-12-31', expiresAt: '2027-01-01T00:00:00.000Z' }, new: { expires: '2027-03-31', expiresAt: '2027-04-01T00:00:00.000Z' } },
    { event: 'change', exception: 'B', old: { allow: ['tiktok'] }, new: { allow: ['tiktok', 'tiktok-ads'] } },
    { event: 'grant', exception: 'D', new: { clients: ['127.0.0.7'], expires: '2026-12-15', approvedBy: 'Speaker' } },
    { event: 'revoke', exception: 'B', old: { revoked: null, revokedBy: null }, new: { revoked: '2026-11-30', revokedBy: 'Clerk' } },
    { event: 'remove', exception: 'C', old: { expires: '2026-11-30T12:00:10Z' } },
    { event: 'change', exception: 'A', old: { reason: 'Inquiry' }, new: { reason: 'Inquiry, extended' } },
    { event: 'lapse', exception: 'D', old: { expires: '2026-12-15' } },
  ]);
  t.equal(events.length, 11, 'and nothing else: an unchanged record is not repeated, a revoked one does not also lapse');
  t.same(Object.keys(events[4]!.new as object).sort(), ['expires', 'expiresAt'], 'only the fields that changed');
});
