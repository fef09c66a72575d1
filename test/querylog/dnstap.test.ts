// src/querylog/dnstap.ts and fstrm.ts.
// dnstap (log.dnstap, issue 20 §2): sinkhole's Frame Streams output read by
// real readers. fstrm_capture (Debian fstrm-bin) takes the stream on a unix
// socket in a temporary folder, and dnstap-read (bind9-dnsutils) and the
// dnstap CLI (golang-github-dnstap-golang-dnstap-cli) decode what it wrote:
// the message types, addresses, protocols, and the policy on a sinkholed and
// an excepted answer. A receiver written here (no Debian package) checks the
// handshake, the frames, dropping when the queue is full, and the reconnect.
// Clients are Node's dns.Resolver and raw UDP/TCP/DoT/DoH; all on loopback.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { Resolver } from 'node:dns/promises';
import { stringify } from 'yaml';
import { FakeUpstream } from '../helpers/fakeUpstream.js';
import { makePki } from '../helpers/pki.js';
import { skipUnless } from '../helpers/requires.js';
import { startSinkhole, TIKTOK_LIST, type Harness } from '../helpers/sinkhole.js';
import { buildQuery, exchange, rcodeOf, TcpClient, udpExchange } from '../helpers/dns.js';
import { addressText, decodeDnstap, splitFrames, type DecodedMessage } from '../helpers/dnstapDecode.js';
import { streamLogger } from '../../src/log.js';
import { loadConfig } from '../../src/config/config.js';
import { PolicyError } from '../../src/errors.js';
import { CONTROL_ACCEPT, CONTROL_FINISH, CONTROL_READY, CONTROL_START, CONTROL_STOP, controlFrame } from '../../src/querylog/fstrm.js';

interface TapLike {
  teardown(fn: () => unknown): void;
}

const CONTENT_TYPE = 'protobuf:dnstap.Dnstap';
const EXPIRES = new Date(Date.now() + 30 * 86_400_000).toISOString();
const EXCEPTIONS = {
  exceptions: [{ id: 'EX-DNSTAP', clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'Press monitoring', approvedBy: 'Chief Executive', expires: EXPIRES }],
};

const pki = makePki();
t.teardown(() => pki.close());

function policyConfig(dnstap: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: { dns: ['127.0.0.1:0'], dot: ['127.0.0.1:0'], doh: ['127.0.0.1:0'], http: '127.0.0.1:0', tls: { cert: 'tls.crt', key: 'tls.key' } },
    blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
    clients: { allowFrom: ['127.0.0.0/16'] },
    exceptions: 'exceptions.yaml',
    log: { queries: 'none', audit: 'audit.jsonl', dnstap },
    ...extra,
  };
}
const FILES = { 'tiktok.txt': TIKTOK_LIST, 'exceptions.yaml': stringify(EXCEPTIONS), 'tls.crt': pki.server.certPem, 'tls.key': pki.server.keyPem };

function tempDir(t: TapLike): string {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-dnstap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function waitFor(what: string, test: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await test())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function metric(h: Harness, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${h.running.http!.port}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** One query over DoT and one over DoH (HTTP/2 POST), so each socket_protocol is seen. */
async function dotQuery(h: Harness, name: string): Promise<Buffer> {
  const sock = tls.connect({ host: '127.0.0.1', port: h.running.dot[0]!.port, servername: 'dns.test', ca: pki.caPem });
  await once(sock, 'secureConnect');
  const c = TcpClient.over(sock);
  c.send(buildQuery(name, 1, { id: 0x1111 }));
  const [reply] = await c.waitFor(1);
  sock.destroy();
  return reply!;
}

async function dohQuery(h: Harness, name: string): Promise<Buffer> {
  const s = http2.connect(`https://dns.test:${h.running.doh[0]!.port}`, {
    ca: pki.caPem,
    createConnection: () => tls.connect({ host: '127.0.0.1', port: h.running.doh[0]!.port, servername: 'dns.test', ca: pki.caPem, ALPNProtocols: ['h2'] }),
  });
  await once(s, 'connect');
  const req = s.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' });
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.end(buildQuery(name, 1, { id: 0 }));
  await once(req, 'end');
  s.close();
  return Buffer.concat(chunks);
}

// ---------------------------------------------------------------------------------------------------
// Real readers: fstrm_capture, dnstap-read, dnstap.

const READERS = {
  '/usr/bin/fstrm_capture': 'fstrm-bin',
  'dnstap-read': 'bind9-dnsutils',
  dnstap: 'golang-github-dnstap-golang-dnstap-cli',
};

/** fstrm_capture on a unix socket in `dir`, writing `file`; resolves once the socket is there. */
async function fstrmCapture(t: TapLike, dir: string): Promise<{ sock: string; file: string; stop: () => Promise<void> }> {
  const sock = join(dir, 'dnstap.sock');
  const file = join(dir, 'capture.fstrm');
  const child: ChildProcess = spawn('fstrm_capture', ['-t', CONTENT_TYPE, '-u', sock, '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit');
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // SIGINT: fstrm_capture finishes its output file (a STOP frame) and exits.
    child.kill('SIGINT');
    await exited;
  };
  t.teardown(stop);
  await waitFor(`fstrm_capture's socket (${stderr})`, () => existsSync(sock));
  return { sock, file, stop };
}

t.test('real readers: fstrm_capture takes the stream, dnstap-read and dnstap decode every message and the policy', { skip: skipUnless(READERS) }, async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const dir = tempDir(t);
  const cap = await fstrmCapture(t, dir);
  const h = await startSinkhole(t, up.port, policyConfig({ socket: cap.sock, identity: 'sinkhole-test' }), FILES);
  await waitFor('the stream to open', async () => (await metric(h, 'sinkhole_dnstap_connected')) === 1);

  // Forwarded (UDP, from c-ares), sinkholed (UDP), excepted (UDP from 127.0.0.7), then TCP, DoT, DoH.
  t.same(await h.resolver.resolve4('www.example.test'), ['192.0.2.10'], 'forwarded');
  await t.rejects(h.resolver.resolve4('www.tiktok.com'), { code: 'ENOTFOUND' }, 'sinkholed: NXDOMAIN');
  const excepted = new Resolver({ timeout: 3000, tries: 1 });
  excepted.setLocalAddress('127.0.0.7');
  excepted.setServers([`127.0.0.1:${h.port}`]);
  t.same(await excepted.resolve4('tiktok.com'), ['192.0.2.10'], 'excepted: the real answer');
  t.equal(rcodeOf(await exchange('tcp', h.port, buildQuery('tcp.example.test', 1))), 0, 'over TCP');
  t.equal(rcodeOf(await dotQuery(h, 'dot.example.test')), 0, 'over DoT');
  t.equal(rcodeOf(await dohQuery(h, 'doh.example.test')), 0, 'over DoH');

  // Closing sinkhole sends STOP and waits for FINISH, so every frame is in the file before fstrm_capture stops.
  await h.running.close();
  await cap.stop();

  // BIND's dnstap-read: YAML, one document per message.
  const bind = spawnSync('dnstap-read', ['-y', cap.file], { encoding: 'utf8' });
  t.equal(bind.status, 0, `dnstap-read exits 0 ${bind.stderr}`);
  const docs = bind.stdout.split(/^---$/m).filter((d) => d.trim());
  const types = docs.map((d) => /^ {2}type: (\w+)/m.exec(d)?.[1]);
  const count = (type: string): number => types.filter((x) => x === type).length;
  t.same([count('CLIENT_QUERY'), count('CLIENT_RESPONSE')], [6, 6], 'dnstap-read: a CLIENT_QUERY and a CLIENT_RESPONSE per query');
  // The sinkholed name never goes upstream; the five others do, once each.
  t.same([count('FORWARDER_QUERY'), count('FORWARDER_RESPONSE')], [5, 5], 'dnstap-read: a FORWARDER_QUERY and _RESPONSE per upstream exchange');
  t.ok(docs.every((d) => /^identity: sinkhole-test$/m.test(d)), 'identity as configured');
  // The query as it went on the wire: the transport's own ID (RFC 5452 §9.2), the one its reply carries.
  const fwdIds = docs.filter((d) => /type: FORWARDER_(QUERY|RESPONSE)/.test(d)).map((d) => [/type: (FORWARDER_\w+)/.exec(d)?.[1], /^ {4}id: (\d+)$/m.exec(d)?.[1]]);
  const pairs = fwdIds.flatMap(([type, id], i) => (type === 'FORWARDER_QUERY' ? [[id, fwdIds[i + 1]?.[1]]] : []));
  t.ok(pairs.length === 5 && pairs.every(([q, r]) => q !== undefined && q === r), `each FORWARDER_QUERY carries the ID of its FORWARDER_RESPONSE: ${JSON.stringify(pairs)}`);

  const excepted7 = docs.find((d) => /type: CLIENT_QUERY/.test(d) && /query_address: "127\.0\.0\.7"/.test(d));
  t.match(excepted7, new RegExp(`response_port: ${h.port}\\b`), 'the client address, and the listener port it asked');

  // The dnstap CLI (golang-dnstap): the transports.
  const go = spawnSync('dnstap', ['-r', cap.file, '-y'], { encoding: 'utf8' });
  t.equal(go.status, 0, `dnstap exits 0 ${go.stderr}`);
  const gdocs = go.stdout.split(/^---$/m).filter((d) => d.trim());
  const responses = gdocs.filter((d) => /type: CLIENT_RESPONSE/.test(d));
  t.same(responses.map((d) => /socket_protocol: (\w+)/.exec(d)?.[1]), ['UDP', 'UDP', 'UDP', 'TCP', 'DOT', 'DOH'], 'dnstap: socket_protocol per transport');
  const fwd = gdocs.filter((d) => /type: FORWARDER_(QUERY|RESPONSE)/.test(d));
  t.ok(fwd.every((d) => new RegExp(`response_port: ${up.port}\\b`).test(d) && /response_address: 127\.0\.0\.1/.test(d)), 'dnstap: forwarder messages name the upstream');

  // Neither CLI prints the Policy message: protobufjs with the real dnstap.proto reads it from the same file.
  const { control, data } = splitFrames(readFileSync(cap.file));
  t.same(control.map((c) => c.type), [CONTROL_START, CONTROL_STOP], 'the file is START, data, STOP');
  const msgs = data.map((d) => decodeDnstap(d).message!);
  const answers = msgs.filter((m) => m.type === 'CLIENT_RESPONSE');
  const blocked = answers.find((m) => m.policy?.action === 'NXDOMAIN');
  t.same(blocked?.policy && { ...blocked.policy, value: blocked.policy.value?.toString('latin1') }, {
    type: 'sinkhole', rule: 'tiktok:tiktok.com', action: 'NXDOMAIN', match: 'QNAME', value: '\x03www\x06tiktok\x03com\x00',
  }, 'the sinkholed answer: list:rule, QNAME, NXDOMAIN, the name in wire form');
  const pass = answers.find((m) => m.policy?.action === 'PASS');
  t.same(pass?.policy && { ...pass.policy, value: addressText(pass.policy.value) }, {
    type: 'sinkhole', rule: 'tiktok:tiktok.com', action: 'PASS', match: 'CLIENT_IP', value: '127.0.0.7',
  }, 'the excepted answer: PASS, matched on the client address');
  t.equal(answers.filter((m) => m.policy).length, 2, 'answers without a verdict carry no policy');
});

// ---------------------------------------------------------------------------------------------------
// A Frame Streams receiver written here: no Debian package needed.

/** The reader's side of fstrm's bidirectional handshake on a unix socket: ACCEPT on READY, FINISH on STOP. */
class Receiver {
  readonly controls: number[] = [];
  readonly frames: Buffer[] = [];
  connections = 0;
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly path: string) {}

  async listen(): Promise<void> {
    const server = net.createServer((sock) => {
      this.connections++;
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
      sock.on('error', () => {});
      let pending = Buffer.alloc(0);
      sock.on('data', (chunk: Buffer) => {
        const { control, data, rest } = splitFrames(Buffer.concat([pending, chunk]));
        pending = Buffer.from(rest);
        this.frames.push(...data.map((d) => Buffer.from(d)));
        for (const c of control) {
          this.controls.push(c.type);
          if (c.type === CONTROL_READY && c.contentTypes.includes(CONTENT_TYPE)) sock.write(controlFrame(CONTROL_ACCEPT, CONTENT_TYPE));
          if (c.type === CONTROL_STOP) sock.end(controlFrame(CONTROL_FINISH));
        }
      });
    });
    server.listen(this.path);
    await once(server, 'listening');
    this.server = server;
  }

  /** Goes away as a collector that crashed would: connections cut, socket file removed. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server?.close(r));
  }

  decoded(): DecodedMessage[] {
    return this.frames.map((f) => decodeDnstap(f).message!);
  }
}

t.test('Frame Streams: handshake, frames, drop-and-count when the queue is full, reconnect after the collector restarts', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const dir = tempDir(t);
  const rx = new Receiver(join(dir, 'collector.sock'));
  t.teardown(() => rx.stop());
  const lines: string[] = [];
  const h = await startSinkhole(
    t, up.port,
    policyConfig({ socket: rx.path, messages: ['client'], queue: 4 }, { blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'], response: { a: '192.0.2.66' } } }),
    FILES, { log: streamLogger((l) => lines.push(l)) },
  );

  // No collector yet: five queries make ten messages, four wait, six are dropped and counted. DNS is unaffected.
  for (let i = 0; i < 5; i++) t.equal(rcodeOf(await udpExchange(h.port, buildQuery(`q${i}.example.test`, 1))), 0, `query ${i} answered with no collector`);
  t.equal(await metric(h, 'sinkhole_dnstap_dropped_total'), 6, 'queue of 4: six of ten dropped and counted');
  t.equal(await metric(h, 'sinkhole_dnstap_connected'), 0);
  t.ok(lines.some((l) => / warn SH_DNSTAP dnstap collector unreachable/.test(l)), 'the outage is logged with its code, once');

  // The collector comes up: the writer reconnects (backoff from 0.5 s), shakes hands, sends what waited.
  await rx.listen();
  await waitFor('the four queued messages', () => rx.frames.length >= 4);
  t.same(rx.controls, [CONTROL_READY, CONTROL_START], 'READY, then START after our ACCEPT');
  const queued = rx.decoded();
  t.same(queued.map((m) => m.type), ['CLIENT_QUERY', 'CLIENT_RESPONSE', 'CLIENT_QUERY', 'CLIENT_RESPONSE'], 'the oldest kept, in order');
  t.same([addressText(queued[0]!.queryAddress), addressText(queued[0]!.responseAddress), queued[0]!.responsePort], ['127.0.0.1', '127.0.0.1', h.port]);
  t.equal(queued[0]!.socketProtocol, 'UDP');
  t.ok(queued[0]!.queryPort! > 0, 'the client port is there');
  t.ok(queued[0]!.queryMessage!.includes(Buffer.from('\x02q0\x07example\x04test\x00', 'latin1')), 'the query as received');
  t.equal(await metric(h, 'sinkhole_dnstap_connected'), 1);
  const sec = queued[1]!.responseTimeSec!;
  t.ok(Math.abs(sec - Date.now() / 1000) < 60, 'times are seconds since the epoch');

  // The configured answer kinds: LOCAL_DATA for addresses given, NODATA for a type they do not cover.
  rx.frames.length = 0;
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('tiktok.com', 1))), 0);
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('tiktok.com', 16))), 0);
  await waitFor('the four messages', () => rx.frames.length >= 4);
  const actions = rx.decoded().filter((m) => m.type === 'CLIENT_RESPONSE').map((m) => [m.policy?.action, m.policy?.match, m.policy?.rule]);
  t.same(actions, [['LOCAL_DATA', 'QNAME', 'tiktok:tiktok.com'], ['NODATA', 'QNAME', 'tiktok:tiktok.com']], 'policy.action as configured');
  t.notOk(rx.decoded().some((m) => m.type.startsWith('FORWARDER')), 'messages: [client] sends no forwarder messages');

  // The collector restarts: the stream comes back by itself.
  await rx.stop();
  await waitFor('the writer to notice', async () => (await metric(h, 'sinkhole_dnstap_connected')) === 0);
  await rx.listen();
  await waitFor('the reconnect', async () => (await metric(h, 'sinkhole_dnstap_connected')) === 1);
  t.equal(rx.connections, 2, 'a second connection');
  rx.frames.length = 0;
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('after.example.test', 1))), 0);
  await waitFor('messages on the new stream', () => rx.frames.length >= 2);
  t.ok(lines.some((l) => / warn SH_DNSTAP dnstap collector closed the connection/.test(l)), 'the cut is logged with its code');

  // Shutdown: STOP, and the writer waits for our FINISH.
  await h.running.close();
  t.equal(rx.controls.at(-1), CONTROL_STOP, 'STOP at shutdown');
});

t.test('log.dnstap config: one target, a real port, known message kinds', async (t) => {
  const dir = tempDir(t);
  const problems = (dnstap: string): string[] => {
    const f = join(dir, 'c.yaml');
    writeFileSync(f, `log:\n  dnstap: ${dnstap}\n`);
    try {
      const c = loadConfig(f);
      t.ok(c.log.dnstap, 'read');
      return [];
    } catch (e) {
      if (!(e instanceof PolicyError)) throw e;
      return e.problems.map((p) => `${p.code} ${p.message}`);
    }
  };
  t.same(problems('{ socket: /run/sinkhole/dnstap.sock }'), []);
  t.same(problems('{ tcp: "127.0.0.1:6000", identity: ns1, messages: [forwarder], queue: 100 }'), []);
  t.match(problems('{ socket: /x, tcp: "127.0.0.1:6000" }'), [/SH_CONFIG_INVALID .*exactly one of socket/]);
  t.match(problems('{ identity: ns1 }'), [/SH_CONFIG_INVALID .*exactly one of socket/]);
  t.match(problems('{ tcp: "127.0.0.1:0" }'), [/SH_CONFIG_INVALID .*port must be 1 to 65535/]);
  t.match(problems('{ socket: /x, messages: [auth] }'), [/SH_CONFIG_INVALID/]);
  t.match(problems('{ socket: /x, messages: [] }'), [/SH_CONFIG_INVALID .*client, forwarder or both/]);
  t.match(problems('{ socket: /x, sample: 3 }'), [/SH_CONFIG_INVALID .*unknown key/]);
});

t.test('workers: each query thread has its own stream to the collector', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const dir = tempDir(t);
  const rx = new Receiver(join(dir, 'collector.sock'));
  await rx.listen();
  t.teardown(() => rx.stop());
  const h = await startSinkhole(t, up.port, { ...policyConfig({ socket: rx.path, messages: ['client'] }), workers: 2 }, FILES);
  await waitFor('a stream per thread', async () => (await metric(h, 'sinkhole_dnstap_connected')) === 2);
  t.equal(rx.connections, 2, 'two connections, one per query thread');
  // Each query from a fresh source port, so SO_REUSEPORT spreads them over the threads.
  const names = Array.from({ length: 20 }, (_, i) => `w${i}.example.test`);
  await Promise.all(names.map((n) => udpExchange(h.port, buildQuery(n, 1))));
  await waitFor('every message', () => rx.frames.length >= 40);
  t.same(new Set(rx.decoded().map((m) => m.type)), new Set(['CLIENT_QUERY', 'CLIENT_RESPONSE']));
  t.equal(await metric(h, 'sinkhole_dnstap_sent_total'), 40, 'sent is summed over the threads');
});
