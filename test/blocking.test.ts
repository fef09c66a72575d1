// Sinkholing: list syntax, suffix matching, every response mode and qtype,
// EDE, CNAME/HTTPS inspection, the bundled lists, hot reload, `check`.
import t from 'tap';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseList } from '../src/policy/listParser.js';
import { buildGeneration, decide } from '../src/policy/generation.js';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST } from './helpers/sinkhole.js';
import { buildQuery, decode, exchange, optOf, rcodeOf, udpExchange } from './helpers/dns.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const PROTOS = ['udp', 'tcp'] as const;
const LISTS = { blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] } };

t.test('list syntax: every accepted form, and file:line:col for the rest', async (t) => {
  const text = [
    '# comment',
    '! adblock comment',
    '',
    'tiktok.com',
    '||tiktokv.com^',
    '0.0.0.0 tiktokcdn.com',
    '127.0.0.1 a.example b.example   # two names, trailing comment',
    ':: v6hosts.example',
    '*.wild.example',
    'TikTok-Upper.COM.',
    'bücher.example',
    '0.0.0.0 localhost',
  ].join('\n');
  const { rules, problems } = parseList('l.txt', text);
  t.same(problems, []);
  t.same(
    rules.map((r) => `${r.subdomainsOnly ? '*.' : ''}${r.domain}@${r.line}`),
    ['tiktok.com@4', 'tiktokv.com@5', 'tiktokcdn.com@6', 'a.example@7', 'b.example@7', 'v6hosts.example@8', '*.wild.example@9', 'tiktok-upper.com@10', 'xn--bcher-kva.example@11'],
  );
  const bad = parseList('bad.txt', 'ok.example\n  tik tok.com\n||nocaret.com\nhttp://x.example/\n0.0.0.0 bad_name!.com\n*.\n');
  t.same(
    bad.problems.map((p) => `${p.file}:${p.line}:${p.col} ${p.code}`),
    ['bad.txt:2:3 SH_LIST_SYNTAX', 'bad.txt:3:1 SH_LIST_SYNTAX', 'bad.txt:4:1 SH_LIST_SYNTAX', 'bad.txt:5:9 SH_LIST_SYNTAX', 'bad.txt:6:3 SH_LIST_SYNTAX'],
  );
  t.match(bad.problems[0]?.message, /expected one rule per line/);
  t.match(bad.problems[1]?.message, /expected adblock syntax \|\|domain\^/);
});

t.test('suffix matching: the domain and below, never a substring', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, LISTS, { 'tiktok.txt': TIKTOK_LIST });
  const g = h.running.policy.current;
  const view = g.clients.view('127.0.0.1');
  const table: [string, boolean][] = [
    ['tiktok.com', true],
    ['a.b.tiktok.com', true],
    ['TikTok.COM.', true],
    ['x.tiktokv.com', true],
    ['p16.tiktokcdn.com', true],
    ['deep.x.wild.example', true],
    ['wild.example', false],
    ['nottiktok.com', false],
    ['tiktok.com.evil.example', false],
    ['tiktok.co', false],
    ['com', false],
  ];
  for (const [name, blocked] of table) {
    const d = decide(g, name.toLowerCase().replace(/\.$/, ''), view, Date.now());
    t.equal(d.decision, blocked ? 'blocked' : 'allowed', name);
  }
  const d = decide(g, 'www.tiktok.com', view, Date.now());
  t.match(d.match, { list: 'tiktok', rule: 'tiktok.com', line: 2 }, 'names the list, rule and line');
  t.match(d.match?.file, /tiktok\.txt$/);
});

t.test('response modes, over UDP and TCP, for every qtype', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const modes = [
    { mode: 'nxdomain', rcode: 3, a: undefined, aaaa: undefined, soa: true },
    { mode: 'nodata', rcode: 0, a: undefined, aaaa: undefined, soa: true },
    { mode: 'null-ip', rcode: 0, a: '0.0.0.0', aaaa: '::', soa: false },
    { mode: 'refused', rcode: 5, a: undefined, aaaa: undefined, soa: false },
    { mode: { a: '192.0.2.53', aaaa: '2001:db8::53' }, rcode: 0, a: '192.0.2.53', aaaa: '2001:db8::53', soa: false },
  ];
  for (const m of modes) {
    const label = typeof m.mode === 'string' ? m.mode : 'custom';
    const h = await startSinkhole(t, up.port, { blocking: { ...LISTS.blocking, response: m.mode, ttl: '42s' } }, { 'tiktok.txt': TIKTOK_LIST });
    for (const proto of PROTOS) {
      for (const [qt, type] of [['A', T.A], ['AAAA', T.AAAA], ['HTTPS', T.HTTPS], ['SVCB', T.SVCB], ['CNAME', T.CNAME], ['TXT', T.TXT], ['MX', 15]] as const) {
        const d = decode(await exchange(proto, h.port, buildQuery('www.TikTok.com', type, { id: 99 })));
        const what = `${label} ${proto} ${qt}`;
        t.equal(d.header.rcode, m.rcode, `${what}: rcode`);
        t.equal(d.header.id, 99, `${what}: id`);
        t.equal(d.header.ra, 1, `${what}: RA`);
        const expected = qt === 'A' ? m.a : qt === 'AAAA' ? m.aaaa : undefined;
        t.equal(d.answers[0]?.address, expected, `${what}: answer`);
        if (expected) t.equal(d.answers[0]?.ttl, 42, `${what}: blocking.ttl on the answer`);
        const hasSoa = m.soa || (m.rcode === 0 && !expected);
        if (hasSoa) t.match(d.authorities[0], { type: T.SOA, ttl: 42, minimum: 42 }, `${what}: SOA with minimum = blocking.ttl`);
        else t.equal(d.authorities.length, 0, `${what}: no SOA`);
      }
    }
  }
  t.equal(up.count(), 0, 'nothing blocked went upstream');
});

t.test('EDE 15 "Blocked" naming the list, when the query had EDNS', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, LISTS, { 'tiktok.txt': TIKTOK_LIST });
  for (const proto of PROTOS) {
    const d = decode(await exchange(proto, h.port, buildQuery('www.tiktok.com', T.A, { edns: 1232, dnssecOk: true })));
    const opt = optOf(d) as { rdata?: { code?: number; infoCode?: number; extraText?: string }[]; doFlag?: boolean; class?: number } | undefined;
    t.ok(opt, `${proto}: OPT echoed`);
    const ede = opt?.rdata?.find((o) => o.infoCode !== undefined);
    t.equal(ede?.infoCode, 15, `${proto}: EDE info-code 15 (Blocked, RFC 8914)`);
    t.match(ede?.extraText, /tiktok/, `${proto}: extra text names the list`);
    t.equal(opt?.doFlag, true, `${proto}: DO bit echoed (RFC 3225)`);
    const plain = decode(await exchange(proto, h.port, buildQuery('www.tiktok.com', T.A)));
    t.equal(plain.additionals.length, 0, `${proto}: no OPT without EDNS in the query (RFC 6891 §7)`);
  }
  // c-ares sees a sinkholed name as nonexistent.
  await t.rejects(h.resolver.resolve4('www.tiktok.com'), { code: 'ENOTFOUND' });
  await t.rejects(h.resolver.resolveAny('tiktok.com'), { code: 'ENOTFOUND' });
});

t.test('CNAME and HTTPS target inspection, fresh and cached', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('alias.example.test', {
    answers: [
      { name: 'alias.example.test', type: T.CNAME, domain: 'edge.tiktokcdn.com' },
      { name: 'edge.tiktokcdn.com', type: T.A, address: '198.51.100.1' },
    ],
  });
  up.on('chain.example.test', {
    answers: [
      { name: 'chain.example.test', type: T.CNAME, domain: 'hop1.example.net' },
      { name: 'hop1.example.net', type: T.CNAME, domain: 'hop2.example.org' },
      { name: 'hop2.example.org', type: T.CNAME, domain: 'v16.tiktokv.com' },
      { name: 'v16.tiktokv.com', type: T.A, address: '198.51.100.2' },
    ],
  });
  const httpsRdata = Buffer.concat([Buffer.from([0, 1]), Buffer.from('\x03svc\x06tiktok\x03com\x00', 'latin1')]);
  up.on('svc.example.test', { answers: [{ name: 'svc.example.test', type: T.HTTPS, data: httpsRdata }] });
  up.on('safe.example.test', {
    answers: [
      { name: 'safe.example.test', type: T.CNAME, domain: 'cdn.example.net' },
      { name: 'cdn.example.net', type: T.A, address: '198.51.100.3' },
    ],
  });
  const h = await startSinkhole(t, up.port, LISTS, { 'tiktok.txt': TIKTOK_LIST });
  for (const pass of ['fresh', 'cached']) {
    for (const proto of PROTOS) {
      for (const [name, type] of [['alias.example.test', T.A], ['chain.example.test', T.A], ['svc.example.test', T.HTTPS]] as const) {
        const r = await exchange(proto, h.port, buildQuery(name, type));
        t.equal(rcodeOf(r), 3, `${pass} ${proto}: ${name} reaches a blocked name → NXDOMAIN`);
        t.equal(decode(r).answers.length, 0, `${pass} ${proto}: ${name}: no upstream records leak`);
      }
      const ok = decode(await exchange(proto, h.port, buildQuery('safe.example.test', T.A)));
      t.equal(ok.answers.at(-1)?.address, '198.51.100.3', `${pass} ${proto}: a CNAME to an allowed name passes`);
    }
  }
  t.equal(up.count('alias.example.test'), 1, 'the second pass came from the cache and was still inspected');
  const off = await startSinkhole(t, up.port, { blocking: { ...LISTS.blocking, inspectCnames: false } }, { 'tiktok.txt': TIKTOK_LIST });
  t.equal(rcodeOf(await udpExchange(off.port, buildQuery('alias.example.test', T.A))), 0, 'inspectCnames: false lets the CNAME through');
});

t.test('bundled lists: TikTok blocked, the not-TikTok names untouched', async (t) => {
  const g = buildGeneration(join(ROOT, 'sinkhole.yaml'), 1);
  const view = g.clients.view('127.0.0.1');
  const shared = join(ROOT, '..', 'shared', 'data', 'not-tiktok.txt');
  const source = existsSync(shared) ? shared : join(import.meta.dirname, 'fixtures', 'not-tiktok.txt');
  const names = readFileSync(source, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  t.ok(names.length >= 80, `read ${names.length} names from ${source}`);
  for (const name of names) {
    const d = decide(g, name, view, Date.now());
    if (d.decision !== 'allowed') t.fail(`${name} is blocked by ${d.match?.list} rule ${d.match?.rule}`);
  }
  // Also against every list, enforced or not: a shared-CDN parent must never be a rule anywhere.
  for (const name of names) t.equal(g.matcher.findAll(name).length, 0, `${name} matches no rule in any bundled list`);
  for (const [name, list] of [['www.tiktok.com', 'tiktok'], ['v16-webapp.tiktokcdn.com', 'tiktok'], ['api16-normal-c-useast1a.tiktokv.com', 'tiktok'], ['business-api.tiktok.com', 'tiktok-ads'], ['tiktokpangle.us', 'tiktok-ads'], ['use-application-dns.net', 'bypass'], ['mask.icloud.com', 'bypass']] as const) {
    const d = decide(g, name, view, Date.now());
    t.equal(d.decision, 'blocked', `${name} is blocked`);
    t.equal(d.match?.list, list, `${name} by ${list}`);
  }
  t.equal(decide(g, 'www.capcut.com', view, Date.now()).decision, 'allowed', 'bytedance tier ships but is not enforced');
});

t.test('hot reload: good edits apply, bad edits keep the old policy', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, LISTS, { 'tiktok.txt': TIKTOK_LIST });
  const list = join(h.dir, 'tiktok.txt');
  const blocked = async (name: string): Promise<boolean> => rcodeOf(await udpExchange(h.port, buildQuery(name, T.A))) === 3;
  t.equal(await blocked('newapp.example'), false, 'not blocked yet');
  writeFileSync(list, `${TIKTOK_LIST}newapp.example\n`);
  t.same(h.running.reloader.reload('list'), [], 'reload succeeds');
  t.equal(await blocked('newapp.example'), true, 'a good edit takes effect without a restart');
  t.equal(h.running.policy.current.number, 2, 'generation 2');

  const bad: [string, () => void, RegExp][] = [
    ['a syntax error', () => writeFileSync(list, 'tiktok.com\nthis is not a rule\n'), /tiktok\.txt:2:1: expected one rule per line/],
    ['an empty file', () => writeFileSync(list, '# nothing left\n'), /tiktok\.txt:1:1: list "tiktok" has no rules/],
    ['a deleted file', () => rmSync(list), /cannot read .*tiktok\.txt: ENOENT/],
    ['a broken config', () => writeFileSync(h.configFile, readFileSync(h.configFile, 'utf8') + 'bogus: 1\n'), /sinkhole\.yaml:\d+:1: bogus: unknown key/],
  ];
  for (const [what, edit, message] of bad) {
    const config = readFileSync(h.configFile, 'utf8');
    edit();
    const problems = h.running.reloader.reload('list');
    t.match(problems.join('\n'), message, `${what}: the error names file:line:col`);
    t.equal(await blocked('newapp.example'), true, `${what}: the old policy still blocks`);
    t.equal(await blocked('www.tiktok.com'), true, `${what}: never opens the block`);
    t.equal(h.running.policy.current.number, 2, `${what}: generation unchanged`);
    writeFileSync(list, `${TIKTOK_LIST}newapp.example\n`);
    writeFileSync(h.configFile, config);
  }
  const config = readFileSync(h.configFile, 'utf8');
  writeFileSync(h.configFile, config.replace(/blocking:[\s\S]*?(?=\n\w|$)/, ''));
  t.match(h.running.reloader.reload('config').join('\n'), /enforce no rules at all; refusing to reload into an open policy/, 'a config without its blocking section is refused');
  t.equal(await blocked('www.tiktok.com'), true, 'and the block holds');
  writeFileSync(h.configFile, config);
  t.equal(h.running.stats.reloads.get('list|failure'), 4, 'failures counted');
});

t.test('hot reload by file watch: in-place writes and rename saves (vim, sed -i)', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, LISTS, { 'tiktok.txt': TIKTOK_LIST }, { watch: true });
  const list = join(h.dir, 'tiktok.txt');
  const waitGeneration = async (n: number): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (h.running.policy.current.number < n) {
      if (Date.now() > deadline) throw new Error(`generation ${n} never came`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  writeFileSync(list, `${TIKTOK_LIST}inplace.example\n`);
  await waitGeneration(2);
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('inplace.example', T.A))), 3, 'in-place write picked up');
  writeFileSync(`${list}.tmp`, `${TIKTOK_LIST}renamed.example\n`);
  renameSync(`${list}.tmp`, list);
  await waitGeneration(3);
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('renamed.example', T.A))), 3, 'rename save picked up');
  t.equal(h.running.stats.reloads.get('list|success'), 2, 'two list reloads');
});

t.test('20 reloads under query load: no query lost or wrongly answered', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, LISTS, { 'tiktok.txt': TIKTOK_LIST });
  let running = true;
  let answered = 0;
  const wrong: string[] = [];
  const client = async (name: string, expectBlocked: boolean): Promise<void> => {
    while (running) {
      const r = await udpExchange(h.port, buildQuery(name, T.A), 2000);
      answered++;
      if ((rcodeOf(r) === 3) !== expectBlocked) wrong.push(`${name} rcode ${rcodeOf(r)}`);
    }
  };
  const loops = [client('www.tiktok.com', true), client('allowed.example.test', false), client('x.tiktokv.com', true)];
  for (let i = 0; i < 20; i++) {
    writeFileSync(join(h.dir, 'tiktok.txt'), `${TIKTOK_LIST}gen${i}.example\n`);
    t.same(h.running.reloader.reload('list'), [], `reload ${i + 1}`);
    await new Promise((r) => setImmediate(r));
  }
  running = false;
  await Promise.all(loops);
  t.equal(h.running.policy.current.number, 21, '20 swaps');
  t.same(wrong, [], 'every answer was right');
  t.ok(answered > 20, `${answered} queries answered, none lost (a lost one would have thrown)`);
});

t.test('sinkhole check: decision, list, rule and file:line from the compiled policy', async (t) => {
  const cfg = join(ROOT, 'sinkhole.yaml');
  const r = spawnSync(process.execPath, [CLI, 'check', 'WWW.TikTok.com.', '--type', 'HTTPS', '--json', '--config', cfg], { encoding: 'utf8' });
  t.equal(r.status, 1, 'blocked: exit 1');
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  t.match(out, { decision: 'blocked', name: 'www.tiktok.com', type: 'HTTPS', list: 'tiktok', rule: 'tiktok.com', exception: null });
  t.match(out.source, /^blocklists\/tiktok\.txt:\d+$/);
  const allowed = spawnSync(process.execPath, [CLI, 'check', 'www.example.org', '--config', cfg], { encoding: 'utf8' });
  t.equal(allowed.status, 0, 'allowed: exit 0');
  t.match(allowed.stdout, /^allowed: www\.example\.org A/);
  const text = spawnSync(process.execPath, [CLI, 'check', 'm.tiktok.com', '--config', cfg], { encoding: 'utf8' });
  t.match(text.stdout, /blocked: m\.tiktok\.com A from 127\.0\.0\.1.*\n  list: tiktok  rule: tiktok\.com  source: blocklists\/tiktok\.txt:\d+/);
  const err = spawnSync(process.execPath, [CLI, 'check', 'x.example', '--type', 'BOGUS', '--config', cfg], { encoding: 'utf8' });
  t.equal(err.status, 2, 'error: exit 2');
});

t.test('reload requests are coalesced: a storm of SIGHUPs costs a reload or two, and the last edit still applies', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, LISTS, { 'tiktok.txt': TIKTOK_LIST });
  const reloads = (): number => h.running.stats.reloads.get('config|success') ?? 0;
  // 50 requests 20 ms apart, as `while true; do kill -HUP ...; sleep 0.02; done` sends them.
  for (let i = 0; i < 50; i++) {
    h.running.reloader.request('config');
    await new Promise((r) => setTimeout(r, 20));
  }
  writeFileSync(join(h.dir, 'tiktok.txt'), `${TIKTOK_LIST}last-edit.example\n`);
  h.running.reloader.request('config');
  const deadline = Date.now() + 5000;
  while (rcodeOf(await udpExchange(h.port, buildQuery('last-edit.example', T.A))) !== 3) {
    if (Date.now() > deadline) throw new Error('the last edit never applied');
    await new Promise((r) => setTimeout(r, 50));
  }
  t.pass('the request after the storm applied the last edit');
  t.ok(reloads() <= 4, `${reloads()} reloads for 51 requests over ~1 s (at most one per second)`);
  t.ok(reloads() >= 2, 'the first request was served at once, and the last one too');
});
