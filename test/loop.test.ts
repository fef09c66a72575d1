// The whole loop with real parts (issue 20 §3): DHCP, DNS, policy, dnstap. Real DHCP cannot run on
// loopback, so the test makes hosts of its own: two network namespaces joined by a veth pair.
//   router  dnsmasq as the DHCP server (its DNS off), handing out sinkhole's address; sinkhole reads
//           dnsmasq's lease file; a fake upstream on the router's loopback
//   client  a fixed MAC on its veth; busybox udhcpc gets the lease (its script only records what it got
//           and sets the address: nothing on this host is touched)
// The client resolves through the address DHCP gave it (Node's resolver, c-ares) and is sinkholed. It
// keeps trying: one compliance event reaches the SIEM (rsyslog over TLS, CEF) and the NAC (a signed
// webhook), both in the router namespace. Then it is let through by an exception granted to its MAC,
// and keeps it when DHCP moves it to another address.
// dnstap goes to fstrm_capture on a unix socket (files are shared across namespaces; packets are not),
// decoded by dnstap-read and, for the policy field it does not print, by the dnstap.proto schema.
// Every packet stays inside the two namespaces, which the test deletes.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { peersRequired, skipUnless } from './helpers/requires.js';
import { decodeDnstap, splitFrames, type DecodedMessage } from './helpers/dnstapDecode.js';
import { makePki } from './helpers/pki.js';
import { createHmac } from 'node:crypto';

const NEEDS = {
  dnsmasq: 'dnsmasq-base', busybox: 'busybox', ip: 'iproute2', fstrm_capture: 'fstrm-bin', 'dnstap-read': 'bind9-dnsutils', rsyslogd: 'rsyslog',
  '/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so': 'rsyslog-gnutls',
};
/** Blocked queries by one device to one list that make an event (events.threshold). */
const THRESHOLD = 3;
const CLIENT_MAC = '02:00:5e:10:00:01';
const ROUTER_IP = '10.99.0.1';

/** Why namespaces cannot be made here (not root, no CAP_NET_ADMIN), or false. CI (SINKHOLE_REQUIRE_PEERS=1) never skips. */
function namespacesMissing(): string | false {
  if (peersRequired()) return false;
  if (process.getuid?.() !== 0) return 'network namespaces need root (CAP_NET_ADMIN): run as root';
  const name = `shprobe${randomBytes(3).toString('hex')}`;
  const r = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (r.status !== 0) return `cannot make a network namespace: ${r.stderr.trim() || r.error?.message}`;
  spawnSync('ip', ['netns', 'del', name]);
  return false;
}

/** The dnstap messages of a file fstrm_capture wrote. */
function readCapture(file: string): DecodedMessage[] {
  return splitFrames(readFileSync(file)).data.map((f) => decodeDnstap(f).message).filter((m): m is DecodedMessage => m !== undefined);
}

const run = (args: string[]): void => {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim() || r.error?.message}`);
};
const inNs = (ns: string, args: string[]): string[] => ['ip', 'netns', 'exec', ns, ...args];

/** Resolves when `text()` matches, or rejects after ms with what it holds. */
async function until(what: string, ms: number, test: () => boolean, text: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms; got:\n${text()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A process whose output is kept, and killed at teardown. */
function keep(t: { teardown(fn: () => void): void }, args: string[], opts: { cwd?: string } = {}): { proc: ChildProcess; out: () => string } {
  const proc = spawn(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
  });
  return { proc, out: () => out };
}

// Asked from the client namespace with Node's own resolver (c-ares): the rcode as c-ares names it.
const ASK = `const { Resolver } = require('node:dns').promises;
const r = new Resolver({ timeout: 2000, tries: 1 }); r.setServers([process.argv[1]]);
r.resolve4(process.argv[2]).then((a) => console.log('OK ' + a.join(',')), (e) => console.log('ERR ' + e.code));`;

// A fake upstream on the router's loopback: every A is 192.0.2.10 (RFC 5737), TTL 60.
const UPSTREAM = `const dgram = require('node:dgram'); const s = dgram.createSocket('udp4');
s.on('message', (m, r) => { let i = 12; while (m[i]) i += m[i] + 1; const qend = i + 5;
  const h = Buffer.from(m.subarray(0, 12)); h[2] = 0x81; h[3] = 0x80; h.writeUInt16BE(1, 6); h.writeUInt16BE(0, 8); h.writeUInt16BE(0, 10);
  const qtype = m.readUInt16BE(i + 1);
  const ans = qtype === 1 ? Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 10]) : Buffer.alloc(0);
  if (!ans.length) h.writeUInt16BE(0, 6);
  s.send(Buffer.concat([h, m.subarray(12, qend), ans]), r.port, r.address); });
s.bind(5300, '127.0.0.1', () => console.log('upstream ready'));`;

// The SIEM: rsyslog receiving RFC 5425 (syslog over TLS, octet-counted), writing each message as received.
const rsyslogConf = (dir: string, ca: string, cert: string, key: string): string => `
global(workDirectory="${dir}/rsyslog" DefaultNetstreamDriverCAFile="${ca}" DefaultNetstreamDriverCertFile="${cert}" DefaultNetstreamDriverKeyFile="${key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" address="127.0.0.1" port="6514")
template(name="raw" type="string" string="%rawmsg%\\n")
action(type="omfile" file="${dir}/siem.log" template="raw")
`;

// The NAC's webhook: an HTTPS receiver that appends each request's headers and body as a JSON line.
const WEBHOOK = `const https = require('node:https'); const fs = require('node:fs');
const [cert, key, out] = process.argv.slice(1);
https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  let body = ''; req.on('data', (d) => (body += d)); req.on('end', () => {
    fs.appendFileSync(out, JSON.stringify({ headers: req.headers, body }) + '\\n'); res.writeHead(204).end(); });
}).listen(8443, '127.0.0.1', () => console.log('webhook ready'));`;

// udhcpc's script: record the lease's fields, and set the address on the interface.
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"
    echo "ip=$ip dns=$dns" >> "$LEASE_LOG" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
`;

const skip = skipUnless(NEEDS) || namespacesMissing();

t.test('the whole loop: DHCP in namespaces, sinkholed by policy, one event to rsyslog and the webhook, an exception by MAC that follows the device, dnstap', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-loop-'));
  const tag = randomBytes(3).toString('hex');
  const router = `shr${tag}`;
  const client = `shc${tag}`;
  run(['ip', 'netns', 'add', router]);
  t.teardown(() => spawnSync('ip', ['netns', 'del', router]));
  run(['ip', 'netns', 'add', client]);
  t.teardown(() => spawnSync('ip', ['netns', 'del', client]));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  run(['ip', 'link', 'add', `vr${tag}`, 'netns', router, 'type', 'veth', 'peer', 'name', `vc${tag}`, 'netns', client]);
  run(inNs(router, ['ip', 'addr', 'add', `${ROUTER_IP}/24`, 'dev', `vr${tag}`]));
  run(inNs(router, ['ip', 'link', 'set', `vr${tag}`, 'up']));
  run(inNs(router, ['ip', 'link', 'set', 'lo', 'up']));
  run(inNs(client, ['ip', 'link', 'set', `vc${tag}`, 'address', CLIENT_MAC]));
  run(inNs(client, ['ip', 'link', 'set', `vc${tag}`, 'up']));
  run(inNs(client, ['ip', 'link', 'set', 'lo', 'up']));

  // DHCP: dnsmasq with its DNS off (port=0), telling clients that sinkhole is their DNS server.
  const leases = join(dir, 'dnsmasq.leases');
  writeFileSync(leases, '');
  const startDnsmasq = (extra: string[] = []): ReturnType<typeof keep> =>
    keep(t, inNs(router, [
      'dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--port=0', `--interface=vr${tag}`, '--bind-interfaces',
      '--dhcp-range=10.99.0.100,10.99.0.150,255.255.255.0,1h', `--dhcp-option=option:dns-server,${ROUTER_IP}`,
      `--dhcp-leasefile=${leases}`, '--dhcp-authoritative', `--pid-file=${join(dir, 'dnsmasq.pid')}`, '--log-dhcp', '--log-facility=-', ...extra,
    ]));
  let dnsmasq = startDnsmasq();

  const upstream = keep(t, inNs(router, [process.execPath, '-e', UPSTREAM]));
  await until('the fake upstream', 5000, () => upstream.out().includes('upstream ready'), upstream.out);

  // dnstap: fstrm_capture on a unix socket in the test's folder.
  const tapSock = join(dir, 'dnstap.sock');
  const tapFile = join(dir, 'dnstap.fstrm');
  const capture = keep(t, ['fstrm_capture', '-t', 'protobuf:dnstap.Dnstap', '-u', tapSock, '-w', tapFile]);
  await until('fstrm_capture listening', 5000, () => existsSync(tapSock), capture.out);

  // The SIEM (rsyslog over TLS) and the NAC (a webhook), in the router namespace.
  const pki = makePki();
  t.teardown(() => pki.close());
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(dir, 'rsyslog'));
  writeFileSync(join(dir, 'rsyslog.conf'), rsyslogConf(dir, pki.ca, pki.server.cert, pki.server.key));
  const rsyslog = keep(t, inNs(router, ['rsyslogd', '-n', '-f', join(dir, 'rsyslog.conf'), '-i', join(dir, 'rsyslog.pid')]));
  const webhookLog = join(dir, 'webhook.jsonl');
  const webhook = keep(t, inNs(router, [process.execPath, '-e', WEBHOOK, pki.server.cert, pki.server.key, webhookLog]));
  await until('the webhook receiver', 5000, () => webhook.out().includes('webhook ready'), webhook.out);
  await until('rsyslog listening', 10_000, () => spawnSync('ip', ['netns', 'exec', router, 'ss', '-ltn', 'sport = :6514'], { encoding: 'utf8' }).stdout.includes('6514'), rsyslog.out);
  const secret = 'loop-test-webhook-secret-0123456789';
  writeFileSync(join(dir, 'webhook.key'), `${secret}\n`);

  // sinkhole in the router namespace: DNS on the router's address, devices from dnsmasq's leases.
  writeFileSync(join(dir, 'tiktok.txt'), 'tiktok.com\n');
  writeFileSync(join(dir, 'exceptions.yaml'), 'exceptions: []\n');
  writeFileSync(join(dir, 'sinkhole.yaml'), [
    `listen: { dns: ["${ROUTER_IP}:53"] }`,
    'upstreams: { servers: ["127.0.0.1:5300"] }',
    'blocking: { lists: { tiktok: [tiktok.txt] }, enforce: [tiktok] }',
    'exceptions: exceptions.yaml',
    'clients: { allowFrom: ["10.99.0.0/24"] }',
    `identity: { leases: [{ format: dnsmasq, file: ${leases} }] }`,
    `log: { dnstap: { socket: ${tapSock}, identity: loop-test } }`,
    `state: { dir: ${join(dir, 'state')} }`,
    'events:',
    `  threshold: ${THRESHOLD}`,
    '  window: 10m',
    '  cooldown: 1h',
    `  syslog: [{ address: "tls://127.0.0.1:6514", ca: ${pki.ca}, format: cef }]`,
    `  webhook: [{ url: "https://127.0.0.1:8443/hooks/sinkhole", secretFile: ${join(dir, 'webhook.key')}, ca: ${pki.ca} }]`,
    '',
  ].join('\n'));
  const sinkhole = keep(t, inNs(router, [process.execPath, join(import.meta.dirname, '..', 'dist', 'cli.js'), 'serve', '--config', join(dir, 'sinkhole.yaml')]));
  await until('sinkhole serving', 15_000, () => /info serving /.test(sinkhole.out()), sinkhole.out);

  // The client asks for a lease, with the real DHCP exchange over the veth.
  const leaseLog = join(dir, 'udhcpc.log');
  const script = join(dir, 'udhcpc.sh');
  writeFileSync(script, UDHCPC_SCRIPT, { mode: 0o755 });
  const dhcp = (extra: string[]): void => {
    const r = spawnSync('ip', ['netns', 'exec', client, 'busybox', 'udhcpc', '-i', `vc${tag}`, '-s', script, '-n', '-q', '-t', '5', '-T', '1', '-x', 'hostname:member-phone', ...extra], {
      encoding: 'utf8', env: { ...process.env, LEASE_LOG: leaseLog }, timeout: 20_000,
    });
    if (r.status !== 0) throw new Error(`udhcpc failed: ${r.stdout}${r.stderr}\ndnsmasq: ${dnsmasq.out()}`);
  };
  dhcp([]);
  const first = /ip=(\S+) dns=(\S+)/.exec(readFileSync(leaseLog, 'utf8'))!;
  t.ok(first, 'the client got a lease');
  const [, firstIp, dnsServer] = first;
  t.equal(dnsServer, ROUTER_IP, "DHCP gave sinkhole's address as the DNS server");
  t.match(readFileSync(leases, 'utf8'), new RegExp(`${CLIENT_MAC} ${firstIp!.replace(/\./g, '\\.')} member-phone`), "dnsmasq's lease file names the MAC, address and hostname");

  const ask = (name: string): string =>
    spawnSync('ip', ['netns', 'exec', client, process.execPath, '-e', ASK, dnsServer!, name], { encoding: 'utf8', timeout: 10_000 }).stdout.trim();

  t.equal(ask('www.tiktok.com'), 'ERR ENOTFOUND', 'www.tiktok.com is sinkholed (NXDOMAIN) for the client, through the DNS server DHCP gave it');
  t.equal(ask('example.org'), 'OK 192.0.2.10', 'another name is forwarded');

  // The device keeps trying: at the threshold, one event reaches the SIEM and the NAC; more tries
  // within the cooldown send nothing more.
  for (let i = 1; i < THRESHOLD + 3; i++) t.equal(ask(i % 2 ? 'www.tiktok.com' : 'api.tiktok.com'), 'ERR ENOTFOUND', `blocked try ${i + 1}`);
  const siemLog = join(dir, 'siem.log');
  const siemText = (): string => (existsSync(siemLog) ? readFileSync(siemLog, 'utf8') : '');
  await until('the CEF event in rsyslog', 15_000, () => siemText().includes('CEF:'), () => `${siemText()}\nrsyslog: ${rsyslog.out()}\nsinkhole: ${sinkhole.out()}`);
  await until('the webhook event', 15_000, () => existsSync(webhookLog), () => sinkhole.out());
  // Give a second (wrong) event the time it would take to arrive, then count.
  await new Promise((r) => setTimeout(r, 1000));
  const events = siemText().split('\n').filter((l) => l.includes('CEF:'));
  t.equal(events.length, 1, 'exactly one CEF event reached rsyslog over TLS');
  const cef = events[0] ?? '';
  t.match(cef, /^<\d+>1 \S+ /, 'an RFC 5424 message');
  t.match(cef, new RegExp(`smac=${CLIENT_MAC}`), "it names the client's MAC");
  t.match(cef, /shost=member-phone/, 'and its DHCP hostname');
  t.match(cef, new RegExp(`src=${firstIp!.replace(/\./g, '\\.')}`), 'and its address');
  t.match(cef, /cs1Label=list cs1=tiktok/, 'and the list');
  t.match(cef, new RegExp(`cnt=${THRESHOLD}\\b`), 'with the count at the threshold');
  const hooks = readFileSync(webhookLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { headers: Record<string, string>; body: string });
  t.equal(hooks.length, 1, 'exactly one webhook call');
  const hook = hooks[0]!;
  const expected = `sha256=${createHmac('sha256', secret).update(`${hook.headers['x-sinkhole-timestamp']}.${hook.body}`).digest('hex')}`;
  t.equal(hook.headers['x-sinkhole-signature'], expected, 'its HMAC-SHA256 signature verifies');
  const body = JSON.parse(hook.body) as { mac?: string; hostname?: string; list?: string; id?: string };
  t.same({ mac: body.mac, hostname: body.hostname, list: body.list }, { mac: CLIENT_MAC, hostname: 'member-phone', list: 'tiktok' }, 'the JSON names the device and list');
  t.equal(hook.headers['idempotency-key'], body.id, 'with the event id as the idempotency key');

  // An exception for this device, by MAC, granted by editing exceptions.yaml while sinkhole runs.
  writeFileSync(join(dir, 'exceptions.yaml'), [
    'exceptions:',
    '  - id: LOOP-1',
    `    clients: ["mac:${CLIENT_MAC}"]`,
    '    allow: [tiktok]',
    '    reason: "Select committee inquiry"',
    '    approvedBy: "Clerk of the House"',
    `    expires: ${new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)}`,
    '',
  ].join('\n'));
  await until('the exception loaded', 10_000, () => /exception granted id=LOOP-1/.test(sinkhole.out()), sinkhole.out);
  t.equal(ask('www.tiktok.com'), 'OK 192.0.2.10', 'with the exception, the same client resolves www.tiktok.com');

  // DHCP moves the device: the admin reserves it another address (dhcp-host), dnsmasq restarts with
  // its lease file, and the client's next exchange gets the reserved address for its MAC.
  const moved = firstIp === '10.99.0.140' ? '10.99.0.141' : '10.99.0.140';
  dnsmasq.proc.kill('SIGTERM');
  await new Promise((r) => dnsmasq.proc.once('exit', r));
  dnsmasq = startDnsmasq([`--dhcp-host=${CLIENT_MAC},${moved}`]);
  dhcp(['-r', moved]);
  const second = [...readFileSync(leaseLog, 'utf8').matchAll(/ip=(\S+)/g)].at(-1)![1];
  t.equal(second, moved, `DHCP moved the device to ${moved}`);
  await until('dnsmasq moved the lease', 10_000, () => readFileSync(leases, 'utf8').includes(` ${moved} `) && !readFileSync(leases, 'utf8').includes(` ${firstIp} `), () => readFileSync(leases, 'utf8'));
  // The lease file changed; sinkhole re-reads it (identity thread) within a moment.
  let answer = '';
  await until('the exception followed the MAC to the new address', 10_000, () => (answer = ask('www.tiktok.com')) === 'OK 192.0.2.10', () => answer);
  t.pass(`the exception followed the MAC from ${firstIp} to ${moved}`);

  // Stop sinkhole (a clean STOP/FINISH on the stream) and read the capture.
  sinkhole.proc.kill('SIGTERM');
  await new Promise((r) => sinkhole.proc.once('exit', r));
  capture.proc.kill('SIGTERM');
  await new Promise((r) => capture.proc.once('exit', r));
  const read = spawnSync('dnstap-read', ['-y', tapFile], { encoding: 'utf8' });
  t.equal(read.status, 0, 'dnstap-read decodes the capture');
  t.match(read.stdout, /type: CLIENT_RESPONSE/, 'with client responses');
  t.match(read.stdout, /type: FORWARDER_QUERY/, 'and forwarder queries');
  t.match(read.stdout, new RegExp(`query_address: "?${firstIp!.replace(/\./g, '\\.')}"?\\n`), "the client's DHCP address is the query address");
  const messages = readCapture(tapFile);
  const sinkholed = messages.find((m) => m.type === 'CLIENT_RESPONSE' && m.policy?.action === 'NXDOMAIN');
  t.ok(sinkholed, 'a sinkholed answer carries the policy field');
  t.equal(sinkholed?.policy?.match, 'QNAME', 'matched on the query name');
  t.match(sinkholed?.policy?.rule ?? '', /tiktok/, 'naming the list and its rule');
  const passed = messages.find((m) => m.type === 'CLIENT_RESPONSE' && m.policy?.action === 'PASS');
  t.ok(passed, 'the excepted answer carries PASS');
});
