// src/policy/rpz/ transfer.ts, wireRecords.ts and feed.ts: zones pulled from a primary.
// RPZ zones pulled from a primary (issue 21 §1 "Transfers"): real NSD serves the zone, TSIG-signed;
// sinkhole takes it by AXFR, then an edit reaches it by NOTIFY and IXFR within 5 s; with the primary
// stopped, a restart still enforces the zone (its copy under state.dir). A wrong key is refused by
// NSD; a NOTIFY from anyone else, or unsigned, is refused by sinkhole.
// Also the transfer reader on its own: AXFR, IXFR differences, a current serial, malformed streams.
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeUpstream, T } from '../../helpers/fakeUpstream.js';
import { startSinkhole } from '../../helpers/sinkhole.js';
import { buildQuery, rcodeOf, udpExchange } from '../../helpers/dns.js';
import { skipUnless } from '../../helpers/requires.js';
import { start } from '../../../src/app.js';
import type { Logger } from '../../../src/log.js';
import { TransferAssembler, transferQuery, serialNewer } from '../../../src/policy/rpz/transfer.js';
import type { WireRecord } from '../../../src/policy/rpz/wireRecords.js';
import { decodeTransferMessage } from '../../../src/policy/rpz/wireRecords.js';
import { sign as signTsig, splitTsig, verify as verifyTsig } from '../../../src/dns/tsig.js';

/** A port the kernel just handed out (NSD and the NOTIFY target need theirs before they start). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const fmt = (f?: object): string => (f ? ` ${JSON.stringify(f)}` : '');
  return {
    lines,
    log: {
      info: (m, f) => void lines.push(`info ${m}${fmt(f)}`),
      warn: (c, m, f) => void lines.push(`warn ${c} ${m}${fmt(f)}`),
      error: (c, m, f) => void lines.push(`error ${c} ${m}${fmt(f)}`),
    },
  };
}

async function until(what: string, ms: number, test: () => boolean | Promise<boolean>): Promise<number> {
  const started = Date.now();
  while (!(await test())) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - started;
}

const soa = (serial: number): WireRecord => ({ type: 6, serial, line: `z. 60 IN SOA ns. h. ${serial} 60 10 600 60`, timers: { refresh: 60, retry: 10, expire: 600 } });
const rr = (name: string): WireRecord => ({ type: 5, line: `${name}.z. 60 IN CNAME .` });

t.test('the transfer reader: AXFR, IXFR differences, a current serial, and streams that are not transfers', async (t) => {
  const axfr = new TransferAssembler(undefined);
  t.equal(axfr.add([soa(7), rr('a')], 0), undefined, 'not done before the closing SOA');
  const full = axfr.add([rr('b'), soa(7)], 1);
  t.same(full, { kind: 'full', soa: soa(7), records: [rr('a').line, rr('b').line], skipped: 1 }, 'AXFR: the records between the SOAs');

  const ixfr = new TransferAssembler(5);
  // RFC 1995 §4: new SOA, (old SOA, deleted, new SOA, added)*, new SOA.
  t.equal(ixfr.add([soa(7), soa(5), rr('a'), soa(6), rr('b')], 0), undefined);
  t.equal(ixfr.add([soa(6), soa(7)], 0), undefined, 'the newest SOA opening the last additions is not the end');
  const inc = ixfr.add([rr('c'), soa(7)], 0);
  t.same(inc, { kind: 'incremental', soa: soa(7), deltas: [{ removed: [rr('a').line], added: [rr('b').line] }, { removed: [], added: [rr('c').line] }], skipped: 0 }, 'IXFR: each difference');

  const current = new TransferAssembler(7);
  current.add([soa(7)], 0);
  t.same(current.endOfMessage(), { kind: 'current', serial: 7 }, 'one SOA with our serial: current');
  const fallback = new TransferAssembler(5);
  t.same(fallback.add([soa(7), rr('a'), soa(7)], 0), { kind: 'full', soa: soa(7), records: [rr('a').line], skipped: 0 }, 'IXFR answered with the whole zone (RFC 1995 §4)');

  t.throws(() => new TransferAssembler(undefined).add([rr('a')], 0), /does not start with the SOA/, 'a transfer must open with the SOA');
  t.throws(() => new TransferAssembler(undefined).add([soa(7), rr('a'), soa(8)], 0), /closing SOA's serial 8 is not the opening 7/, 'the closing SOA must be the opening one');
  t.ok(serialNewer(1, 0xffffffff), 'RFC 1982: 1 is newer than 2^32-1');
  t.notOk(serialNewer(5, 5));

  const q = transferQuery('feed.rpz.example.', 42, 0x1234);
  t.equal(q.readUInt16BE(8), 1, 'an IXFR query carries our SOA in the authority section');
  t.equal(decodeTransferMessage(Buffer.from([0, 1, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]))?.answers, undefined, 'a truncated record is malformed');
});

const NSD_NEEDS = { nsd: 'nsd' };
/** A TSIG secret as tsig-keygen prints it (32 random bytes, base64). */
const SECRET = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff)).toString('base64');

t.test('a zone pulled from NSD: AXFR at start, NOTIFY and IXFR after an edit, enforced across a restart with the primary down', { skip: skipUnless(NSD_NEEDS) }, async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-nsd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [nsdPort, dnsPort] = [await freePort(), await freePort()];
  const zone = (serial: number, extra: string[] = []): string =>
    [
      '$ORIGIN feed.rpz.example.',
      '$TTL 60',
      `@ SOA ns.feed.rpz.example. hostmaster.feed.rpz.example. ${serial} 3600 600 86400 60`,
      '@ NS localhost.',
      'bad.example CNAME .',
      '*.bad.example CNAME .',
      'quiet.example CNAME *.',
      ...extra,
      '',
    ].join('\n');
  const zoneFile = join(dir, 'feed.zone');
  writeFileSync(zoneFile, zone(1));
  writeFileSync(join(dir, 'nsd.conf'), [
    'server:',
    `  ip-address: 127.0.0.1@${nsdPort}`,
    `  port: ${nsdPort}`,
    '  do-ip6: no', '  server-count: 1', '  username: ""', '  chroot: ""', `  zonesdir: "${dir}"`, '  database: ""',
    `  pidfile: "${dir}/nsd.pid"`, `  xfrdfile: "${dir}/xfrd.state"`, `  zonelistfile: "${dir}/zone.list"`, `  logfile: "${dir}/nsd.log"`,
    '  rrl-ratelimit: 0',
    'remote-control:', '  control-enable: no',
    'key:', '  name: feed-key', '  algorithm: hmac-sha256', `  secret: "${SECRET}"`,
    'zone:', '  name: "feed.rpz.example"', `  zonefile: "${zoneFile}"`,
    // Transfers and NOTIFY signed with the feed's key (RFC 8945): an unsigned or wrongly signed request is refused.
    '  provide-xfr: 127.0.0.0/8 feed-key', `  notify: 127.0.0.1@${dnsPort} feed-key`, '  store-ixfr: yes', '  create-ixfr: yes',
    '',
  ].join('\n'));
  const nsd = spawn('nsd', ['-d', '-c', join(dir, 'nsd.conf')], { stdio: 'ignore' });
  const stopNsd = async (): Promise<void> => {
    if (nsd.exitCode !== null || nsd.signalCode !== null) return;
    // nsd -d: the process started is xfrd's parent; nsd.pid names the serving child.
    try {
      const pid = readFileSync(join(dir, 'nsd.pid'), 'utf8').trim();
      if (pid) spawnSync('kill', [pid]);
    } catch {
      // not written yet
    }
    const exited = new Promise((r) => nsd.once('exit', r));
    nsd.kill('SIGTERM');
    await exited;
  };
  t.teardown(stopNsd);
  await until('NSD answering', 10_000, async () => {
    try {
      return rcodeOf(await udpExchange(nsdPort, buildQuery('feed.rpz.example', T.SOA), 300)) === 0;
    } catch {
      return false;
    }
  });

  // A key that is not the primary's: the transfer is refused, and sinkhole does not start without the zone.
  const wrong = capture();
  const wrongDir = mkdtempSync(join(tmpdir(), 'sinkhole-badkey-'));
  t.teardown(() => rmSync(wrongDir, { recursive: true, force: true }));
  writeFileSync(join(wrongDir, 'bad.key'), Buffer.alloc(32, 7).toString('base64'));
  writeFileSync(join(wrongDir, 'sinkhole.yaml'), [
    `listen: { dns: ["127.0.0.1:0"] }`, `upstreams: { servers: ["127.0.0.1:${up.port}"] }`,
    `blocking: { rpz: [{ name: feed, primary: "127.0.0.1:${nsdPort}", zone: feed.rpz.example., tsig: { name: feed-key, secretFile: bad.key } }], enforce: [feed] }`, '',
  ].join('\n'));
  await t.rejects(start({ configFile: join(wrongDir, 'sinkhole.yaml'), log: wrong.log, watch: false }), 'with the wrong TSIG secret, no zone and no last good policy: it does not start');
  t.match(wrong.lines.join('\n'), /warn SH_RPZ_TRANSFER .*NOTAUTH/, 'the primary refused the badly signed transfer (NOTAUTH), and the log says so');

  const { log, lines } = capture();
  const config = {
    listen: { dns: [`127.0.0.1:${dnsPort}`] },
    blocking: { rpz: [{ name: 'feed', primary: `127.0.0.1:${nsdPort}`, zone: 'feed.rpz.example.', tsig: { name: 'feed-key', algorithm: 'hmac-sha256', secretFile: 'feed.key' } }], enforce: ['feed'] },
  };
  const h = await startSinkhole(t, up.port, config, { 'feed.key': `${SECRET}\n` }, { log });
  t.match(lines.join('\n'), /info RPZ zone transferred .*"zone":"feed".*"serial":1,"kind":"axfr"/, 'the zone came by AXFR at start');
  t.equal(rcodeOf(await udpExchange(dnsPort, buildQuery('bad.example', T.A))), 3, 'bad.example: NXDOMAIN from the transferred zone');
  t.equal(rcodeOf(await udpExchange(dnsPort, buildQuery('www.bad.example', T.A))), 3, 'its wildcard too');
  const quiet = await udpExchange(dnsPort, buildQuery('quiet.example', T.A));
  t.same([rcodeOf(quiet), quiet.readUInt16BE(6)], [0, 0], 'quiet.example: NODATA (CNAME *.)');
  t.equal(rcodeOf(await udpExchange(dnsPort, buildQuery('evil.example', T.A))), 0, 'evil.example is not in the zone yet');

  // The admin edits the zone on the primary: NSD reloads it (SIGHUP), stores the difference, NOTIFYs us.
  writeFileSync(zoneFile, zone(2, ['evil.example CNAME .']));
  const edited = Date.now();
  spawnSync('kill', ['-HUP', readFileSync(join(dir, 'nsd.pid'), 'utf8').trim()]);
  const ms = await until('evil.example blocked', 5000, async () => rcodeOf(await udpExchange(dnsPort, buildQuery('evil.example', T.A))) === 3);
  t.pass(`the edit was enforced ${Date.now() - edited} ms after the primary reloaded (${ms} ms of polling)`);
  t.match(lines.join('\n'), /"serial":2,"kind":"ixfr".*"why":"NOTIFY"/, 'by IXFR, after the primary\'s NOTIFY');
  const metrics = await h.running.registry.metrics();
  t.match(metrics, /sinkhole_rpz_transfers_total\{zone="feed",result="axfr"\} 1\n/, 'metrics: one AXFR');
  t.match(metrics, /sinkhole_rpz_transfers_total\{zone="feed",result="ixfr"\} [1-9]/, 'and an IXFR');
  t.match(metrics, /sinkhole_rpz_serial\{zone="feed"\} 2\n/, 'serial 2 in force');
  t.match(readFileSync(join(h.dir, '.sinkhole-state', 'rpz', 'feed.zone'), 'utf8'), /evil\.example\.feed\.rpz\.example\. 60 IN CNAME \./, 'the copy under state.dir has the new record');

  // A NOTIFY from an address that is not the primary, or unsigned, is refused and starts nothing.
  const notify = buildQuery('feed.rpz.example', T.SOA, { id: 0x4242 });
  notify[2] = 4 << 3; // opcode NOTIFY, RFC 1996 §3.3
  const checks = (): number => lines.filter((l) => /"why":"NOTIFY"/.test(l) || /RPZ zone transferred/.test(l)).length;
  const before = checks();
  const key = { name: 'feed-key', algorithm: 'hmac-sha256' as const, secret: Buffer.from(SECRET, 'base64') };
  t.equal(rcodeOf(await udpExchange(dnsPort, signTsig(notify, key).wire, 2000, '127.0.0.9')), 5, 'a signed NOTIFY from 127.0.0.9: REFUSED');
  t.equal(rcodeOf(await udpExchange(dnsPort, notify, 2000, '127.0.0.1')), 5, "an unsigned NOTIFY from the primary's address: REFUSED (tsig is configured)");
  const signed = signTsig(notify, key);
  const accepted = await udpExchange(dnsPort, signed.wire, 2000, '127.0.0.1');
  t.same([rcodeOf(accepted), (accepted[2]! >> 3) & 0xf, accepted[2]! & 0x04], [0, 4, 4], "a NOTIFY signed by the feed's key from the primary's address: NOERROR, opcode NOTIFY, AA");
  const answerSplit = splitTsig(accepted);
  t.ok(answerSplit && answerSplit !== 'malformed' && verifyTsig(answerSplit, [key], { requestMac: signed.mac }).ok, 'and the answer is signed over the request (RFC 8945 §5.3)');
  t.equal(checks(), before, 'the refused NOTIFYs started nothing');

  // The primary goes away; sinkhole restarts and still enforces the zone from its copy.
  await h.running.close();
  await stopNsd();
  const again = capture();
  const running = await start({ configFile: h.configFile, log: again.log, watch: false, httpCacheMs: 0 });
  t.teardown(() => running.close());
  t.equal(rcodeOf(await udpExchange(dnsPort, buildQuery('evil.example', T.A))), 3, 'after a restart with the primary down: still blocked');
  t.equal(rcodeOf(await udpExchange(dnsPort, buildQuery('bad.example', T.A))), 3);
  await until('the failed check logged', 5000, () => again.lines.some((l) => l.startsWith('warn SH_RPZ_TRANSFER')));
  t.match(again.lines.find((l) => l.startsWith('warn SH_RPZ_TRANSFER')), /"primary":"127\.0\.0\.1:\d+","serial":2/, 'the failed check names the primary and the serial in force');
});

t.test('blocking.rpz with a primary: config problems at file:line:col', async (t) => {
  const { loadConfig } = await import('../../../src/config/config.js');
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-rpzcfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'short.key'), 'c2hvcnQ=\n');
  writeFileSync(join(dir, 'good.key'), `${SECRET}\n`);
  writeFileSync(join(dir, 'z.zone'), '$ORIGIN z.\n@ SOA ns. h. 1 60 10 600 60\nbad CNAME .\n');
  const problems = (rpz: string): string => {
    writeFileSync(join(dir, 'sinkhole.yaml'), `blocking:\n  rpz:\n    - ${rpz}\n  enforce: [feed]\n`);
    try {
      loadConfig(join(dir, 'sinkhole.yaml'));
      return '';
    } catch (e) {
      return (e as Error).message;
    }
  };
  t.match(problems('{ name: feed, primary: "192.0.2.53:53" }'), /sinkhole\.yaml:3:7: .*needs zone:/, 'a primary without zone:');
  t.match(problems('{ name: feed, primary: "192.0.2.53:53", zone: z., file: z.zone }'), /sinkhole\.yaml:3:7: .*file: or primary:, not both/);
  t.match(problems('{ name: feed, primary: "feed.example:53", zone: z. }'), /sinkhole\.yaml:3:\d+: blocking\.rpz\[0\]\.primary: expected the primary as IP:PORT/);
  t.match(problems('{ name: feed, file: z.zone, tsig: { name: k, secretFile: good.key } }'), /sinkhole\.yaml:3:7: .*tsig: signs transfers from a primary; this zone has none/);
  t.match(problems('{ name: feed, primary: "192.0.2.53:53", zone: z., tsig: { name: k, secretFile: short.key } }'), /short\.key: the secret is 5 bytes/, 'a short TSIG secret');
  const ok = problems('{ name: feed, primary: "192.0.2.53:53", zone: z. }');
  t.equal(ok, '', 'a primary and a zone: valid');
  t.equal(loadConfig(join(dir, 'sinkhole.yaml')).blocking.rpz[0]!.file, join(dir, '.sinkhole-state', 'rpz', 'feed.zone'), 'its copy is kept under state.dir/rpz/');
});
