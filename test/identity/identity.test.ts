// src/identity/ (issue 11): lease files → devices (leaseFormats.ts, leaseFile.ts, model.ts, table.ts),
// the identity thread, policy by MAC and hostname, and the CLI's view of it (check --client MAC,
// validate's warnings), and the config keys. (The ECS/MAC relay stage: test/stages/stages.test.ts.)
import t from 'tap';
import { once } from 'node:events';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { FakeUpstream } from '../helpers/fakeUpstream.js';
import { FakeClock, startSinkhole, TIKTOK_LIST } from '../helpers/sinkhole.js';
import { parseLeases, type Lease } from '../../src/identity/leaseFormats.js';
import { LeaseFile, type LeaseRead } from '../../src/identity/leaseFile.js';
import { ClientDirectory, compileCidrs } from '../../src/policy/clients.js';
import type { Exception } from '../../src/policy/exceptions.js';
import { IdentityTable, packDelta, type Device, type IdentityDelta } from '../../src/identity/table.js';
import { Slices } from '../../src/slices.js';
import { formatProblem } from '../../src/errors.js';
import { LeaseModel } from '../../src/identity/model.js';
import { buildIdentity, IdentityHolder } from '../../src/identity/sources.js';
import { normalizeMac, parseSelector } from '../../src/net/mac.js';
import { runCli as run } from '../helpers/cli.js';
import { IDENTITY_CONFIG as CONFIG, KEA_HEADER, MAC1, MAC2, MAC3, askTiktok as ask } from '../helpers/identity.js';

const NOW = Date.UTC(2026, 10, 28, 12, 0, 0);
const S = NOW / 1000;
const kea = (ip: string, mac: string, host: string, opts: { start?: number; life?: number; state?: number } = {}): string => {
  const life = opts.life ?? 3600;
  const start = opts.start ?? S - 60;
  return `${ip},${mac},,${life},${start + life},1,0,0,${host},${opts.state ?? 0},,0\n`;
};

/** A table's devices and static names, in a stable order. */
function contents(table: IdentityTable): { devices: [string, Device | null][]; statics: [string, string][] } {
  const s = table.snapshot();
  return { devices: [...s.devices].sort((a, b) => (a[0] < b[0] ? -1 : 1)), statics: [...(s.statics ?? [])].sort() };
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
  const first = leases(kea('10.0.0.1', MAC1, 'phone', { start: S - 600 }) + kea('10.0.0.2', MAC2, 'laptop') + kea('10.0.0.3', MAC3, 'ipad') + kea('10.0.0.4', MAC1, 'phone', { start: S - 300, life: 0 }));
  const { table: t1 } = buildIdentity([first], statics, NOW);
  t.match(t1.lookup('10.0.0.1', NOW), { mac: MAC1, hostname: 'phone' });
  t.match(t1.lookup('10.0.0.3', NOW), { mac: MAC3, hostname: 'speaker-ipad', leaseHostname: 'ipad' }, 'identity.static names the device');
  t.equal(t1.lookup('10.0.0.4', NOW), undefined, 'a deleted lease maps nothing');
  t.equal(t1.lookup('10.0.0.1', NOW + 3600_000), undefined, 'an expired lease maps nothing: fail-closed on time');
  t.equal(t1.lookup('10.0.0.1', NOW - 3600_000), undefined, 'nor before it began');
  t.ok(t1.knowsHost('speaker-ipad') && t1.knowsHost('ipad') && t1.knowsMac(MAC3));
  t.notOk(t1.knowsHost('nobody') || t1.knowsMac(MAC2.replace('02', '04')));
  // MAC1 takes a new lease at .5, while its lease on .1 has not run out; .3's row is gone from the file.
  const second = leases(kea('10.0.0.1', MAC1, 'phone', { start: S - 600 }) + kea('10.0.0.2', MAC2, 'laptop') + kea('10.0.0.5', MAC1, 'phone', { start: S + 60 }));
  const { table: t2, history } = buildIdentity([second], statics, NOW + 120_000);
  t.equal(t2.lookup('10.0.0.1', NOW + 120_000), undefined, 'the old address no longer speaks for the device that left it');
  t.match(t2.lookup('10.0.0.5', NOW + 120_000), { mac: MAC1 });
  t.match(history.deviceAt('10.0.0.1', NOW - 30_000), { mac: MAC1 }, 'history: who had .1 before the move');
  t.equal(history.deviceAt('10.0.0.1', NOW + 90_000), undefined, 'and nobody after it');
  t.match(t2.byMac(MAC3), { ip: '', hostname: 'speaker-ipad' }, 'a static device without a lease is known by MAC');
  // The same change as a delta: only the addresses whose device changed, applied to the first table in place.
  const model = new LeaseModel(1, statics);
  model.replace(0, first);
  const live = IdentityTable.of(model.commit());
  model.replace(0, second);
  const delta = model.commit();
  t.same(delta.devices.map(([ip, d]) => [ip, d?.mac ?? null]).sort(), [['10.0.0.1', null], ['10.0.0.3', null], ['10.0.0.5', MAC1]], 'the delta names .1 (left), .3 (gone) and .5 (arrived), nothing else');
  t.equal(delta.statics, undefined, 'statics unchanged: not sent again');
  live.apply(delta);
  t.same(contents(live), contents(t2), 'the table a delta leaves is the table a full build makes');
  // dnsmasq rewrites its file whole on every change: the delta is still only what changed (here one
  // address handed to another device, in a file whose lines also moved around).
  const dnsmasq = (lines: string[]) => parseLeases('dnsmasq', 'f', lines.join('\n') + '\n').leases;
  const dm = new LeaseModel(1, new Map());
  dm.replace(0, dnsmasq([`${S + 3600} ${MAC1} 10.0.1.1 phone *`, `${S + 3600} ${MAC2} 10.0.1.2 laptop *`, `${S + 3600} ${MAC3} 10.0.1.3 ipad *`]));
  t.equal(dm.commit().devices.length, 3);
  dm.replace(0, dnsmasq([`${S + 3600} ${MAC3} 10.0.1.3 ipad *`, `${S + 3600} 02:00:00:00:00:09 10.0.1.2 guest *`, `${S + 3600} ${MAC1} 10.0.1.1 phone *`]));
  t.same(dm.commit().devices, [['10.0.1.2', { ip: '10.0.1.2', mac: '02:00:00:00:00:09', hostname: 'guest', leaseHostname: 'guest', start: 0, end: (S + 3600) * 1000 }]], 'a whole re-read gives a delta of the one address that changed');
  dm.replace(0, dnsmasq([`${S + 3600} ${MAC3} 10.0.1.3 ipad *`, `${S + 3600} 02:00:00:00:00:09 10.0.1.2 guest *`, `${S + 3600} ${MAC1} 10.0.1.1 phone *`]));
  t.same(dm.commit().devices, [], 'and the same file again, an empty one');
  // A lease for an address handed to another device: the last row wins.
  const { table: t3, history: h3 } = buildIdentity([leases(kea('10.0.0.1', MAC1, 'phone', { start: S - 600 }) + kea('10.0.0.1', MAC2, 'laptop', { start: S - 10 }))], new Map(), NOW);
  t.match(t3.lookup('10.0.0.1', NOW), { mac: MAC2 });
  t.match(h3.deviceAt('10.0.0.1', NOW - 300_000), { mac: MAC1 }, 'the row before says who had it earlier');
});

/** A small deterministic PRNG (mulberry32), so a failing sequence can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The table's rules written out directly, as a second opinion on the incremental model: per source
 * the last row for an address; between sources a later source's row wins when some row of it for the
 * address started at least as late; a MAC is at its latest active lease (start, then source, then row).
 */
function reference(sources: Lease[][], statics: ReadonlyMap<string, string>): Map<string, Device> {
  const winners = new Map<string, { lease: Lease; source: number; row: number }>();
  const ips = new Set(sources.flatMap((rows) => rows.map((l) => l.ip)));
  for (const ip of ips) {
    let w: { lease: Lease; source: number; row: number } | undefined;
    sources.forEach((rows, source) => {
      const mine = rows.map((lease, row) => ({ lease, source, row })).filter((x) => x.lease.ip === ip);
      if (!mine.length) return;
      const maxStart = Math.max(...mine.map((x) => x.lease.start));
      if (!w || maxStart >= w.lease.start) w = mine[mine.length - 1];
    });
    winners.set(ip, w!);
  }
  const latest = new Map<string, { lease: Lease; source: number; row: number }>();
  for (const w of winners.values()) {
    if (!w.lease.active || !w.lease.mac) continue;
    const l = latest.get(w.lease.mac);
    const newer = !l || w.lease.start > l.lease.start || (w.lease.start === l.lease.start && (w.source > l.source || (w.source === l.source && w.row > l.row)));
    if (newer) latest.set(w.lease.mac, w);
  }
  const out = new Map<string, Device>();
  for (const [ip, w] of winners) {
    const l = w.lease;
    if (!l.active || (l.mac && latest.get(l.mac) !== w)) continue;
    out.set(ip, { ip, mac: l.mac, hostname: (l.mac && statics.get(l.mac)) || l.hostname, leaseHostname: l.hostname, start: l.start, end: l.end });
  }
  return out;
}

t.test('the lease model: rows appended or files re-read, the deltas it gives leave the same table the rules make', async (t) => {
  const rnd = prng(11);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const ips = Array.from({ length: 12 }, (_, i) => `10.0.0.${i + 1}`);
  const macs = ['', MAC1, MAC2, MAC3, '02:00:00:00:00:04', '02:00:00:00:00:05'];
  // Few distinct start times, so ties (and the rules for them) come up often.
  const row = (): Lease => {
    const start = NOW + pick([0, 0, 60_000, 120_000, -60_000]);
    const life = pick([3600_000, 3600_000, 600_000, 0]);
    return { ip: pick(ips), mac: pick(macs), hostname: pick(['', 'phone', 'laptop']), start, end: start + life, active: life > 0 && rnd() > 0.15 };
  };
  let statics: ReadonlyMap<string, string> = new Map([[MAC3, 'speaker-ipad']]);
  const files: Lease[][] = [[], []];
  const model = new LeaseModel(2, statics);
  const table = new IdentityTable();
  let checked = 0;
  let deltaEntries = 0;
  for (let step = 0; step < 400; step++) {
    const s = rnd() < 0.6 ? 0 : 1;
    const r = rnd();
    if (r < 0.75) {
      // Kea appends: the new rows only.
      const rows = Array.from({ length: 1 + Math.floor(rnd() * 3) }, row);
      files[s]!.push(...rows);
      model.append(s, rows);
    } else if (r < 0.95) {
      // A file rewritten whole (dnsmasq; Kea's cleanup): some rows dropped, some reordered, some new.
      const kept = files[s]!.filter(() => rnd() < 0.7);
      if (rnd() < 0.3) kept.reverse();
      files[s] = [...kept, ...Array.from({ length: Math.floor(rnd() * 3) }, row)];
      model.replace(s, files[s]!);
    } else {
      // A config reload that changes identity.static: every source read whole again.
      statics = new Map(rnd() < 0.5 ? [[MAC3, 'speaker-ipad'], [MAC1, 'member-phone']] : [[MAC2, 'press-laptop']]);
      model.reconfigure(2, statics);
      files.forEach((rows, i) => model.replace(i, rows));
    }
    const delta = model.commit();
    deltaEntries += delta.devices.length;
    table.apply(delta);
    const want = [...reference(files, statics)].sort();
    const got = (table.snapshot().devices as [string, Device][]).sort();
    // Every MAC is at one address at most, and byMac finds it there.
    const misplaced = got.filter(([, d]) => d.mac && table.byMac(d.mac) !== d);
    if (!isDeepStrictEqual(got, want) || misplaced.length || !isDeepStrictEqual(new Map(table.snapshot().statics), statics)) {
      t.same({ got, misplaced }, { got: want, misplaced: [] }, `step ${step}: the table matches the rules`);
      break;
    }
    checked++;
  }
  t.equal(checked, 400, 'after each of 400 changes the table matched the rules');
  t.ok(deltaEntries < 400 * 4, `deltas name only what changed: ${deltaEntries} entries over 400 changes`);
  // The same files read at once give the same table (validate and check build it this way).
  t.same(contents(buildIdentity(files, statics, NOW).table), contents(table));
});

t.test('a lease file is read incrementally: appended rows only, a partial row waits, a replaced or rewritten file is read whole', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-leases-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'kea.csv');
  const kf = new LeaseFile({ format: 'kea-csv', file });
  const ipsOf = (r: LeaseRead): string[] => (r.ok ? r.leases.map((l) => l.ip) : []);
  t.match(kf.read(), { ok: false, problems: [{ code: 'SH_LEASES_READ', message: /ENOENT/ }] }, 'a missing file is a read problem');
  writeFileSync(file, KEA_HEADER + kea('10.0.0.1', MAC1, 'a') + kea('10.0.0.2', MAC2, 'b'));
  let r = kf.read();
  t.match(r, { ok: true, whole: true });
  t.same(ipsOf(r), ['10.0.0.1', '10.0.0.2']);
  t.match(kf.read(), { ok: true, whole: false, leases: [] }, 'nothing appended: nothing parsed');
  t.notOk(kf.stale(), 'unchanged since the last read');
  // Kea is writing: one row complete, the next without its newline yet.
  const partial = kea('10.0.0.4', MAC1, 'd');
  appendFileSync(file, kea('10.0.0.3', MAC3, 'c') + partial.slice(0, 20));
  t.ok(kf.stale(), 'changed since (what a watcher that starts late catches up on)');
  r = kf.read();
  t.match(r, { ok: true, whole: false }, 'read from where the last read stopped');
  t.same(ipsOf(r), ['10.0.0.3'], 'only the appended row, not the one still being written');
  appendFileSync(file, partial.slice(20));
  t.same(ipsOf(kf.read()), ['10.0.0.4'], 'the rest of the row, once its newline is there');
  // A broken row: rejected with its line in the file; the next read starts from the same place.
  appendFileSync(file, '10.0.0.5,zz,,3600,1,1,0,0,x,0,,0\n');
  r = kf.read();
  t.match(r, { ok: false, problems: [{ code: 'SH_LEASES_INVALID', line: 6, col: 10 }] }, 'names file:line:col of the row in the whole file');
  appendFileSync(file, kea('10.0.0.6', MAC2, 'f'));
  t.match(kf.read(), { ok: false, problems: [{ line: 6 }] }, 'still rejected: a bad row in an append-only file stays until it is rewritten');
  // Kea's lease file cleanup: a new file renamed into place (another inode), here even larger.
  const next = join(dir, 'kea.csv.2');
  writeFileSync(next, KEA_HEADER + kea('10.0.0.7', MAC1, 'g') + kea('10.0.0.8', MAC2, 'h') + kea('10.0.0.9', MAC3, 'i') + kea('10.0.0.10', MAC3, 'j') + kea('10.0.0.11', MAC3, 'k') + kea('10.0.0.12', MAC3, 'l'));
  renameSync(next, file);
  r = kf.read();
  t.match(r, { ok: true, whole: true }, 'a replaced file is read whole');
  t.equal(ipsOf(r).length, 6);
  appendFileSync(file, kea('10.0.0.13', MAC1, 'm'));
  t.same(ipsOf(kf.read()), ['10.0.0.13'], 'and appended to again');
  // Truncated and written again (smaller than what was read): whole.
  writeFileSync(file, KEA_HEADER + kea('10.0.0.20', MAC1, 'x'));
  r = kf.read();
  t.match(r, { ok: true, whole: true });
  t.same(ipsOf(r), ['10.0.0.20']);
  // Rewritten in place, larger, the same inode: the bytes before the read position differ, so whole.
  writeFileSync(file, KEA_HEADER + kea('10.0.0.21', MAC2, 'y') + kea('10.0.0.22', MAC3, 'z'));
  r = kf.read();
  t.match(r, { ok: true, whole: true }, 'a rewrite in place is noticed');
  t.same(ipsOf(r), ['10.0.0.21', '10.0.0.22']);
  t.match(kf.read(true), { ok: true, whole: true }, 'SIGHUP asks for a whole read');

  // Kea's lease file cleanup (kea-lfc): the file is moved to .2 and a new one started; .2 and the last
  // cleanup's .1 are compacted into .completed, which becomes .1. The devices never change on the way.
  writeFileSync(file, KEA_HEADER + kea('10.0.0.31', MAC1, 'a', { start: S - 600 }) + kea('10.0.0.32', MAC2, 'b') + kea('10.0.0.31', MAC1, 'a'));
  const model = new LeaseModel(1, new Map());
  const apply = (r: LeaseRead): IdentityDelta => {
    if (!r.ok) throw new Error(r.problems.map(formatProblem).join('; '));
    if (r.whole) model.replace(0, r.leases);
    else model.append(0, r.leases);
    return model.commit();
  };
  t.equal(apply(kf.read()).devices.length, 2, 'two devices');
  renameSync(file, `${file}.2`);
  writeFileSync(file, KEA_HEADER + kea('10.0.0.33', MAC3, 'c'));
  r = kf.read();
  t.match(r, { ok: true, whole: true });
  t.same(ipsOf(r), ['10.0.0.31', '10.0.0.32', '10.0.0.31', '10.0.0.33'], 'the moved-aside file is read first, then the new one');
  t.same(apply(r).devices.map(([ip]) => ip), ['10.0.0.33'], 'only the new lease changes anything');
  writeFileSync(`${file}.completed`, KEA_HEADER + kea('10.0.0.32', MAC2, 'b') + kea('10.0.0.31', MAC1, 'a'));
  t.same(apply(kf.read()).devices, [], 'the compacted file stands for .1 and .2: no device changed');
  renameSync(`${file}.completed`, `${file}.1`);
  rmSync(`${file}.2`);
  r = kf.read();
  t.same(ipsOf(r), ['10.0.0.32', '10.0.0.31', '10.0.0.33']);
  t.same(apply(r).devices, [], 'nor when it becomes .1');
  appendFileSync(file, kea('10.0.0.34', MAC2, 'd'));
  r = kf.read();
  t.match(r, { ok: true, whole: false }, 'and the new file is read incrementally');
  t.same(apply(r).devices.map(([ip, d]) => [ip, d?.mac]).sort(), [['10.0.0.32', undefined], ['10.0.0.34', MAC2]], 'MAC2 moved from .32 to .34');
  writeFileSync(`${file}.1`, KEA_HEADER + 'broken\n');
  t.match(kf.read(), { ok: false, problems: [{ file: `${file}.1`, line: 2 }] }, 'a broken older file is named, and changes nothing');
  rmSync(`${file}.1`);

  // A CSV export: appended to, read incrementally with the header's columns; rewritten at the same size, read whole.
  const csv = join(dir, 'export.csv');
  const cf = new LeaseFile({ format: 'csv', file: csv });
  writeFileSync(csv, 'MAC Address,IP Address\naa:bb:cc:dd:ee:01,10.1.0.1\n');
  t.same(ipsOf(cf.read()), ['10.1.0.1']);
  appendFileSync(csv, 'aa:bb:cc:dd:ee:02,10.1.0.2\n');
  r = cf.read();
  t.match(r, { ok: true, whole: false });
  t.match(r.ok && r.leases, [{ ip: '10.1.0.2', mac: 'aa:bb:cc:dd:ee:02' }], 'an appended row read with the header\'s columns');
  writeFileSync(csv, 'MAC Address,IP Address\naa:bb:cc:dd:ee:09,10.1.0.1\naa:bb:cc:dd:ee:02,10.1.0.2\n');
  r = cf.read();
  t.match(r, { ok: true, whole: true }, 'an export overwritten at the same size is read whole');
  t.match(r.ok && r.leases[0], { ip: '10.1.0.1', mac: 'aa:bb:cc:dd:ee:09' });
});

t.test('per-device views cannot go stale: a delta replaces devices, never changes one', async (t) => {
  const exception = (id: string, clients: string[]): Exception => ({
    id, clients, deviceRefs: [], allowLists: new Set(['tiktok']), allowDomains: [], reason: 'r', approvedBy: 'a',
    expires: '2999-01-01', expiresAt: Infinity, endsAt: Infinity, timezone: 'UTC', timezoneFrom: 'server', source: { file: 'x', line: 1 },
    refs: { clients: [], allow: [], expires: { file: 'x', line: 1, col: 1 } },
  });
  const dir = new ClientDirectory(compileCidrs(['10.0.0.0/8']), [{ name: 'press', members: [`mac:${MAC2}`] }], [
    exception('EX-MAC', [`mac:${MAC1}`]),
    exception('EX-HOST', ['host:speaker']),
  ]);
  const table = new IdentityTable();
  const dev = (ip: string, mac: string, hostname: string, end = NOW + 3600_000): Device => ({ ip, mac, hostname, leaseHostname: hostname, start: NOW - 60_000, end });
  const ids = (ip: string): string[] => dir.viewOf(ip, table.lookup(ip, NOW)).exceptions.map((e) => e.id);
  table.apply({ reset: true, devices: [['10.0.0.1', dev('10.0.0.1', MAC1, 'phone')], ['10.0.0.2', dev('10.0.0.2', MAC2, 'laptop')], ['10.0.0.3', dev('10.0.0.3', MAC3, 'ipad')]] });
  t.same(ids('10.0.0.1'), ['EX-MAC']);
  t.same(dir.viewOf('10.0.0.2', table.lookup('10.0.0.2', NOW)).groups, ['press']);
  t.same(ids('10.0.0.3'), []);
  const before = table.lookup('10.0.0.1', NOW)!;
  t.ok(Object.isFrozen(before), 'a device in the table is frozen: a memoised view of it stays true');
  // MAC1 moves to .4 and .1 goes to MAC2; .3 is renamed "speaker" by its lease.
  table.apply({ reset: false, devices: [['10.0.0.4', dev('10.0.0.4', MAC1, 'phone')], ['10.0.0.1', dev('10.0.0.1', MAC2, 'laptop')], ['10.0.0.2', null], ['10.0.0.3', dev('10.0.0.3', MAC3, 'speaker')]] });
  t.same(ids('10.0.0.1'), [], 'the address MAC1 left no longer gets its exception');
  t.same(dir.viewOf('10.0.0.1', table.lookup('10.0.0.1', NOW)).groups, ['press'], 'the group by MAC followed MAC2 to it');
  t.same(ids('10.0.0.4'), ['EX-MAC'], 'the exception by MAC followed the device');
  t.same(ids('10.0.0.3'), ['EX-HOST'], 'a host: exception applies once the lease carries the name');
  t.equal(table.byMac(MAC1)?.ip, '10.0.0.4');
  t.equal(table.byMac(MAC2)?.ip, '10.0.0.1');
  // A renewal is a new object too; a release takes the device away.
  table.apply({ reset: false, devices: [['10.0.0.4', dev('10.0.0.4', MAC1, 'phone', NOW + 7200_000)]] });
  t.not(table.lookup('10.0.0.4', NOW), before);
  t.same(ids('10.0.0.4'), ['EX-MAC']);
  table.apply({ reset: false, devices: [['10.0.0.4', null]] });
  t.same(ids('10.0.0.4'), [], 'released: no device, no exception');
  t.equal(table.byMac(MAC1), undefined);
  t.equal(before.ip, '10.0.0.1', 'the old object still says what it said');
});

t.test('a big delta crosses packed and is applied in slices: nothing a query sees is ever wrong mid-apply (issue 23 item 6)', async (t) => {
  const dev = (ip: string, mac: string, host: string, leaseHost = host): Device => ({ ip, mac, hostname: host, leaseHostname: leaseHost, start: 0, end: Infinity });
  const N = 10_000;
  const many: [string, Device | null][] = Array.from({ length: N }, (_, i) => {
    const ip = `10.0.${i >> 8}.${i & 255}`;
    return [ip, dev(ip, `02:01:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, `h${i}`)];
  });
  // The excepted device never changes; MAC2 moves from .2 to the far end of the delta; .3 goes away.
  const base: IdentityDelta = {
    reset: true,
    devices: [['127.0.0.1', dev('127.0.0.1', MAC1, 'phone')], ['127.0.0.2', dev('127.0.0.2', MAC2, 'laptop')], ['127.0.0.3', dev('127.0.0.3', MAC3, 'tv', 'TV')]],
    statics: [[MAC3, 'telly']],
  };
  const grow: IdentityDelta = { reset: false, devices: [['127.0.0.2', null], ...many, ['127.0.0.3', null], ['127.0.0.4', { ...dev('127.0.0.4', MAC2, 'laptop'), start: 5, end: 6 }]] };
  const packed = packDelta(grow);
  t.ok(packed.packed && packed.devices.length === 0, `${grow.devices.length} devices cross as one shared buffer`);
  t.equal(packDelta(base), base, 'a small delta crosses as it is');
  // The same table, whether applied in one turn or in slices from the packed form.
  const once = IdentityTable.of(base);
  once.apply(grow);
  const sliced = IdentityTable.of(base);
  const phone = sliced.lookup('127.0.0.1', 1)!;
  let turns = 0;
  let wrong = '';
  let done = false;
  const watch = (): void => {
    if (done) return;
    turns++;
    // Between slices: the device whose lease did not change is there, the same object; MAC2 is known at its old or new address.
    if (sliced.lookup('127.0.0.1', 1) !== phone || sliced.byMac(MAC1) !== phone) wrong ||= `turn ${turns}: the unchanged device flipped`;
    const mac2 = sliced.byMac(MAC2)?.ip;
    if (mac2 !== '127.0.0.2' && mac2 !== '127.0.0.4') wrong ||= `turn ${turns}: MAC2 unknown (${mac2})`;
    setImmediate(watch);
  };
  setImmediate(watch);
  await sliced.applyInSlices(packed, new Slices(0));
  done = true;
  t.equal(wrong, '', 'mid-apply, every lookup gave the old or the new answer');
  t.ok(turns > 100, `the event loop ran between slices (${turns} turns)`);
  t.same(contents(sliced), contents(once), 'the same table as applied in one turn');
  t.same(sliced.byMac(MAC2), { ...dev('127.0.0.4', MAC2, 'laptop'), start: 5, end: 6 }, 'the moved device by MAC, with its times');
  t.equal(sliced.lookup('10.0.0.7', 1)?.end, Infinity, 'a lease that never ends still never ends');
  t.equal(sliced.byMac(MAC3)?.hostname, 'telly', 'a device gone from the leases: the static name');
  t.throws(() => new IdentityTable().apply(packed), /in slices/, 'a packed delta cannot be applied in one turn by mistake');
  const shrink: IdentityDelta = { reset: false, devices: many.map(([ip]) => [ip, null]) };
  await sliced.applyInSlices(packDelta(shrink), new Slices(0));
  once.apply(shrink);
  t.same(contents(sliced), contents(once), 'shrunk back: the same table');

  // The holder: a big whole table is built aside and swapped in at once; later deltas wait their turn.
  const holder = new IdentityHolder(IdentityTable.of(base));
  const before = holder.current;
  const order: string[] = [];
  holder.update(packDelta({ reset: true, devices: many }), () => order.push('reset'));
  holder.update({ reset: false, devices: [['127.0.0.9', dev('127.0.0.9', MAC1, 'phone')]] }, () => order.push('small'));
  t.equal(holder.current, before, 'until the whole table is built, queries use the one there was');
  t.ok(holder.current.lookup('127.0.0.1', 1), 'with its devices');
  await new Promise<void>((r) => {
    const wait = (): void => void (order.length === 2 ? r() : setImmediate(wait));
    wait();
  });
  t.same(order, ['reset', 'small'], 'applied in the order they came');
  t.not(holder.current, before, 'then swapped in whole');
  t.equal(holder.current.size, N + 1);
  t.equal(holder.current.byMac(MAC1)?.ip, '127.0.0.9', 'and the small delta that waited applied after it');
  const small: string[] = [];
  holder.update({ reset: false, devices: [['127.0.0.9', null]] }, () => small.push('now'));
  t.same(small, ['now'], 'an idle holder applies a small delta in the same turn');
});


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

/** Resolves once `check` holds, re-checking at each identity update; rejects after `ms` (no fixed sleeps). */
async function until(identity: NodeJS.EventEmitter, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const next = once(identity, 'swap');
    next.catch(() => {});
    if (await check()) return;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`not within ${ms} ms`);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([next, new Promise((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
  }
}

t.test('a symlinked lease file: an edit of its target in place is seen, and so is the link moved (issue 23 item 7)', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  // current.csv → exports/v1.csv, the target in another folder than the link, as an export script keeps versions.
  const leases = mkdtempSync(join(tmpdir(), 'sinkhole-leases-'));
  t.teardown(() => rmSync(leases, { recursive: true, force: true }));
  mkdirSync(join(leases, 'exports'));
  mkdirSync(join(leases, 'other'));
  const v1 = join(leases, 'exports', 'v1.csv');
  writeFileSync(v1, KEA_HEADER + kea('127.0.0.21', MAC1, 'phone'));
  symlinkSync('exports/v1.csv', join(leases, 'current.csv'));
  const h = await startSinkhole(t, up.port, CONFIG({ identity: { leases: [{ format: 'kea-csv', file: join(leases, 'current.csv') }] } }), { 'tiktok.txt': TIKTOK_LIST }, { clock: new FakeClock(NOW), watch: true });
  const identity = h.running.identity;
  t.equal(await ask(h, '127.0.0.21'), 0, 'MAC1 at .21 through the link: excepted');
  // The target rewritten in place (same inode): the device moves to .22.
  writeFileSync(v1, KEA_HEADER + kea('127.0.0.22', MAC1, 'phone', { start: S - 30 }));
  await until(identity, async () => (await ask(h, '127.0.0.22')) === 0);
  t.pass('an in-place edit of the target is read: the exception followed MAC1 to .22');
  t.equal(await ask(h, '127.0.0.21'), 3, 'and no longer applies at .21');
  // The link moved to a file in yet another folder, then that file edited in place.
  const v2 = join(leases, 'other', 'v2.csv');
  writeFileSync(v2, KEA_HEADER + kea('127.0.0.23', MAC1, 'phone', { start: S - 20 }));
  symlinkSync('other/v2.csv', join(leases, 'next.csv'));
  renameSync(join(leases, 'next.csv'), join(leases, 'current.csv'));
  await until(identity, async () => (await ask(h, '127.0.0.23')) === 0);
  t.pass('the link swapped: its new target is read');
  writeFileSync(v2, KEA_HEADER + kea('127.0.0.24', MAC1, 'phone', { start: S - 10 }));
  await until(identity, async () => (await ask(h, '127.0.0.24')) === 0);
  t.pass("and the new target's in-place edit is seen: the watch followed the link");
  t.equal(await ask(h, '127.0.0.23'), 3);
});

t.test('the identity thread: a config reload brings new static names, and a thread that dies restarts with the devices', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const errors: string[] = [];
  const log = { info() {}, warn() {}, error: (code: string, m: string) => errors.push(`${code} ${m}`) };
  const config = (statics: Record<string, string>): Record<string, unknown> => ({
    blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
    clients: { allowFrom: ['127.0.0.0/16'] },
    identity: { leases: [{ format: 'kea-csv', file: 'leases.csv' }], static: statics },
    exceptions: [{ id: 'EX-HOST', clients: ['host:member-phone'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
  });
  const clock = new FakeClock(NOW);
  const h = await startSinkhole(t, up.port, config({}), { 'tiktok.txt': TIKTOK_LIST, 'leases.csv': KEA_HEADER + kea('127.0.0.21', MAC1, 'phone') }, { clock, watch: true, log });
  const identity = h.running.identity;
  t.equal(await ask(h, '127.0.0.21'), 3, 'the lease says "phone": no exception');
  // identity.static names MAC1 "member-phone": the identity thread re-reads and the device is renamed.
  writeFileSync(h.configFile, stringify({ ...(parse(readFileSync(h.configFile, 'utf8')) as object), ...config({ [MAC1]: 'member-phone' }) }));
  const renamed = once(identity, 'swap');
  t.same(await h.running.reloader.reload('config'), []);
  const [delta] = (await renamed) as [IdentityDelta];
  t.same(delta.statics, [[MAC1, 'member-phone']], 'the new static names reach the query threads with the delta');
  t.match(delta.devices, [['127.0.0.21', { mac: MAC1, hostname: 'member-phone', leaseHostname: 'phone' }]], 'and the one device they rename');
  t.equal(await ask(h, '127.0.0.21'), 0, 'host: matches the static name now');
  // The identity thread dies: the devices known stay in force, and a new thread reads the files again.
  const restarted = once(identity, 'swap');
  await identity.kill();
  const [fresh] = (await restarted) as [IdentityDelta];
  t.match(errors.join('\n'), /SH_WORKER the identity thread stopped; the devices known stay in force, and it restarts/);
  t.equal(fresh.reset, true, 'a new thread sends the whole table once');
  t.equal(await ask(h, '127.0.0.21'), 0, 'the device is still known');
  const moved = once(identity, 'swap');
  appendFileSync(join(h.dir, 'leases.csv'), kea('127.0.0.22', MAC1, 'phone', { start: S - 30 }));
  await moved;
  t.equal(await ask(h, '127.0.0.22'), 0, 'the new thread watches the file: the exception follows the device');
  t.equal(await ask(h, '127.0.0.21'), 3);
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
