// src/policy/rpz/ (zoneFile.ts, triggers.ts, zone.ts, evaluate.ts, actions.ts, answer.ts) and
// src/stages/rpz.ts.
// Response Policy Zones (issue 21): the master-file reader, triggers and
// actions with file:line:col for what is wrong, then every trigger and action
// end to end through real sockets (c-ares and raw clients), reload, the
// last good zone, validate and check.
import t from 'tap';
import { parseZoneFile, parseTtl } from '../../../src/policy/rpz/zoneFile.js';
import { formatPrefix, parseReversedPrefix, triggerOf } from '../../../src/policy/rpz/triggers.js';
import { compileZone, nameRule, type ZoneSpec } from '../../../src/policy/rpz/zone.js';
import { qnameRule } from '../../../src/policy/rpz/evaluate.js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FakeUpstream, T } from '../../helpers/fakeUpstream.js';
import { startSinkhole } from '../../helpers/sinkhole.js';
import { buildQuery, decode, exchange, optOf, type Decoded } from '../../helpers/dns.js';

const CLI = join(import.meta.dirname, '..', '..', '..', 'dist', 'cli.js');

const SPEC: ZoneSpec = { name: 'feed', file: 'feed.zone', override: 'none' };

export const FEED = `; a threat feed, as BIND writes it
$TTL 300
$ORIGIN feed.rpz.test.
@   IN SOA ns.feed.rpz.test. hostmaster.feed.rpz.test. (
        2026072601 ; serial
        3600 600 86400
        60 )
    IN NS  ns.feed.rpz.test.
bad.example          CNAME .
*.bad.example        CNAME .
nodata.example       CNAME *.
pass.bad.example     CNAME rpz-passthru.
drop.example         CNAME rpz-drop.
tcp.example          CNAME rpz-tcp-only.
garden.example       CNAME walled.garden.test.
local.example        A     192.0.2.80
                     AAAA  2001:db8::80
                     TXT   "blocked by policy" "see the intranet"
32.99.2.0.192.rpz-ip                    CNAME .
24.0.100.51.198.rpz-ip                  CNAME *.
128.1.zz.db8.2001.rpz-ip                CNAME .
32.9.0.0.127.rpz-client-ip              CNAME rpz-drop.
ns.evil.example.rpz-nsdname             CNAME .
32.1.2.0.192.rpz-nsip                   CNAME .
`;

t.test('master-file reader: $ORIGIN, $TTL, @, relative and blank owners, parentheses, comments, quotes', async (t) => {
  const { records, problems } = parseZoneFile('feed.zone', FEED);
  t.same(problems, []);
  t.same(records.map((r) => `${r.owner} ${r.ttl} ${r.type} ${r.rdata.map((d) => d.text).join(' ')}`).slice(0, 4), [
    'feed.rpz.test 300 SOA ns.feed.rpz.test. hostmaster.feed.rpz.test. 2026072601 3600 600 86400 60',
    'feed.rpz.test 300 NS ns.feed.rpz.test.',
    'bad.example.feed.rpz.test 300 CNAME .',
    '*.bad.example.feed.rpz.test 300 CNAME .',
  ]);
  const local = records.filter((r) => r.owner === 'local.example.feed.rpz.test');
  t.same(local.map((r) => r.type), ['A', 'AAAA', 'TXT'], 'a blank owner is the previous one');
  t.same(local[2]!.rdata.map((d) => d.text), ['blocked by policy', 'see the intranet']);
  t.equal(records[0]!.line, 4);
  t.equal(parseTtl('1h30m'), 5400);
  t.equal(parseTtl('2w'), 1209600);
  t.equal(parseTtl('soon'), undefined);
  const classFirst = parseZoneFile('z', '$ORIGIN z.test.\n@ IN 60 SOA a. b. 1 2 3 4 5\nx 60 IN CNAME .\ny IN CNAME .\n');
  t.same(classFirst.problems, []);
  t.same(classFirst.records.map((r) => r.ttl), [60, 60, 60], 'TTL and class in either order; a record without a TTL takes the last one');
});

t.test('master-file reader: each bad line at file:line:col, saying what was expected', async (t) => {
  const bad = [
    '$ORIGIN feed.rpz.test.', // 1
    '@ SOA ns. host. 1 2 3 4 5', // 2: no TTL: the SOA's MINIMUM (RFC 2308 §4)
    '$TTL soon', // 3
    'x.example 300 CNAME .', // 4 fine
    'bad!name 300 CNAME .', // 5
    'y.example 300 IN BOGUS .', // 6
    'z.example 300 CH CNAME .', // 7
    '$INCLUDE other.zone', // 8
    'q.example 300 TXT "unterminated', // 9
    'r.example 300 A', // 10
    '   (', // 11, never closed
  ].join('\n');
  const { problems } = parseZoneFile('bad.zone', bad);
  t.same(problems.map((p) => `${p.file}:${p.line}:${p.col} ${p.code}`), [
    'bad.zone:3:6 SH_RPZ_SYNTAX',
    'bad.zone:5:1 SH_RPZ_SYNTAX',
    'bad.zone:6:18 SH_RPZ_SYNTAX',
    'bad.zone:7:15 SH_RPZ_SYNTAX',
    'bad.zone:8:1 SH_RPZ_SYNTAX',
    'bad.zone:9:19 SH_RPZ_SYNTAX',
    'bad.zone:10:15 SH_RPZ_SYNTAX',
    'bad.zone:11:4 SH_RPZ_SYNTAX',
  ]);
  t.match(problems[0]!.message, /expected \$TTL and one TTL/);
  t.match(problems[1]!.message, /expected an owner name/);
  t.match(problems[2]!.message, /expected a record type/);
  t.match(problems[3]!.message, /expected class IN/);
  t.match(problems[4]!.message, /\$INCLUDE is not supported/);
  t.match(problems[5]!.message, /closing "/);
  t.match(problems[6]!.message, /expected the A record's data/);
  t.match(problems[7]!.message, /expected "\)" to close/);
  t.equal(parseZoneFile('s', '$ORIGIN s.test.\n@ SOA ns. host. 1 2 3 4 5\nx CNAME .\n').records[1]!.ttl, 5, 'without $TTL the SOA MINIMUM is the default');
  t.match(parseZoneFile('n', '$ORIGIN n.test.\nx CNAME .\n').problems[0]!.message, /expected a TTL/);
  const noOrigin = parseZoneFile('n.zone', '$TTL 60\nrelative CNAME .\n');
  t.match(noOrigin.problems[0]!.message, /expected \$ORIGIN before the relative name "relative"/);
});

t.test('triggers: QNAME, wildcard, the reversed IPv4/IPv6 form with zz, client IP, NSDNAME/NSIP', async (t) => {
  t.same(triggerOf('bad.example'), { kind: 'qname', name: 'bad.example' });
  t.same(triggerOf('*.bad.example'), { kind: 'wildcard', name: 'bad.example' });
  const v4 = parseReversedPrefix(['24', '0', '2', '0', '192']);
  t.equal(typeof v4 === 'string' ? v4 : formatPrefix(v4), '192.0.2.0/24');
  const v6 = parseReversedPrefix(['128', '1', 'zz', 'db8', '2001']);
  t.equal(typeof v6 === 'string' ? v6 : formatPrefix(v6), '2001:db8::1/128');
  const full = parseReversedPrefix(['64', '0', '0', '0', '0', '0', '1', 'db8', '2001']);
  t.equal(typeof full === 'string' ? full : formatPrefix(full), '2001:db8:1::/64');
  const zzFirst = parseReversedPrefix(['48', 'zz', '2', 'db8', '2001']);
  t.equal(typeof zzFirst === 'string' ? zzFirst : formatPrefix(zzFirst), '2001:db8:2::/48');
  t.match(parseReversedPrefix(['24', '1', '2', '0', '192']), /bits set below \/24; write the network address \(192\.0\.2\.0\/24\)/);
  t.match(parseReversedPrefix(['33', '1', '2', '0', '192']), /prefix length from 1 to 32/);
  t.match(parseReversedPrefix(['128', '1', 'zz', 'zz', '2001']), /at most one "zz"/);
  t.match(parseReversedPrefix(['32', '1', '2', '192']), /expected an address written reversed/);
  t.match(triggerOf('32.9.0.0.127.rpz-client-ip'), { kind: 'client-ip' });
  t.same(triggerOf('ns.example.rpz-nsdname'), { kind: 'nsdname' });
  t.same(triggerOf('32.1.2.0.192.rpz-nsip'), { kind: 'nsip' });
  t.match(triggerOf('a.*.example'), /"\*" only as the whole first label/);
  t.match(triggerOf('x.rpz-unknown'), /rpz- label/);
});

t.test('a zone compiles into rules: actions, counts by trigger, serial, most specific QNAME', async (t) => {
  const { data, problems } = compileZone(SPEC, FEED);
  t.same(problems, []);
  t.equal(data.serial, 2026072601);
  t.equal(data.origin, 'feed.rpz.test');
  t.same(data.counts, { qname: 7, wildcard: 1, 'client-ip': 1, 'response-ip': 3, nsdname: 1, nsip: 1 });
  t.equal(data.unsupported, 2, 'NSDNAME and NSIP are counted, not applied');
  const action = (name: string): string | undefined => {
    const r = qnameRule(data, name);
    return r === undefined ? undefined : `${nameRule(data, r).owner} ${nameRule(data, r).action}`;
  };
  t.equal(action('bad.example'), 'bad.example nxdomain');
  t.equal(action('www.bad.example'), '*.bad.example nxdomain');
  t.equal(action('pass.bad.example'), 'pass.bad.example passthru', 'an exact name wins over the wildcard');
  t.equal(action('nodata.example'), 'nodata.example nodata');
  t.equal(action('drop.example'), 'drop.example drop');
  t.equal(action('tcp.example'), 'tcp.example tcp-only');
  t.equal(action('garden.example'), 'garden.example local');
  t.equal(action('local.example'), 'local.example local');
  t.equal(action('notbad.example'), undefined);
  t.equal(action('example'), undefined);
});

t.test('zone problems: no SOA, CNAME with other data, bad local data, outside the origin, guard rails', async (t) => {
  const noSoa = compileZone(SPEC, '$TTL 60\n$ORIGIN z.test.\nx CNAME .\n');
  t.match(noSoa.problems, [{ code: 'SH_RPZ_SYNTAX', line: 3, col: 1, message: /expected the zone's SOA record first/ }]);
  const text = [
    '$TTL 60',
    '$ORIGIN z.test.',
    '@ SOA ns. host. 7 1 1 1 1',
    'mixed CNAME .', // 4
    'mixed A 192.0.2.1', // 5
    'badip A 300.1.1.1', // 6
    'mx MX 10 mail.example.', // 7
    'other.example. CNAME .', // 8
    '*.com CNAME .', // 9
    '*.co.uk CNAME . ; sinkhole:allow-public-suffix', // 10
    '4.0.0.0.16.rpz-ip CNAME .', // 11
    '4.0.0.0.32.rpz-ip CNAME . ; sinkhole:allow-wide-prefix', // 12
    '24.1.2.0.192.rpz-ip CNAME .', // 13
    'w CNAME *.garden.example.', // 14
  ].join('\n');
  const { data, problems } = compileZone(SPEC, text);
  t.same(problems.map((p) => `${p.line}:${p.col} ${p.code}`), [
    '5:1 SH_RPZ_SYNTAX', '6:9 SH_RPZ_SYNTAX', '7:1 SH_RPZ_SYNTAX', '8:1 SH_RPZ_SYNTAX', '9:1 SH_LIST_PUBLIC_SUFFIX', '11:1 SH_RPZ_SYNTAX', '13:1 SH_RPZ_SYNTAX',
  ]);
  t.match(problems[0]!.message, /a CNAME action cannot be combined with other records/);
  t.match(problems[1]!.message, /expected one IPv4 address/);
  t.match(problems[2]!.message, /expected local data of type A, AAAA or TXT/);
  t.match(problems[3]!.message, /expected a name under the zone's origin z\.test\./);
  t.match(problems[4]!.message, /"com" is a public suffix.*"; sinkhole:allow-public-suffix"/);
  t.match(problems[5]!.message, /16\.0\.0\.0\/4 is wider than any one network's allocation/);
  t.equal(data.serial, 7);
  t.equal(data.unsupported, 1, 'CNAME *.garden.example is counted as unsupported');
  t.equal(qnameRule(data, 'www.co.uk') === undefined ? undefined : nameRule(data, qnameRule(data, 'www.co.uk')!).owner, '*.co.uk', 'a marked public suffix is taken');
});

t.test('records at one owner are one RRset wherever they are written (RFC 2181 §5), the compact ones too', async (t) => {
  const text = [
    '$TTL 60',
    '$ORIGIN z.test.',
    '@ SOA ns. host. 7 1 1 1 1',
    'a.example CNAME .', // 4: kept as its action only, until line 8
    'local.example A 192.0.2.1', // 5
    'b.example.z.test. CNAME .', // 6: the same, written absolute
    'local.example AAAA 2001:db8::1', // 7: joins line 5
    'a.example A 192.0.2.2', // 8
    'b.example.z.test. CNAME rpz-passthru.', // 9
    'c.example CNAME rpz-passthru.', // 10
    '*.c.example CNAME .', // 11
  ].join('\n');
  const { data, problems } = compileZone(SPEC, text);
  t.same(problems.map((p) => `${p.line}:${p.col} ${p.message.split(':')[0]}`), [
    '8:1 expected one CNAME alone at a.example',
    '9:1 expected one CNAME alone at b.example.z.test.',
  ], 'a CNAME written alone, then joined by a later record, is refused naming the owner as written');
  t.same(data.counts, { qname: 4, wildcard: 1, 'client-ip': 0, 'response-ip': 0, nsdname: 0, nsip: 0 }, 'one trigger per owner, however often written');
  const local = nameRule(data, qnameRule(data, 'local.example')!);
  t.same([local.action, local.line, local.records?.map((r) => r.type)], ['local', 5, [1, 28]], 'local data from two places is one answer');
  t.equal(qnameRule(data, 'a.example'), undefined, 'a refused RRset applies nothing');
  t.equal(nameRule(data, qnameRule(data, 'www.c.example')!).owner, '*.c.example');
  t.equal(nameRule(data, qnameRule(data, 'c.example')!).action, 'passthru');
});

// --- End to end: real sockets on 127.0.0.1, a fake upstream, raw clients and c-ares. ---

const RPZ_CONFIG = { blocking: { rpz: [{ name: 'feed', file: 'feed.zone' }], enforce: ['feed'], ttl: '30s' } };

async function ask(port: number, name: string, type: number, proto: 'udp' | 'tcp' = 'udp', from?: string): Promise<Decoded | undefined> {
  try {
    return decode(await exchange(proto, port, buildQuery(name, type, { edns: 1232 }), from));
  } catch {
    return undefined;
  }
}

const ede = (d: Decoded | undefined): string | undefined => optOf(d!)?.rdata?.find((o) => o.code === 15 || o.ednsCode === 15)?.extraText;
type Rec = { type: number; address?: string; domain?: string; data?: string[]; ttl: number };
/** The answer section as text; the TTL only for sinkhole's own records (a forwarded one counts down in the cache). */
const answerText = (d: Decoded | undefined): string[] =>
  ((d?.answers ?? []) as unknown as Rec[]).map((a) =>
    `${a.type === T.CNAME ? 'CNAME' : a.type === T.TXT ? 'TXT' : a.type === T.AAAA ? 'AAAA' : 'A'} ${a.address ?? a.domain ?? (a.data ?? []).join('|')}${a.ttl === 30 ? ' 30' : ''}`,
  );

t.test('every QNAME action end to end, over UDP and TCP, with EDE 15 on each rewrite', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('*', { echoEdns: true });
  const h = await startSinkhole(t, up.port, RPZ_CONFIG, { 'feed.zone': FEED });
  const nx = await ask(h.port, 'bad.example', T.A);
  t.equal(nx?.header.rcode, 3, 'CNAME . is NXDOMAIN');
  t.equal(ede(nx), 'blocked by sinkhole rpz "feed" (bad.example)');
  t.equal((await ask(h.port, 'deep.www.bad.example', T.AAAA, 'tcp'))?.header.rcode, 3, '*. wildcard, over TCP');
  const pass = await ask(h.port, 'pass.bad.example', T.A);
  t.same(answerText(pass), ['A 192.0.2.10'], 'rpz-passthru answers from upstream');
  t.equal(ede(pass), undefined, 'a passthru carries no EDE');
  const nodata = await ask(h.port, 'nodata.example', T.A);
  t.equal(nodata?.header.rcode, 0);
  t.same(answerText(nodata), [], 'CNAME *. is NODATA');
  t.match(ede(nodata), /nodata\.example/);
  t.equal(await ask(h.port, 'drop.example', T.A), undefined, 'rpz-drop: no answer over UDP');
  t.equal(await ask(h.port, 'drop.example', T.A, 'tcp'), undefined, 'nor over TCP');
  const tc = await exchange('udp', h.port, buildQuery('tcp.example', T.A, { edns: 1232 }));
  t.ok((tc[2]! & 0x02) !== 0, 'rpz-tcp-only: TC over UDP');
  t.same(answerText(await ask(h.port, 'tcp.example', T.A, 'tcp')), ['A 192.0.2.10'], 'and the real answer over TCP');
  t.same(answerText(await ask(h.port, 'garden.example', T.AAAA)), ['CNAME walled.garden.test 30'], 'a CNAME to a walled garden, whatever the type, with blocking.ttl');
  t.same(answerText(await ask(h.port, 'local.example', T.A)), ['A 192.0.2.80 30'], 'local data as written');
  t.same(answerText(await ask(h.port, 'local.example', T.AAAA, 'tcp')), ['AAAA 2001:db8::80 30']);
  t.same(answerText(await ask(h.port, 'local.example', T.TXT)), ['TXT blocked by policy|see the intranet 30']);
  const mx = await ask(h.port, 'local.example', 15);
  t.same([mx?.header.rcode, answerText(mx)], [0, []], 'a type the local data lacks is NODATA');
  t.same(await h.resolver.resolve4('local.example'), ['192.0.2.80'], 'c-ares reads the local data');
  await t.rejects(h.resolver.resolve4('bad.example'), { code: 'ENOTFOUND' }, 'c-ares sees NXDOMAIN');
  t.equal(up.count('bad.example') + up.count('local.example') + up.count('drop.example') + up.count('nodata.example'), 0, 'no QNAME rewrite went upstream');
  const rewrites = h.running.stats.rpzRewrites;
  t.equal(rewrites.get('feed|nxdomain'), 3);
  t.equal(rewrites.get('feed|drop'), 2);
  t.equal(rewrites.get('feed|passthru'), 2, 'passthru and tcp-only over TCP');
  const metrics = await h.running.registry.metrics();
  t.match(metrics, /sinkhole_rpz_serial\{zone="feed"\} 2026072601/);
  t.match(metrics, /sinkhole_rpz_records\{zone="feed",trigger="response-ip"\} 3/);
  t.match(metrics, /sinkhole_rpz_records\{zone="feed",trigger="nsdname"\} 1/);
  t.match(metrics, /sinkhole_rpz_rewrites_total\{zone="feed",action="local"\} 6/);
  t.match(metrics, /sinkhole_blocked_total\{list="feed"\} \d+/);
});

t.test('response IP: every A/AAAA of the answer after the CNAME chain, cached answers too; client IP', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('ip.example', { answers: [{ name: 'ip.example', type: T.A, address: '192.0.2.99' }] });
  up.on('chain.example', {
    answers: [
      { name: 'chain.example', type: T.CNAME, domain: 'edge.cdn.test' },
      { name: 'edge.cdn.test', type: T.A, address: '203.0.113.5' },
      { name: 'edge.cdn.test', type: T.A, address: '198.51.100.7' },
    ],
  });
  up.on('v6.example', { answers: [{ name: 'v6.example', type: T.AAAA, address: '2001:db8::1' }] });
  up.on('near.example', { answers: [{ name: 'near.example', type: T.AAAA, address: '2001:db8::2' }] });
  const h = await startSinkhole(t, up.port, RPZ_CONFIG, { 'feed.zone': FEED });
  const ip = await ask(h.port, 'ip.example', T.A);
  t.equal(ip?.header.rcode, 3, '192.0.2.99/32 in the answer: NXDOMAIN');
  t.match(ede(ip), /32\.99\.2\.0\.192\.rpz-ip/);
  t.equal((await ask(h.port, 'ip.example', T.A, 'tcp'))?.header.rcode, 3, 'the cached answer is judged again');
  t.equal(up.count('ip.example'), 1, 'from the cache: the cache is not bypassed');
  const chain = await ask(h.port, 'chain.example', T.A);
  t.same([chain?.header.rcode, answerText(chain)], [0, []], 'an address behind a CNAME, second in the RRset: NODATA');
  t.equal((await ask(h.port, 'v6.example', T.AAAA))?.header.rcode, 3, 'IPv6 in the zz form');
  t.same(answerText(await ask(h.port, 'near.example', T.AAAA)), ['AAAA 2001:db8::2'], 'a neighbour of a /128 passes');
  t.same(answerText(await ask(h.port, 'clean.example', T.A)), ['A 192.0.2.10']);
  t.equal(await ask(h.port, 'clean.example', T.A, 'udp', '127.0.0.9'), undefined, 'rpz-client-ip: 127.0.0.9 gets no answer for any name');
  t.same(answerText(await ask(h.port, 'clean.example', T.A, 'udp', '127.0.0.8')), ['A 192.0.2.10'], 'its neighbour does');
});

t.test('precedence: zones in order, the first match wins, an earlier response-IP rule beats a later QNAME rule; overrides; exceptions', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('ipfirst.example', { answers: [{ name: 'ipfirst.example', type: T.A, address: '192.0.2.55' }] });
  const first = '$TTL 60\n$ORIGIN first.rpz.test.\n@ SOA ns. host. 5 1 1 1 1\nok.example CNAME rpz-passthru.\n32.55.2.0.192.rpz-ip CNAME *.\nlogged.example CNAME .\n';
  const second = '$TTL 60\n$ORIGIN second.rpz.test.\n@ SOA ns. host. 6 1 1 1 1\nok.example CNAME .\nipfirst.example CNAME .\nlogged.example A 192.0.2.44\nforced.example A 192.0.2.45\n';
  const config = {
    blocking: {
      rpz: [{ name: 'first', file: 'first.zone', override: 'none' }, { name: 'second', file: 'second.zone', override: 'nodata' }, { name: 'quiet', file: 'quiet.zone', override: 'disabled' }],
      enforce: ['quiet', 'first', 'second'],
    },
    exceptions: [{ id: 'EX-1', clients: ['127.0.0.5'], allow: ['first'], reason: 'test', approvedBy: 'ops', expires: '2099-12-31' }],
  };
  const quiet = '$TTL 60\n$ORIGIN quiet.rpz.test.\n@ SOA ns. host. 7 1 1 1 1\nquiet.example CNAME .\n';
  const h = await startSinkhole(t, up.port, config, { 'first.zone': first, 'second.zone': second, 'quiet.zone': quiet });
  t.same(answerText(await ask(h.port, 'ok.example', T.A)), ['A 192.0.2.10'], 'a passthru in the first zone stops the second');
  const ipFirst = await ask(h.port, 'ipfirst.example', T.A);
  t.same([ipFirst?.header.rcode, answerText(ipFirst)], [0, []], "the first zone's response-IP rule (NODATA) beats the second zone's QNAME rule");
  t.match(ede(ipFirst), /"first"/);
  const forced = await ask(h.port, 'forced.example', T.A);
  t.same([forced?.header.rcode, answerText(forced)], [0, []], 'override: nodata replaces the local data');
  t.same(answerText(await ask(h.port, 'quiet.example', T.A)), ['A 192.0.2.10'], 'override: disabled lets the query through');
  t.equal(h.running.stats.rpzRewrites.get('quiet|disabled'), 1, 'and only counts the match');
  const excepted = await ask(h.port, 'ok.example', T.A, 'udp', '127.0.0.5');
  t.same([excepted?.header.rcode, answerText(excepted)], [0, []], "an exception for the first zone skips its passthru: the second zone's rule (override nodata) applies");
  t.match(ede(excepted), /"second"/);
  const logged = await ask(h.port, 'logged.example', T.A, 'udp', '127.0.0.5');
  t.same([logged?.header.rcode, answerText(logged)], [0, []], 'and the second zone (override nodata) rewrites what the first would have');
});

t.test('a broken zone keeps the last good one in force, with file:line:col; a fixed one reloads; validate and check explain', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, { ...RPZ_CONFIG, blocking: { ...RPZ_CONFIG.blocking, lists: { tiktok: ['tiktok.txt'] }, enforce: ['feed', 'tiktok'] } }, { 'feed.zone': FEED, 'tiktok.txt': 'tiktok.com\n' });
  h.write('feed.zone', FEED.replace('2026072601', '2026072602') + 'broken.example CNAME\n');
  const problems = await h.running.reloader.reload('list');
  t.match(problems, [/feed\.zone:25:16: expected the CNAME record's data after its type/]);
  t.equal((await ask(h.port, 'bad.example', T.A))?.header.rcode, 3, 'the last good zone stays in force');
  t.equal(h.running.policy.current.rpzZones[0]!.serial, 2026072601);
  h.write('feed.zone', FEED.replace('2026072601', '2026072602').replace('bad.example          CNAME .', 'bad.example          CNAME rpz-passthru.'));
  t.same(await h.running.reloader.reload('list'), []);
  t.equal(h.running.policy.current.rpzZones[0]!.serial, 2026072602, 'the new serial is in force');
  t.same(answerText(await ask(h.port, 'bad.example', T.A)), ['A 192.0.2.10']);

  const cli = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, [CLI, ...args, '--config', h.configFile], { cwd: h.dir, encoding: 'utf8' });
  const ok = cli('validate');
  t.equal(ok.status, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, /SH_RPZ_UNSUPPORTED feed\.zone:\d+:1: warning: RPZ "feed": 2 record\(s\) are counted but not applied/);
  t.match(ok.stdout, /tiktok=1 feed=12 \(rpz feed serial 2026072602\)/);
  const www = cli('check', 'www.bad.example');
  t.equal(www.status, 1);
  t.match(www.stdout, /^blocked: www\.bad\.example A/);
  t.match(www.stdout, /rpz: feed {2}owner: \*\.bad\.example {2}action: nxdomain {2}serial: 2026072602 {2}source: feed\.zone:10/);
  const byIp = cli('check', 'anything.example', '--answer', '192.0.2.99', '--json');
  t.match(JSON.parse(byIp.stdout), { decision: 'blocked', rpz: { zone: 'feed', owner: '32.99.2.0.192.rpz-ip', trigger: 'response-ip', action: 'nxdomain', prefix: '192.0.2.99/32', address: '192.0.2.99', serial: 2026072602 } });
  const text = cli('check', 'anything.example', '--answer', '192.0.2.99');
  t.match(text.stdout, /triggered by an answer holding 192\.0\.2\.99 \(in 192\.0\.2\.99\/32\)/);
  const clean = cli('check', 'anything.example');
  t.match(clean.stdout, /try --answer IP/);
  h.write('feed.zone', 'garbage line here\n');
  const bad = cli('validate');
  t.equal(bad.status, 1);
  t.match(bad.stdout, /SH_RPZ_SYNTAX feed\.zone:1:\d+: /);
  // 300,000 bad lines: the problems were appended with push(...), past the stack's limit (SH_INTERNAL).
  h.write('feed.zone', `$ORIGIN feed.rpz.example.\n@ SOA ns. h. 1 60 10 600 60\n${Array.from({ length: 300_000 }, (_, i) => `x${i}.rpz-bad CNAME .\n`).join('')}`);
  const many = cli('validate');
  t.equal(many.status, 1, `a zone of 300,000 bad lines is a problem report, not a crash ${many.stderr}`);
  t.notMatch(many.stdout + many.stderr, /SH_INTERNAL/);
  t.match(many.stdout, /feed\.zone:\d+:1: … and 299,900 more problems in this file \(the first 100 are listed\)/);
});
