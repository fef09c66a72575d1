// Response Policy Zones (issue 21): the master-file reader, triggers and
// actions with file:line:col for what is wrong, then every trigger and action
// end to end through real sockets (c-ares and raw clients), reload, the
// last good zone, validate and check.
import t from 'tap';
import { parseZoneFile, parseTtl } from '../src/policy/rpz/zoneFile.js';
import { formatPrefix, parseReversedPrefix, triggerOf } from '../src/policy/rpz/triggers.js';
import { compileZone, type ZoneSpec } from '../src/policy/rpz/zone.js';
import { qnameRule } from '../src/policy/rpz/evaluate.js';

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
    return r === undefined ? undefined : `${data.rules[r]!.owner} ${data.rules[r]!.action}`;
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
  t.ok(data.wildcard.has('co.uk'), 'a marked public suffix is taken');
});
