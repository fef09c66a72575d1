// Identity (issue 11): lease files → devices, policy by MAC and hostname,
// EDNS Client Subnet and the MAC option from trusted relays only, and the
// CLI's view of it (check --client MAC, validate's warnings).
import t from 'tap';
import { once } from 'node:events';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { FakeClock, startSinkhole, TIKTOK_LIST, type Harness } from './helpers/sinkhole.js';
import { buildQuery, exchange, rcodeOf } from './helpers/dns.js';
import { parseLeases } from '../src/identity/leaseFormats.js';
import { IdentityTable } from '../src/identity/table.js';
import { normalizeMac, parseSelector } from '../src/identity/mac.js';
import { stripIdentityOptions } from '../src/stages/relay.js';
import { decodeQuery } from '../src/dns/query.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const NOW = Date.UTC(2026, 10, 28, 12, 0, 0);
const S = NOW / 1000;
const MAC1 = '02:00:00:00:00:01';
const MAC2 = '02:00:00:00:00:02';
const MAC3 = '02:00:00:00:00:03';
const KEA_HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n';
const kea = (ip: string, mac: string, host: string, opts: { start?: number; life?: number; state?: number } = {}): string => {
  const life = opts.life ?? 3600;
  const start = opts.start ?? S - 60;
  return `${ip},${mac},,${life},${start + life},1,0,0,${host},${opts.state ?? 0},,0\n`;
};

async function run(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    return { status: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { status: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

t.test('lease formats: each reader maps addresses to devices and names a bad line file:line:col', async (t) => {
  const cases = [
    {
      format: 'kea-csv' as const,
      text: KEA_HEADER + kea('10.20.1.17', 'AA:BB:CC:DD:EE:01', 'Phone.') + kea('10.20.1.18', '', 'v6only') + kea('10.20.1.19', 'aa:bb:cc:dd:ee:03', 'gone', { life: 0 }) + kea('10.20.1.20', 'aa:bb:cc:dd:ee:04', 'declined', { state: 1 }),
      want: [
        ['10.20.1.17', 'aa:bb:cc:dd:ee:01', 'phone', true],
        ['10.20.1.18', '', 'v6only', true],
        ['10.20.1.19', 'aa:bb:cc:dd:ee:03', 'gone', false],
        ['10.20.1.20', 'aa:bb:cc:dd:ee:04', 'declined', false],
      ],
      bad: KEA_HEADER + kea('10.20.1.17', 'aa:bb:cc:dd:ee:01', 'x') + '10.20.1.300,aa:bb:cc:dd:ee:01,,3600,1,1,0,0,x,0,,0\n',
      badAt: ':3:1: expected an IP address in column "address"',
    },
    {
      format: 'dnsmasq' as const,
      text: `${S + 3600} aa:bb:cc:dd:ee:01 10.20.1.17 phone 01:aa:bb:cc:dd:ee:01\n0 aa-bb-cc-dd-ee-02 10.20.1.18 * *\nduid 00:01:00:01:2c:1f\n${S + 60} 1234567 2001:db8::17 laptop 00:01\n`,
      want: [
        ['10.20.1.17', 'aa:bb:cc:dd:ee:01', 'phone', true],
        ['10.20.1.18', 'aa:bb:cc:dd:ee:02', '', true],
        ['2001:db8::17', '', 'laptop', true],
      ],
      bad: `${S} aa:bb:cc:dd:ee:01 10.20.1.17 phone *\nsoon aa:bb:cc:dd:ee:01 10.20.1.17 phone *\n`,
      badAt: ':2:1: expected the lease expiry as a Unix time, got "soon"',
    },
    {
      format: 'dhcpd' as const,
      text: `# The format of this file is documented in the dhcpd.leases(5) manual page.
authoring-byte-order little-endian;
lease 10.20.1.17 {
  starts 6 2026/11/28 11:00:00;
  ends 6 2026/11/28 23:00:00;
  binding state active;
  next binding state free;
  hardware ethernet aa:bb:cc:dd:ee:01;
  uid "\\001\\252\\273";
  client-hostname "Phone";
}
lease 10.20.1.18 {
  starts epoch 1764327600; # Fri Nov 28 11:00:00 2026
  ends never;
  binding state free;
  hardware ethernet aa:bb:cc:dd:ee:02;
}
lease 10.20.1.19 {
  starts 6 2026/11/28`,
      want: [
        ['10.20.1.17', 'aa:bb:cc:dd:ee:01', 'phone', true],
        ['10.20.1.18', 'aa:bb:cc:dd:ee:02', '', false],
      ],
      bad: 'lease 10.20.1.17 {\n  starts 6 yesterday;\n}\n',
      badAt: ':2:3: expected "starts W YYYY/MM/DD HH:MM:SS;"',
    },
    {
      format: 'csv' as const,
      text: '"IP Address","MAC Address","Host Name"\n10.20.1.17,AA-BB-CC-DD-EE-01,phone\n"10.20.1.18","aa:bb:cc:dd:ee:02",""\n',
      want: [
        ['10.20.1.17', 'aa:bb:cc:dd:ee:01', 'phone', true],
        ['10.20.1.18', 'aa:bb:cc:dd:ee:02', '', true],
      ],
      bad: '10.20.1.17,aa:bb:cc:dd:ee:01,phone\n10.20.1.18,not-a-mac,laptop\n',
      badAt: ':2:12: expected a MAC address like aa:bb:cc:dd:ee:ff, got "not-a-mac"',
    },
  ];
  for (const c of cases) {
    const r = parseLeases(c.format, `/leases/${c.format}`, c.text);
    t.same(r.problems, [], `${c.format}: no problems`);
    t.same(r.leases.map((l) => [l.ip, l.mac, l.hostname, l.active]), c.want, `${c.format}: leases`);
    const bad = parseLeases(c.format, `/leases/${c.format}`, c.bad);
    t.match(bad.problems[0], { code: 'SH_LEASES_INVALID' }, `${c.format}: bad line has a code`);
    t.ok(`${bad.problems[0]?.file}:${bad.problems[0]?.line}:${bad.problems[0]?.col}: ${bad.problems[0]?.message}`.includes(`/leases/${c.format}${c.badAt}`), `${c.format}: ${bad.problems[0]?.message}`);
  }
  const dhcpd = parseLeases('dhcpd', 'f', cases[2]!.text).leases[0]!;
  t.equal(dhcpd.start, Date.UTC(2026, 10, 28, 11), 'dhcpd times are UTC');
  t.equal(parseLeases('kea-csv', 'f', KEA_HEADER + kea('10.0.0.1', MAC1, 'x').trimEnd()).leases.length, 0, 'a row still being appended (no newline yet) waits for the next read');
  t.match(parseLeases('kea-csv', 'f', 'ip,mac\n10.0.0.1,x\n').problems[0], { line: 1, message: /missing address, hwaddr, valid_lifetime, expire/ }, 'a file that is not a memfile');
  t.equal(normalizeMac('AABB.CCDD.EEFF'), undefined);
  t.equal(normalizeMac('aabbccddeeff'), 'aa:bb:cc:dd:ee:ff');
  t.match(parseSelector('mac:zz'), /expected mac: and a MAC/);
  t.same(parseSelector('host:Speaker-iPad'), { kind: 'host', host: 'speaker-ipad' });
});

t.test('device table: last row wins, released and expired leases map nothing, a device that moved leaves its address, history remembers', async (t) => {
  const leases = (text: string) => parseLeases('kea-csv', 'f', KEA_HEADER + text).leases;
  const statics = new Map([[MAC3, 'speaker-ipad']]);
  const t1 = IdentityTable.build(
    [leases(kea('10.0.0.1', MAC1, 'phone', { start: S - 600 }) + kea('10.0.0.2', MAC2, 'laptop') + kea('10.0.0.3', MAC3, 'ipad') + kea('10.0.0.4', MAC1, 'phone', { start: S - 300, life: 0 }))],
    statics, NOW,
  );
  t.match(t1.lookup('10.0.0.1', NOW), { mac: MAC1, hostname: 'phone' });
  t.match(t1.lookup('10.0.0.3', NOW), { mac: MAC3, hostname: 'speaker-ipad', leaseHostname: 'ipad' }, 'identity.static names the device');
  t.equal(t1.lookup('10.0.0.4', NOW), undefined, 'a deleted lease maps nothing');
  t.equal(t1.lookup('10.0.0.1', NOW + 3600_000), undefined, 'an expired lease maps nothing: fail-closed on time');
  t.equal(t1.lookup('10.0.0.1', NOW - 3600_000), undefined, 'nor before it began');
  t.ok(t1.knowsHost('speaker-ipad') && t1.knowsHost('ipad') && t1.knowsMac(MAC3));
  // MAC1 takes a new lease at .5, while its lease on .1 has not run out.
  const t2 = IdentityTable.build(
    [leases(kea('10.0.0.1', MAC1, 'phone', { start: S - 600 }) + kea('10.0.0.2', MAC2, 'laptop') + kea('10.0.0.5', MAC1, 'phone', { start: S + 60 }))],
    statics, NOW + 120_000, t1,
  );
  t.equal(t2.lookup('10.0.0.1', NOW + 120_000), undefined, 'the old address no longer speaks for the device that left it');
  t.match(t2.lookup('10.0.0.5', NOW + 120_000), { mac: MAC1 });
  t.match(t2.deviceAt('10.0.0.1', NOW - 30_000), { mac: MAC1 }, 'history: who had .1 before the move');
  t.equal(t2.deviceAt('10.0.0.1', NOW + 90_000), undefined, 'and nobody after it');
  t.match(t2.deviceAt('10.0.0.3', NOW), { mac: MAC3, hostname: 'speaker-ipad' }, 'history kept from the previous table though the row is gone');
  t.match(t2.byMac(MAC3), { ip: '', hostname: 'speaker-ipad' }, 'a static device without a lease is known by MAC');
  // A lease for an address handed to another device: the last row wins.
  const t3 = IdentityTable.build([leases(kea('10.0.0.1', MAC1, 'phone', { start: S - 600 }) + kea('10.0.0.1', MAC2, 'laptop', { start: S - 10 }))], new Map(), NOW);
  t.match(t3.lookup('10.0.0.1', NOW), { mac: MAC2 });
  t.match(t3.deviceAt('10.0.0.1', NOW - 300_000), { mac: MAC1 }, 'the row before says who had it earlier');
});

const CONFIG = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
  clients: { allowFrom: ['127.0.0.0/16'], groups: { 'press-devices': [`mac:${MAC2}`] } },
  identity: { leases: [{ format: 'kea-csv', file: 'leases.csv' }], static: { [MAC3]: 'Speaker-iPad' } },
  exceptions: [
    { id: 'EX-MAC', clients: [`mac:${MAC1}`], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
    { id: 'EX-HOST', clients: ['host:speaker-ipad'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
    { id: 'EX-GROUP', clients: ['press-devices'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
  ],
  ...extra,
});

async function ask(h: Harness, from: string, proto: 'udp' | 'tcp' = 'udp', q = buildQuery('www.tiktok.com', T.A)): Promise<number> {
  return rcodeOf(await exchange(proto, h.port, q, from));
}

t.test('an exception by MAC follows the device across addresses and stops at the one it left; a broken lease file changes nothing', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock(NOW);
  const h = await startSinkhole(t, up.port, CONFIG(), {
    'tiktok.txt': TIKTOK_LIST,
    'leases.csv': KEA_HEADER + kea('127.0.0.21', MAC1, 'phone') + kea('127.0.0.22', 'aa:00:00:00:00:99', 'other') + kea('127.0.0.23', MAC3, 'ipad') + kea('127.0.0.24', MAC2, 'laptop'),
  }, { clock, watch: true });
  const identity = h.running.identity;
  for (const proto of ['udp', 'tcp'] as const) {
    t.equal(await ask(h, '127.0.0.21', proto), 0, `${proto}: MAC1 at .21 is excepted`);
    t.equal(await ask(h, '127.0.0.22', proto), 3, `${proto}: another device at .22 is blocked`);
    t.equal(await ask(h, '127.0.0.23', proto), 0, `${proto}: host: matches identity.static's name`);
    t.equal(await ask(h, '127.0.0.24', proto), 0, `${proto}: a group with a mac: member`);
  }
  // DHCP moves MAC1 to .22 and gives .21 to someone else (Kea appends rows; the watcher sees it).
  clock.advance(60_000);
  const swapped = once(identity, 'swap');
  appendFileSync(join(h.dir, 'leases.csv'), kea('127.0.0.22', MAC1, 'phone', { start: S + 30 }) + kea('127.0.0.21', 'aa:00:00:00:00:98', 'guest', { start: S + 40 }));
  await swapped;
  t.equal(await ask(h, '127.0.0.22'), 0, 'the exception followed MAC1 to .22');
  t.equal(await ask(h, '127.0.0.21'), 3, 'and stopped applying at .21');
  // A half-broken write: the last good leases stay in force, the failure is counted and named.
  const rejected = once(identity, 'swap');
  appendFileSync(join(h.dir, 'leases.csv'), '127.0.0.21,02:00:00:00:00:01,,3600,notatime,1,0,0,evil,0,,0\n');
  await rejected;
  t.equal(await ask(h, '127.0.0.21'), 3, 'a broken file never widens access');
  t.equal(await ask(h, '127.0.0.22'), 0, 'nor narrows what was there');
  t.match(identity.sources()[0]!.problems[0], /leases\.csv:8:36: expected a Unix time in column "expire"/);
  const metrics = await h.running.registry.metrics();
  t.match(metrics, /sinkhole_identity_reloads_total\{format="kea-csv",result="failure"\} 1/);
  t.match(metrics, /sinkhole_identity_devices 4/);
  // Fixed: the file is read again and the release of .22 applies.
  const fixed = once(identity, 'swap');
  writeFileSync(join(h.dir, 'leases.csv'), KEA_HEADER + kea('127.0.0.22', MAC1, 'phone', { start: S + 30 }) + kea('127.0.0.22', MAC1, 'phone', { start: S + 30, life: 0 }));
  await fixed;
  t.same(identity.sources()[0]!.problems, []);
  t.equal(await ask(h, '127.0.0.22'), 3, 'a released lease no longer maps: blocked again');
  // Lease end: fail-closed on time, with no reload.
  const again = once(identity, 'swap');
  writeFileSync(join(h.dir, 'leases.csv'), KEA_HEADER + kea('127.0.0.21', MAC1, 'phone', { start: S + 30, life: 600 }));
  await again;
  t.equal(await ask(h, '127.0.0.21'), 0);
  clock.advance(600_000);
  t.equal(await ask(h, '127.0.0.21'), 3, 'the lease ended: the exception no longer applies there');
});

/** A query with an OPT carrying these options (code, data). */
function withOptions(name: string, options: [number, Buffer][]): Buffer {
  const base = buildQuery(name, T.A);
  base.writeUInt16BE(1, 10);
  const body = Buffer.concat(options.map(([code, data]) => {
    const o = Buffer.alloc(4 + data.length);
    o.writeUInt16BE(code, 0);
    o.writeUInt16BE(data.length, 2);
    data.copy(o, 4);
    return o;
  }));
  const opt = Buffer.alloc(11);
  opt.writeUInt16BE(41, 1);
  opt.writeUInt16BE(1232, 3);
  opt.writeUInt16BE(body.length, 9);
  return Buffer.concat([base, opt, body]);
}
const ecs = (ip: string, prefix = 32): [number, Buffer] => [8, Buffer.from([0, 1, prefix, 0, ...ip.split('.').map(Number).slice(0, Math.ceil(prefix / 8))])];
const macOpt = (mac: string): [number, Buffer] => [65001, Buffer.from(mac.split(':').map((x) => parseInt(x, 16)))];
const cookie: [number, Buffer] = [10, Buffer.from('0123456789abcdef', 'hex')];

/** The EDNS option codes in a query's OPT, as the upstream received it. */
function optionCodes(raw: Buffer): number[] {
  const q = decodeQuery(raw, '127.0.0.1', 'udp', 0)!;
  if (q.optRdata < 0) return [];
  const out: number[] = [];
  const end = q.optRdata + raw.readUInt16BE(q.optRdata - 2);
  for (let off = q.optRdata; off + 4 <= end; off += 4 + raw.readUInt16BE(off + 2)) out.push(raw.readUInt16BE(off));
  return out;
}

t.test('EDNS Client Subnet and the MAC option: believed from trusted relays, ignored and stripped from anyone else', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock(NOW);
  const config = CONFIG({
    clients: { allowFrom: ['127.0.0.0/16'], trustedRelays: ['127.0.0.2/32'] },
    exceptions: [
      { id: 'EX-MAC', clients: [`mac:${MAC1}`], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
      { id: 'EX-IP', clients: ['127.0.0.21'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
    ],
  });
  const h = await startSinkhole(t, up.port, config, { 'tiktok.txt': TIKTOK_LIST, 'leases.csv': KEA_HEADER }, { clock });
  for (const proto of ['udp', 'tcp'] as const) {
    t.equal(await ask(h, '127.0.0.2', proto, withOptions('www.tiktok.com', [macOpt(MAC1)])), 0, `${proto}: a trusted relay's MAC option names the device`);
    t.equal(await ask(h, '127.0.0.3', proto, withOptions('www.tiktok.com', [macOpt(MAC1)])), 3, `${proto}: anyone else claiming that MAC is blocked`);
    t.equal(await ask(h, '127.0.0.2', proto, withOptions('www.tiktok.com', [ecs('127.0.0.21')])), 0, `${proto}: a trusted relay's ECS /32 is the client`);
    t.equal(await ask(h, '127.0.0.3', proto, withOptions('www.tiktok.com', [ecs('127.0.0.21')])), 3, `${proto}: an untrusted ECS is ignored`);
    t.equal(await ask(h, '127.0.0.2', proto, withOptions('www.tiktok.com', [ecs('127.0.0.0', 24)])), 3, `${proto}: a subnet names no device`);
  }
  // What reaches the upstream: the same query without ECS and MAC, the other options untouched.
  for (const [from, name] of [['127.0.0.2', 'trusted.example.test'], ['127.0.0.3', 'untrusted.example.test']] as const) {
    t.equal(await ask(h, from, 'udp', withOptions(name, [cookie, ecs('127.0.0.21'), macOpt(MAC1)])), 0);
    const seen = up.seen.find((s) => s.name === name)!;
    t.same(optionCodes(seen.raw), [10], `${from}: ECS and MAC stripped before forwarding, the cookie kept`);
  }
  // The report and the logs record the device the relay named, not the relay.
  t.equal(await ask(h, '127.0.0.2', 'udp', withOptions('www.tiktok.com', [ecs('127.0.0.55'), macOpt('02:00:00:00:00:09')])), 3);
  const rows = h.running.report.snapshot().clients;
  t.match(rows.find((r) => r.mac === '02:00:00:00:00:09'), { client: '127.0.0.55', blocked: 1 }, 'a relayed device has its own row');
  t.notOk(rows.some((r) => r.client === '127.0.0.3' && r.mac !== null), 'an untrusted MAC claim is not recorded as that device');
  const m = await h.running.registry.metrics();
  t.match(m, /sinkhole_identity_options_total\{source="trusted"\} 8/);
  t.match(m, /sinkhole_identity_options_total\{source="untrusted"\} 5/);
  // The stripper on its own: a malformed option list loses only the malformed tail.
  const q = withOptions('x.example.test', [cookie, macOpt(MAC1)]);
  const qq = decodeQuery(q, '127.0.0.1', 'udp', 0)!;
  t.equal(qq.identityOptions, true);
  const stripped = stripIdentityOptions(q, qq.optRdata);
  t.equal(stripped.length, q.length - 10);
  t.equal(decodeQuery(stripped, '127.0.0.1', 'udp', 0)!.identityOptions, false);
  t.equal(decodeQuery(buildQuery('x.example.test', T.A, { edns: 1232 }), '127.0.0.1', 'udp', 0)!.identityOptions, false, 'plain EDNS: nothing to do');
});

t.test('check --client MAC, and validate warns about a device no source knows', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const now = Math.floor(Date.now() / 1000);
  const config = CONFIG({
    exceptions: [
      { id: 'EX-MAC', clients: [`mac:${MAC1}`], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
      { id: 'EX-GHOST', clients: ['10.9.9.9', 'mac:02:00:00:00:00:77', 'host:nobody'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
    ],
  });
  const h = await startSinkhole(t, up.port, config, {
    'tiktok.txt': TIKTOK_LIST,
    'leases.csv': KEA_HEADER + `127.0.0.21,${MAC1},,3600,${now + 3000},1,0,0,phone,0,,0\n`,
  });
  const byMac = await run(['check', 'www.tiktok.com', '--client', MAC1.toUpperCase(), '--config', h.configFile, '--json']);
  t.equal(byMac.status, 0, byMac.stderr);
  t.match(JSON.parse(byMac.stdout), { decision: 'excepted', exception: { id: 'EX-MAC' }, device: { mac: MAC1, hostname: 'phone', address: '127.0.0.21' } });
  const byIp = await run(['check', 'www.tiktok.com', '--client', '127.0.0.21', '--config', h.configFile]);
  t.equal(byIp.status, 0);
  t.match(byIp.stdout, /^excepted: www\.tiktok\.com A from 127\.0\.0\.21 .*\n  device: 02:00:00:00:00:01 "phone" at 127\.0\.0\.21\n/);
  const other = await run(['check', 'www.tiktok.com', '--client', MAC2, '--config', h.configFile, '--json']);
  t.equal(other.status, 1, 'a MAC no exception names is blocked');
  t.match(JSON.parse(other.stdout), { decision: 'blocked', device: { mac: MAC2, address: null } });
  const bad = await run(['check', 'www.tiktok.com', '--client', 'phone', '--config', h.configFile]);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--client expects an IP address or a MAC address/);
  const v = await run(['validate', '--config', h.configFile]);
  t.equal(v.status, 0, 'warnings do not fail validation');
  t.match(v.stdout, /sinkhole\.yaml:\d+:\d+: warning: exception EX-GHOST: mac:02:00:00:00:00:77 is not in any lease file nor in identity\.static/);
  t.match(v.stdout, /sinkhole\.yaml:\d+:\d+: warning: exception EX-GHOST: host:nobody is not in any lease file nor in identity\.static/);
  t.notMatch(v.stdout, /EX-MAC: mac:/, 'a MAC in a lease file is fine');
  t.match(v.stdout, /SH_EXCEPTION_DEVICE .*EX-GHOST: mac:/, 'the warning carries its code');
  t.match(v.stdout, /ok \(lists: tiktok=4; exceptions: 2; lease sources: 1, devices: 1; policy [0-9a-f]+\), \d+ warning\(s\)/);
});

t.test('config: identity, relays and device selectors are checked at file:line:col', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG(), { 'tiktok.txt': TIKTOK_LIST, 'leases.csv': KEA_HEADER });
  const cases: [string, RegExp][] = [
    ['identity:\n  leases:\n    - { format: isc, file: x }\n', /sinkhole\.yaml:3:17: identity\.leases\[0\]\.format: expected one of kea-csv, dnsmasq, dhcpd, csv, got "isc"/],
    ['identity:\n  static: { "not-a-mac": ipad }\n', /sinkhole\.yaml:2:13: identity\.static\.not-a-mac: expected a MAC address/],
    ['clients:\n  groups:\n    g: ["mac:12"]\n', /sinkhole\.yaml:3:9: clients\.groups\.g: "mac:12": expected mac: and a MAC address/],
    ['clients:\n  trustedRelays: ["10.0.0.1/8"]\n', /sinkhole\.yaml:2:19: clients\.trustedRelays: "10\.0\.0\.1\/8" has host bits set/],
    ['report:\n  store: mysql://x\n', /sinkhole\.yaml:2:10: report\.store: expected memory or a PostgreSQL URL/],
    ['report:\n  window: 2d\n  retention: 1d\n', /report\.retention: must be at least report\.window/],
    ['state:\n  folder: x\n', /sinkhole\.yaml:2:3: state\.folder: unknown key; expected one of dir/],
  ];
  for (const [yaml, want] of cases) {
    writeFileSync(h.configFile, yaml);
    const v = await run(['validate', '--config', h.configFile]);
    t.equal(v.status, 1, yaml);
    t.match(v.stdout, want, yaml);
  }
});
