// src/rpz/export/ (issue 21 §2): serving sinkhole's lists as a Response Policy Zone (listen.rpz).
// The zone's version history on its own, then the listener through real clients nobody here wrote
// (dig, from bind9-dnsutils): AXFR content, IXFR after a list edit, the fallback to a full zone, the
// serial across a restart, allow and TSIG refusals, NOTIFY to a listener in this test; and last, real
// Unbound as a secondary that enforces the zone and follows an edit in seconds. (TSIG itself:
// test/dns/dns.test.ts.)
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nextSerial, serialAfter, ZoneJournal } from '../../src/rpz/export/journal.js';
import { nameEnd } from '../../src/dns/message.js';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole, type Harness } from '../helpers/sinkhole.js';
import { buildQuery, decode, udpExchange } from '../helpers/dns.js';
import { skipUnless } from '../helpers/requires.js';
import { startUnboundRpz } from '../helpers/peers.js';

const run = promisify(execFile);
const ZONE = 'tiktok.rpz.sinkhole';
const LIST = '# test list\ntiktok.com\n||tiktokv.com^\n*.wild.example\n';
const SECRET = Buffer.alloc(32, 7).toString('base64');
const NEEDS_DIG = skipUnless({ dig: 'bind9-dnsutils' });

/** dig, run without blocking this process's event loop (sinkhole answers from it). */
async function dig(port: number, ...args: string[]): Promise<string> {
  const r = await run('dig', ['@127.0.0.1', '-p', String(port), '+time=3', '+tries=1', ...args], { timeout: 20_000 }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  return r.stdout;
}

/** The records of a transfer as dig prints them, one "owner type rdata" each (TTL and class aside; TSIG left out). */
function records(out: string): string[] {
  return out
    .split('\n')
    .filter((l) => l && !l.startsWith(';'))
    .map((l) => l.split(/\s+/))
    .filter((f) => f.length >= 5 && f[3] !== 'TSIG')
    .map((f) => `${f[0]} ${f[3]} ${f.slice(4).join(' ')}`);
}

function serialOf(soaLine: string): number {
  return Number(soaLine.split(' ')[4]);
}

/** A UDP listener standing in for a secondary: it answers every NOTIFY and keeps the serials it was told. */
async function notifyListener(t: { teardown(fn: () => unknown): void }): Promise<{ port: number; serials: number[]; waitFor(serial: number): Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => sock.close());
  const serials: number[] = [];
  const waiters: (() => void)[] = [];
  sock.on('message', (msg, rinfo) => {
    if (((msg[2]! >> 3) & 0x0f) !== 4) return;
    const qend = nameEnd(msg, 12) + 4;
    // The SOA in the answer section (RFC 1996 §3.7): its serial is the 3rd-to-last... read it from the RDATA's fixed part.
    if (msg.readUInt16BE(6) === 1) {
      const end = nameEnd(msg, qend);
      const rdata = end + 10;
      const mname = nameEnd(msg, rdata);
      const rname = nameEnd(msg, mname);
      serials.push(msg.readUInt32BE(rname));
    }
    const reply = Buffer.from(msg.subarray(0, qend));
    reply[2] = reply[2]! | 0x80;
    reply.writeUInt16BE(0, 6);
    reply.writeUInt16BE(0, 8);
    reply.writeUInt16BE(0, 10);
    sock.send(reply, rinfo.port, rinfo.address);
    for (const w of waiters.splice(0)) w();
  });
  const waitFor = async (serial: number): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (!serials.includes(serial)) {
      if (Date.now() > deadline) throw new Error(`no NOTIFY for serial ${serial}; got ${serials.join(',')}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  return { port: (sock.address() as { port: number }).port, serials, waitFor };
}

t.test('the zone history: serials rise (RFC 1982), IXFR condenses the differences, and forgets past its bound', async (t) => {
  t.ok(serialAfter(1, 0xffff_ffff), 'after a wrap');
  t.notOk(serialAfter(5, 5));
  t.equal(nextSerial(undefined, 1_800_000_000), 1_800_000_000, 'from the clock');
  t.equal(nextSerial(1_800_000_000, 1_800_000_000), 1_800_000_001, 'two changes in one second');
  t.equal(nextSerial(1_900_000_000, 1_800_000_000), 1_900_000_001, 'never back, even if the clock is');
  const j = new ZoneJournal({ serial: 10, names: ['a', '*.a', 'b', '*.b'] });
  j.advance(['a', '*.a', 'b', '*.b', 'c', '*.c'], 11);
  j.advance(['a', '*.a', 'c', '*.c', 'd'], 12);
  t.same(j.changesSince(11), { added: ['d'], removed: ['b', '*.b'] });
  t.same(j.changesSince(10), { added: ['c', '*.c', 'd'], removed: ['b', '*.b'] }, 'condensed (RFC 1995 §5)');
  t.equal(j.changesSince(9), undefined, 'not in the history');
  for (let s = 13; s < 80; s++) j.advance([`n${s}`], s);
  t.equal(j.changesSince(10), undefined, 'the oldest are forgotten');
  t.ok(j.changesSince(70));
});

interface Started {
  h: Harness;
  port: number;
}

async function startExporting(t: { teardown(fn: () => unknown): void }, upPort: number, rpz: Record<string, unknown>, files: Record<string, string> = {}, state?: string): Promise<Started> {
  const h = await startSinkhole(
    t,
    upPort,
    {
      listen: { dns: ['127.0.0.1:0'], rpz: { address: '127.0.0.1:0', zone: `${ZONE}.`, ...rpz } },
      blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
      ...(state ? { state: { dir: state } } : {}),
    },
    { 'tiktok.txt': LIST, ...files },
  );
  return { h, port: h.running.rpzExport!.address!.port };
}

t.test('AXFR, IXFR after an edit, the full zone for an unknown serial, NOTIFY, and the serial across restarts (dig)', { skip: NEEDS_DIG, timeout: 90_000 }, async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const state = mkdtempSync(join(tmpdir(), 'sinkhole-rpz-export-state-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const secondary = await notifyListener(t);
  const { h, port } = await startExporting(t, up.port, { notify: [`127.0.0.1:${secondary.port}`] }, {}, state);

  const axfr = records(await dig(port, '+noall', '+answer', 'AXFR', `${ZONE}.`));
  const serial1 = serialOf(axfr[0]!);
  t.same(axfr, [
    `${ZONE}. SOA localhost. hostmaster.${ZONE}. ${serial1} 600 60 1209600 10`,
    `${ZONE}. NS localhost.`,
    `tiktok.com.${ZONE}. CNAME .`,
    `*.tiktok.com.${ZONE}. CNAME .`,
    `tiktokv.com.${ZONE}. CNAME .`,
    `*.tiktokv.com.${ZONE}. CNAME .`,
    `*.wild.example.${ZONE}. CNAME .`,
    `${ZONE}. SOA localhost. hostmaster.${ZONE}. ${serial1} 600 60 1209600 10`,
  ], 'SOA first and last; a rule is its name and *.name, a *.rule only *.name; TTL is blocking.ttl');
  t.match(await dig(port, '+noall', '+answer', 'SOA', `${ZONE}.`), new RegExp(`SOA\\s+localhost\\. hostmaster\\.${ZONE.replace(/\./g, '\\.')}\\. ${serial1} `), 'SOA over UDP');
  t.match(await dig(port, 'A', 'www.example.com.'), /status: REFUSED/, 'no resolver: a name outside the zone is REFUSED');
  await secondary.waitFor(serial1); // a new zone is announced at start

  // An edit: one name out, two in.
  h.write('tiktok.txt', '# test list\ntiktok.com\n*.wild.example\nbytedance.com\n');
  t.same(await h.running.reloader.reload('list'), []);
  const serial2 = h.running.rpzExport!.serial;
  t.ok(serialAfter(serial2, serial1), `the serial rose: ${serial1} → ${serial2}`);
  await secondary.waitFor(serial2);
  t.pass('the secondary was sent a NOTIFY with the new serial');

  const soa = (s: number): string => `${ZONE}. SOA localhost. hostmaster.${ZONE}. ${s} 600 60 1209600 10`;
  const ixfr = records(await dig(port, '+noall', '+answer', `IXFR=${serial1}`, `${ZONE}.`));
  t.same(ixfr, [
    soa(serial2),
    soa(serial1), `tiktokv.com.${ZONE}. CNAME .`, `*.tiktokv.com.${ZONE}. CNAME .`,
    soa(serial2), `bytedance.com.${ZONE}. CNAME .`, `*.bytedance.com.${ZONE}. CNAME .`,
    soa(serial2),
  ], 'IXFR: only the difference (RFC 1995 §4)');
  const full = records(await dig(port, '+noall', '+answer', `IXFR=${serial1 - 1000}`, `${ZONE}.`));
  t.equal(full.length, 2 + 2 + 3 + 1, 'an unknown serial gets the whole zone, AXFR-style (RFC 1995 §4)');
  t.equal(full[1], `${ZONE}. NS localhost.`);
  t.same(records(await dig(port, '+noall', '+answer', `IXFR=${serial2}`, `${ZONE}.`)), [soa(serial2)], 'an up-to-date client gets one SOA');

  // A reload that does not change the names keeps the serial (and sends no NOTIFY).
  t.same(await h.running.reloader.reload('list'), []);
  t.equal(h.running.rpzExport!.serial, serial2, 'nothing changed: same serial');
  await h.running.rpzExport!.idle();
  const m = await h.running.registry.metrics();
  t.match(m, new RegExp(`sinkhole_rpz_export_serial\\{zone="${ZONE}"\\} ${serial2}`));
  t.match(m, new RegExp(`sinkhole_rpz_export_records\\{zone="${ZONE}"\\} 7`));
  t.match(m, /sinkhole_rpz_export_requests_total\{zone="[^"]+",type="axfr",result="ok"\} 1/);
  t.match(m, /sinkhole_rpz_export_requests_total\{zone="[^"]+",type="ixfr",result="ok"\} 3/);
  t.match(m, /sinkhole_rpz_export_notifies_total\{zone="[^"]+",result="ok"\} 2/);

  // Restart on the same state.dir: the same names keep their serial; changed names get a higher one.
  await h.running.close();
  const again = await startExporting(t, up.port, {}, { 'tiktok.txt': '# test list\ntiktok.com\n*.wild.example\nbytedance.com\n' }, state);
  t.equal(again.h.running.rpzExport!.serial, serial2, 'the serial survives a restart');
  await again.h.running.close();
  const changed = await startExporting(t, up.port, {}, { 'tiktok.txt': 'tiktok.com\n' }, state);
  t.ok(serialAfter(changed.h.running.rpzExport!.serial, serial2), 'a restart with other names: a higher serial');
});

t.test('allow and TSIG: REFUSED outside allow or unsigned, NOTAUTH for a bad key, and a signed multi-message AXFR (dig -y)', { skip: NEEDS_DIG, timeout: 90_000 }, async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  // 3,000 rules: 6,000 records, several 64 KiB messages, each signed over the one before (RFC 8945 §5.3.1).
  const many = Array.from({ length: 3000 }, (_, i) => `host-${i}.bytedance-test.example`).join('\n');
  const { port } = await startExporting(
    t, up.port,
    { allow: ['127.0.0.1/32'], tsig: { name: 'xfr-key', algorithm: 'hmac-sha256', secretFile: 'xfr.key' } },
    { 'xfr.key': `${SECRET}\n`, 'tiktok.txt': `${LIST}${many}\n` },
  );
  const signed = await dig(port, '-y', `hmac-sha256:xfr-key:${SECRET}`, 'AXFR', `${ZONE}.`);
  const recs = records(signed);
  t.equal(recs.length, 2 + 2 * 3000 + 5 + 1, 'every record');
  t.match(signed, /XFR size: \d+ records \(messages [2-9]/, 'in several messages');
  t.notMatch(signed, /tsig verify failure|Transfer failed/, 'dig verified every message\'s TSIG');
  t.match(await dig(port, 'AXFR', `${ZONE}.`), /Transfer failed/, 'unsigned: refused');
  const wrong = await dig(port, '-y', `hmac-sha256:xfr-key:${Buffer.alloc(32, 9).toString('base64')}`, 'AXFR', `${ZONE}.`);
  t.match(wrong, /TSIG\s+hmac-sha256\. \d+ 300 0 \d+ BADSIG 0/, 'a wrong secret: NOTAUTH, with BADSIG in an unsigned TSIG (RFC 8945 §5.2)');
  t.match(wrong, /Transfer failed/);
  const unknown = await dig(port, '-y', `hmac-sha256:other-key:${SECRET}`, 'AXFR', `${ZONE}.`);
  t.match(unknown, /TSIG\s+hmac-sha256\. \d+ 300 0 \d+ BADKEY 0/, 'an unknown key: BADKEY');
  t.match(await dig(port, '-b', '127.0.0.2', '-y', `hmac-sha256:xfr-key:${SECRET}`, 'AXFR', `${ZONE}.`), /Transfer failed/, 'outside allow: refused, signed or not');
  const soa = decode(await udpExchange(port, buildQuery(`${ZONE}.`, T.SOA), 3000, '127.0.0.2'));
  t.equal(soa.header.rcode, 5, 'REFUSED over UDP too');
});

t.test('export interop: real Unbound as a secondary of listen.rpz blocks what sinkhole blocks, and follows an edit by NOTIFY + IXFR within 5 s', { skip: skipUnless({ unbound: 'unbound', dig: 'bind9-dnsutils' }), timeout: 120_000 }, async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  // Unbound's own port is picked first (bind 0, release), so sinkhole can name it in listen.rpz.notify.
  const unboundPort = await freeUdpPort();
  const { h, port } = await startExporting(t, up.port, { notify: [`127.0.0.1:${unboundPort}`] });
  const unbound = await startUnboundRpz(up.port, [], { dnsPort: unboundPort, primaries: [{ name: ZONE, primary: `127.0.0.1@${port}` }] });
  t.teardown(() => unbound.stop());
  const ask = async (p: number, name: string): Promise<number> => decode(await udpExchange(p, buildQuery(name, T.A), 3000)).header.rcode;
  const until = async (name: string, rcode: number, ms: number): Promise<number> => {
    const start = Date.now();
    for (;;) {
      const got = await ask(unbound.ports.dns!, name).catch(() => -1);
      if (got === rcode) return Date.now() - start;
      if (Date.now() - start > ms) throw new Error(`unbound still answers ${name} with rcode ${got}\n${unbound.log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  // The first transfer: Unbound loads the zone at start-up.
  await until('www.tiktok.com', 3, 15_000);
  t.equal(await ask(h.port, 'www.tiktok.com'), 3, 'sinkhole blocks www.tiktok.com (NXDOMAIN)');
  t.equal(await ask(unbound.ports.dns!, 'www.tiktok.com'), 3, 'and so does Unbound, from the exported zone');
  t.equal(await ask(unbound.ports.dns!, 'tiktok.com'), 3, 'the name itself');
  t.equal(await ask(unbound.ports.dns!, 'www.example.com'), 0, 'an unlisted name passes');
  t.equal(await ask(unbound.ports.dns!, 'new.bytedance.com'), 0, 'not listed yet');
  // The edit: sinkhole reloads, sends NOTIFY; Unbound asks the SOA, transfers, and blocks the new name.
  h.write('tiktok.txt', `${LIST}bytedance.com\n`);
  t.same(await h.running.reloader.reload('list'), []);
  const took = await until('new.bytedance.com', 3, 5000);
  t.pass(`Unbound blocked the newly listed name ${took} ms after the reload`);
  const m = await h.running.registry.metrics();
  t.match(m, /sinkhole_rpz_export_notifies_total\{zone="[^"]+",result="ok"\} [1-9]/, 'Unbound answered the NOTIFY');
  t.match(m, /sinkhole_rpz_export_requests_total\{zone="[^"]+",type="axfr",result="ok"\} 1\n/, 'Unbound\'s first load: AXFR');
  t.match(m, /sinkhole_rpz_export_requests_total\{zone="[^"]+",type="ixfr",result="ok"\} [1-9]/, 'and the edit: IXFR');
});

t.test('transfers are capped (maxTransfers) and cut at their deadline (transferTimeout): a secondary that stops reading holds a slot only so long', { skip: NEEDS_DIG, timeout: 60_000 }, async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  // Big enough (about 12 MB of transfer) that a reader who never reads fills every socket buffer and stalls.
  const many = Array.from({ length: 150_000 }, (_, i) => `host-${i}.stall-test.example`).join('\n');
  const { h, port } = await startExporting(t, up.port, { maxTransfers: 1, transferTimeout: '2s' }, { 'tiktok.txt': `${LIST}${many}\n` });
  const stalled = net.connect({ port, host: '127.0.0.1' });
  t.teardown(() => stalled.destroy());
  await once(stalled, 'connect');
  stalled.pause(); // reads nothing
  stalled.on('error', () => {});
  const q = buildQuery(`${ZONE}.`, 252);
  const framed = Buffer.alloc(2 + q.length);
  framed.writeUInt16BE(q.length);
  q.copy(framed, 2);
  stalled.write(framed);
  await new Promise((r) => setTimeout(r, 300));
  t.match(await dig(port, 'AXFR', `${ZONE}.`), /Transfer failed/, 'a second transfer while the first holds the only slot: REFUSED');
  // The stalled reader does not read, so it would not notice the close: watch the server's count instead.
  let m = '';
  for (const start = Date.now(); Date.now() - start < 6000; await new Promise((r) => setTimeout(r, 200))) {
    m = await h.running.registry.metrics();
    if (/type="axfr",result="failed"\} 1\n/.test(m)) break;
  }
  t.match(m, /type="axfr",result="busy"\} 1\n/);
  t.match(m, /type="axfr",result="failed"\} 1\n/, 'the stalled transfer was cut at its deadline');
  t.match(await dig(port, '+noall', '+answer', 'SOA', `${ZONE}.`), /SOA/, 'the slot is free again');
});

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// Kept apart from the Unbound test above: a plain file write, for the README-style check that the
// secret file format documented in docs/rpz.md is what listen.rpz.tsig.secretFile reads.
t.test('listen.rpz is checked like the rest of the config: each problem at file:line:col', async (t) => {
  const { loadConfig } = await import('../../src/config/config.js');
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-rpz-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'short.key'), 'c2hvcnQ=\n');
  const file = join(dir, 'c.yaml');
  writeFileSync(file, [
    'listen:',
    '  rpz:',
    '    address: "localhost:5353"',
    '    zone: "not a zone"',
    '    allow: ["10.0.0.0/33"]',
    '    notify: ["127.0.0.1:0"]',
    '    tsig: { name: k, secretFile: short.key }',
    '',
  ].join('\n'));
  const problems = (() => {
    try {
      loadConfig(file);
      return [];
    } catch (e) {
      return (e as { problems: { line: number; col: number; message: string }[] }).problems.map((p) => `${p.line}:${p.col} ${p.message}`);
    }
  })();
  t.match(problems, [
    /^3:14 listen\.rpz\.address: expected "address:port"/,
    /^4:11 listen\.rpz\.zone: expected the zone's name/,
    /^5:13 listen\.rpz\.allow: /,
    /^6:14 listen\.rpz\.notify: a secondary's port must be 1 to 65535/,
    /^7:34 listen\.rpz\.tsig\.secretFile: .*the secret is 5 bytes/,
  ]);
  writeFileSync(file, 'listen:\n  rpz:\n    address: "127.0.0.1:5353"\n    zone: tiktok.rpz.sinkhole.\n');
  t.match(loadConfig(file).listen.rpz, { zone: 'tiktok.rpz.sinkhole', allow: ['127.0.0.0/8', '::1/128'], notify: [], maxTransfers: 10, transferTimeoutMs: 60_000 }, 'the defaults');
});

t.test('a tsig-keygen style secret file is read (base64, with a trailing newline)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-rpz-key-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'k'), `${SECRET}\n`);
  const { readTsigSecret } = await import('../../src/config/values.js');
  t.equal(readTsigSecret(join(dir, 'k')).length, 32);
});
