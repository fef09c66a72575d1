// src/transport/dot.ts, doh.ts and tlsFiles.ts: encrypted DNS for devices (issue 12). DoT and DoH
// listeners running the same pipeline and policy as UDP/TCP, their limits, the certificate reload,
// shutdown, padded EDNS queries, and the config keys of the whole feature. Clients are Node's own
// TLS, HTTP/2 and HTTPS clients (kdig is the outside client in .ci/interop.sh); everything is on
// 127.0.0.1. (DDR: test/stages/stages.test.ts.)
import t from 'tap';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { makePki, type Pair } from '../helpers/pki.js';
import { encryptedConfig, encryptedFiles } from '../helpers/encrypted.js';
import { startSinkhole, type Harness } from '../helpers/sinkhole.js';
import { buildQuery, decode, ednsOptions, rcodeOf, TcpClient, udpExchange } from '../helpers/dns.js';
import { QTYPE_SLOTS } from '../../src/metrics/stats.js';
import { loadConfig } from '../../src/config/config.js';
import { PolicyError } from '../../src/errors.js';
import { dohGet as get, h2connect, h2request, type HttpReply } from '../helpers/doh.js';

const pki = makePki();
t.teardown(() => pki.close());
const ROOT = join(import.meta.dirname, '..', '..');

const FILES = encryptedFiles(pki);
const config = encryptedConfig;

async function dotClient(h: Harness, opts: { from?: string; ca?: string | false } = {}): Promise<TcpClient & { tls: tls.TLSSocket }> {
  const raw = net.connect({ host: '127.0.0.1', port: h.running.dot[0]!.port, localAddress: opts.from });
  const sock = tls.connect({ socket: raw, servername: 'dns.test', ...(opts.ca === false ? { rejectUnauthorized: false } : { ca: opts.ca ?? pki.caPem }) });
  await once(sock, 'secureConnect');
  return Object.assign(TcpClient.over(sock), { tls: sock });
}


const post = (q: Buffer, type = 'application/dns-message'): http2.OutgoingHttpHeaders => ({ ':method': 'POST', ':path': '/dns-query', 'content-type': type, accept: 'application/dns-message' });

async function metricsText(h: Harness): Promise<string> {
  return (await fetch(`http://127.0.0.1:${h.running.http!.port}/metrics`)).text();
}

t.test('DoT listener: same pipeline and policy as TCP, pipelined out of order, counted as proto dot', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('slow.example.test', { delayMs: 300 });
  const h = await startSinkhole(t, up.port, config(), FILES);
  const c = await dotClient(h);
  t.teardown(() => c.close());
  c.send(buildQuery('slow.example.test', T.A, { id: 1 }));
  c.send(buildQuery('www.example.test', T.A, { id: 2 }));
  c.send(buildQuery('www.tiktok.com', T.A, { id: 3 }));
  const replies = await c.waitFor(3);
  t.equal(replies[2]!.readUInt16BE(0), 1, 'answers as each completes: the slow one, asked first, comes last (RFC 7766 §6.2.1.1)');
  const byId = new Map(replies.map((r) => [r.readUInt16BE(0), r]));
  t.equal((decode(byId.get(2)!).answers[0] as { address: string }).address, '192.0.2.10', 'forwarded');
  t.equal(rcodeOf(byId.get(3)!), 3, 'a blocked name is sinkholed over DoT');
  t.match(await metricsText(h), /sinkhole_encrypted_connections\{proto="dot"\} 1\b/, 'the open DoT connection is in the gauge');
  t.equal(h.running.stats.queryCount('dot', QTYPE_SLOTS.indexOf('A')), 3, 'counted under proto="dot"');
  t.equal(h.running.stats.queryCount('tcp', QTYPE_SLOTS.indexOf('A')), 0, 'not under tcp');

  const outsider = await dotClient(h, { from: '127.1.0.1' });
  outsider.send(buildQuery('www.example.test', T.A));
  t.equal(rcodeOf((await outsider.waitFor(1))[0]!), 5, 'a client outside allowFrom gets REFUSED: the client is the TCP peer');
  await outsider.closed;
  t.pass('and its connection is closed, as over TCP');
});

/** A plain TCP connection that never says a word (no ClientHello): it stays open until the server closes it. */
function silent(port: number, from?: string): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from }, () => resolve(s));
    s.on('error', () => {});
    s.resume(); // a socket that never reads never sees the server close it
  });
}

/** Resolves once the socket is closed (at once if it already is). */
const gone = (s: net.Socket): Promise<unknown> => (s.destroyed ? Promise.resolve() : once(s, 'close'));
const isOpen = (s: net.Socket): Promise<boolean> => new Promise((r) => setImmediate(() => r(!s.destroyed && s.readyState === 'open')));

t.test("DoT listener: the TCP listener's limits apply from accept, handshakes included, with eviction", async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, config({ tcpMaxConnections: 4, tcpMaxConnectionsPerClient: 3, tcpIdleTimeout: '5s' }), FILES);
  const port = h.running.dot[0]!.port;
  // Connections that never start a handshake: one address holds at most its 3 (each new one takes the place of its oldest).
  const raw: net.Socket[] = [];
  t.teardown(() => raw.forEach((s) => s.destroy()));
  for (let i = 0; i < 6; i++) raw.push(await silent(port, '127.0.3.1'));
  await Promise.all(raw.slice(0, 3).map(gone));
  t.same(await Promise.all(raw.map(isOpen)), [false, false, false, true, true, true], 'a stalled handshake counts against the per-client cap');
  raw.push(await silent(port, '127.0.3.2'));
  // Full now (3 + 1 stalled handshakes): a DoT client from another address takes a stalled one's slot at once.
  const started = Date.now();
  const c = await dotClient(h, { from: '127.0.3.3' });
  t.teardown(() => c.close());
  c.send(buildQuery('www.example.test', T.A));
  t.equal(rcodeOf((await c.waitFor(1))[0]!), 0, 'a newcomer is served while stalled handshakes fill the table');
  t.ok(Date.now() - started < 1000, `within a second, not after the handshake timeout (${Date.now() - started} ms)`);
  t.same(await Promise.all(raw.slice(3).map(isOpen)), [false, true, true, true], 'the biggest holder lost its oldest stalled handshake');

  // Full of idle TLS sessions (4 addresses, one each): a fifth address still gets in, evicting an idle session.
  raw.forEach((s) => s.destroy());
  c.close();
  while (!/sinkhole_encrypted_connections\{proto="dot"\} 0\b/.test(await metricsText(h))) await new Promise((r) => setTimeout(r, 20));
  const idle = await Promise.all([1, 2, 3, 4].map((i) => dotClient(h, { from: `127.0.4.${i}` })));
  t.teardown(() => idle.forEach((s) => s.close()));
  for (const s of idle) s.send(buildQuery('www.example.test', T.A));
  await Promise.all(idle.map((s) => s.waitFor(1)));
  const late = await dotClient(h, { from: '127.0.4.9' });
  t.teardown(() => late.close());
  late.send(buildQuery('www.example.test', T.A));
  t.equal(rcodeOf((await late.waitFor(1))[0]!), 0, 'a newcomer is served when idle sessions fill the table');
  t.match(await metricsText(h), /sinkhole_tcp_evictions_total\{proto="dot"\} [1-9]/, 'evictions counted under proto="dot"');
  await Promise.race(idle.map((s) => s.closed));
  t.pass('one idle session gave way');
});

t.test('DoH listener: GET and POST, HTTP/2 and HTTP/1.1, status codes, policy, caching headers, limits', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, config(), FILES);
  const s = await h2connect(h, pki.caPem);
  t.teardown(() => s.close());
  t.equal(s.remoteSettings.maxConcurrentStreams, 100, 'at most 100 streams per connection');

  const q = buildQuery('www.example.test', T.A, { id: 0 });
  const p = await h2request(s, post(q), q);
  t.equal(p.status, 200, 'POST: 200');
  t.equal(p.headers['content-type'], 'application/dns-message');
  t.equal((decode(p.body).answers[0] as { address: string }).address, '192.0.2.10', 'POST: forwarded answer');
  t.equal(p.headers['cache-control'], 'max-age=300', 'freshness = the smallest answer TTL (RFC 8484 §5.1)');
  const g = await h2request(s, get(buildQuery('get.example.test', T.AAAA, { id: 0 })));
  t.equal(g.status, 200, 'GET: 200');
  t.equal(g.body.readUInt16BE(0), 0, 'GET: ID 0 echoed');
  t.equal((decode(g.body).answers[0] as { address: string }).address, '2001:db8::10');
  const b = await h2request(s, get(buildQuery('www.tiktok.com', T.A, { id: 0 })));
  t.equal(rcodeOf(b.body), 3, 'a blocked name over DoH is sinkholed');
  t.equal(b.headers['cache-control'], 'max-age=10', 'for blocking.ttl (the SOA of the sinkhole answer)');
  const f = await h2request(s, get(Buffer.concat([buildQuery('x.example.test', T.A).subarray(0, 4), Buffer.from([0, 2, 0, 0, 0, 0, 0, 0])])));
  t.equal(rcodeOf(f.body), 1, 'a malformed query: 200 with FORMERR');
  t.equal(f.headers['cache-control'], 'max-age=0');

  const many = await Promise.all(Array.from({ length: 30 }, (_, i) => {
    const m = buildQuery(`m${i}.example.test`, T.A, { id: 0 });
    return h2request(s, post(m), m);
  }));
  t.ok(many.every((r) => r.status === 200 && rcodeOf(r.body) === 0), '30 concurrent streams on one connection, all answered');

  const errors: [string, http2.OutgoingHttpHeaders, Buffer | undefined, number][] = [
    ['another path', get(q, '/other'), undefined, 404],
    ['PUT', { ':method': 'PUT', ':path': '/dns-query' }, q, 405],
    ['POST of text/plain', post(q, 'text/plain'), q, 415],
    ['GET without dns=', { ':method': 'GET', ':path': '/dns-query?x=1' }, undefined, 400],
    ['GET with a dns= that is not base64url', { ':method': 'GET', ':path': '/dns-query?dns=a%20b*' }, undefined, 400],
    ['POST of a DNS response', post(q), Buffer.from([...q.subarray(0, 2), 0x80, ...q.subarray(3)]), 400],
    ['POST of 70000 octets', post(q), Buffer.alloc(70_000), 413],
  ];
  for (const [what, headers, body, status] of errors) t.equal((await h2request(s, headers, body)).status, status, `${what}: ${status}`);
  t.equal(rcodeOf((await h2request(s, post(q), q)).body), 0, 'the connection still serves after all that');

  // HTTP/1.1, for clients without HTTP/2.
  const h1 = await new Promise<HttpReply>((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: h.running.doh[0]!.port, servername: 'dns.test', ca: pki.caPem, method: 'GET',
      path: `/dns-query?dns=${buildQuery('h1.example.test', T.A, { id: 0 }).toString('base64url')}`,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
  t.equal(h1.status, 200, 'HTTP/1.1 GET: 200');
  t.equal((decode(h1.body).answers[0] as { address: string }).address, '192.0.2.10');

  const outsider = await h2connect(h, pki.caPem, '127.1.0.1');
  t.teardown(() => outsider.destroy());
  t.equal(rcodeOf((await h2request(outsider, post(q), q)).body), 5, 'a client outside allowFrom gets REFUSED over DoH');
  const m = await metricsText(h);
  t.match(m, /sinkhole_queries_total\{proto="doh",qtype="A"\} \d+/, 'counted under proto="doh"');
  t.equal(h.running.stats.queryCount('doh', QTYPE_SLOTS.indexOf('AAAA')), 1);
  t.match(m, /sinkhole_encrypted_connections\{proto="doh"\} [1-9]/, 'open DoH connections in the gauge');
});

t.test('DoH listener: per-client cap and eviction from accept, a stream-reset budget, request deadlines', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, config({ tcpMaxConnections: 4, tcpMaxConnectionsPerClient: 3, tcpIdleTimeout: '1s' }), FILES);
  const port = h.running.doh[0]!.port;
  const raw: net.Socket[] = [];
  t.teardown(() => raw.forEach((s) => s.destroy()));
  for (let i = 0; i < 5; i++) raw.push(await silent(port, '127.0.5.1'));
  await Promise.all(raw.slice(0, 2).map(gone));
  t.same(await Promise.all(raw.map(isOpen)), [false, false, true, true, true], 'silent connections count against the per-client cap from accept');
  raw.push(await silent(port, '127.0.5.2'));
  const q = buildQuery('www.example.test', T.A, { id: 0 });
  const started = Date.now();
  const s = await h2connect(h, pki.caPem, '127.0.5.3');
  t.teardown(() => s.destroy());
  t.equal((await h2request(s, post(q), q)).status, 200, 'a newcomer is served while stalled handshakes fill the table');
  t.ok(Date.now() - started < 1000, `at once, not after the handshake timeout (${Date.now() - started} ms)`);
  t.match(await metricsText(h), /sinkhole_tcp_evictions_total\{proto="doh"\} [1-9]/, 'evictions counted under proto="doh"');
  raw.forEach((r) => r.destroy());

  // HTTP/1.1 headers, and a chunked body, dripped a byte every 100 ms: bytes do not extend the deadline (1 s here).
  const drip = async (first: string, each: (i: number) => string): Promise<number> => {
    const sock = tls.connect({ socket: net.connect({ port, host: '127.0.0.1', localAddress: '127.0.5.4' }), servername: 'dns.test', ca: pki.caPem, ALPNProtocols: ['http/1.1'] });
    sock.on('error', () => {});
    sock.resume();
    await once(sock, 'secureConnect');
    const opened = Date.now();
    sock.write(first);
    const timer = setInterval(() => sock.writable && sock.write(each(0)), 100);
    await new Promise((r) => sock.once('close', r));
    clearInterval(timer);
    return Date.now() - opened;
  };
  const head = `GET /dns-query?dns=${q.toString('base64url')} HTTP/1.1\r\nHost: dns.test\r\nX-Slow: `;
  const lived = await Promise.all([
    drip(head, () => 'a'),
    drip('POST /dns-query HTTP/1.1\r\nHost: dns.test\r\nContent-Type: application/dns-message\r\nTransfer-Encoding: chunked\r\n\r\n', () => '1\r\nx\r\n'),
  ]);
  t.ok(lived.every((ms) => ms < 2000), `dripped headers and a dripped body are cut at the deadline (${lived.join(', ')} ms)`);

  // Rapid reset (CVE-2023-44487): requests opened and cancelled at once, until the server closes the connection.
  const abuser = await h2connect(h, pki.caPem, '127.0.5.5');
  let pairs = 0;
  const closed = new Promise((r) => abuser.once('close', r));
  abuser.on('error', () => {});
  while (!abuser.closed && !abuser.destroyed && pairs < 5000) {
    try {
      for (let i = 0; i < 20; i++, pairs++) {
        const req = abuser.request({ ':method': 'POST', ':path': '/dns-query', 'content-type': 'application/dns-message' }, { endStream: false });
        req.on('error', () => {});
        req.close(http2.constants.NGHTTP2_CANCEL);
      }
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await closed;
  t.ok(pairs <= 300, `the connection was closed after ${pairs} resets (budget 100 in 10 s)`);
  t.match(await metricsText(h), /sinkhole_doh_resets_closed_total 1\b/, 'counted');
  const again = await h2connect(h, pki.caPem, '127.0.5.5').then(
    (x) => (x.destroy(), 'served'),
    () => 'refused',
  );
  t.equal(again, 'refused', 'the address is refused at accept for a while');
  const other = await h2connect(h, pki.caPem, '127.0.5.6');
  t.teardown(() => other.destroy());
  t.equal((await h2request(other, post(q), q)).status, 200, 'others are still served');
});

t.test('listen.tls: re-read on reload (SIGHUP); a broken pair is refused and the one in use stays', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, config(), FILES);
  const certOf = async (proto: 'dot' | 'doh'): Promise<string> => {
    const port = (proto === 'dot' ? h.running.dot : h.running.doh)[0]!.port;
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'dns.test', rejectUnauthorized: false, ALPNProtocols: proto === 'doh' ? ['h2'] : undefined });
    await once(s, 'secureConnect');
    const fp = s.getPeerCertificate().fingerprint256;
    s.destroy();
    return fp;
  };
  const fingerprint = (p: Pair): string => new X509Certificate(p.certPem).fingerprint256;
  t.equal(await certOf('dot'), fingerprint(pki.server), 'DoT starts with the configured certificate');
  copyFileSync(pki.rogue.cert, join(h.dir, 'tls.crt'));
  copyFileSync(pki.rogue.key, join(h.dir, 'tls.key'));
  t.equal(h.running.reloadTls(), undefined, 'the new pair is accepted');
  t.equal(await certOf('dot'), fingerprint(pki.rogue), 'DoT serves the new certificate');
  t.equal(await certOf('doh'), fingerprint(pki.rogue), 'DoH too');
  copyFileSync(pki.server.cert, join(h.dir, 'tls.crt')); // with the rogue key: not a pair
  t.match(h.running.reloadTls(), /not a certificate and its key/, 'a certificate with the wrong key is refused');
  t.equal(await certOf('dot'), fingerprint(pki.rogue), 'and the pair in use stays');
});

t.test('shutdown: DoT and DoH answer the queries in flight, then close', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('slow.example.test', { delayMs: 300 });
  const h = await startSinkhole(t, up.port, config(), FILES);
  const c = await dotClient(h);
  const s = await h2connect(h, pki.caPem);
  c.send(buildQuery('slow.example.test', T.A, { id: 9 }));
  const q = buildQuery('slow.example.test', T.AAAA, { id: 0 });
  const viaDoh = h2request(s, post(q), q);
  await new Promise((r) => setTimeout(r, 100)); // both are upstream now
  const closing = h.running.close();
  const [dotReply] = await c.waitFor(1);
  t.equal(rcodeOf(dotReply!), 0, 'the DoT query in flight is answered');
  t.equal(rcodeOf((await viaDoh).body), 0, 'the DoH query in flight is answered');
  await closing;
  await c.closed;
  t.pass('and the DoT connection is closed');
  t.ok(s.closed || s.destroyed || (await once(s, 'close').then(() => true)), 'the HTTP/2 session got GOAWAY and closed');
});

t.test('config: the encrypted forms and keys, checked at file:line:col', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-enc-config-'));
  writeFileSync(join(dir, 'ca.pem'), pki.caPem);
  writeFileSync(join(dir, 'not-a-ca.pem'), 'hello\n');
  writeFileSync(join(dir, 'tls.crt'), pki.server.certPem);
  writeFileSync(join(dir, 'tls.key'), pki.server.keyPem);
  writeFileSync(join(dir, 'rogue.key'), pki.rogue.keyPem);
  const load = (text: string): ReturnType<typeof loadConfig> | string[] => {
    writeFileSync(join(dir, 'sinkhole.yaml'), text);
    try {
      return loadConfig(join(dir, 'sinkhole.yaml'));
    } catch (e) {
      if (e instanceof PolicyError) return e.problems.map((p) => `${p.line}:${p.col}: ${p.message}`);
      throw e;
    }
  };
  const good = load(`upstreams:
  servers: ["tls://192.0.2.53#dns.example.net", "https://dns.example.net/dns-query", "https://[2001:DB8::53]:8443/q{?dns}#dns.example.net"]
  conditional:
    parliament.internal: ["tls://10.0.0.10:8853"]
  tls:
    ca: ca.pem
    pins: { "dns.example.net": ["sha256/${pki.server.pin}"], "10.0.0.10": ["sha256/${pki.caPin}"] }
    bootstrap: { dns.example.net: 192.0.2.54 }
listen:
  dns: ["127.0.0.1:1053"]
  dot: ["127.0.0.1:853"]
  doh: ["[::1]:443"]
  tls: { cert: tls.crt, key: tls.key }
`);
  if (Array.isArray(good)) t.fail(good.join('\n'));
  else {
    t.match(good.upstreams.servers, [
      { transport: 'tls', host: '192.0.2.53', port: 853, authName: 'dns.example.net' },
      { transport: 'https', host: '192.0.2.54', port: 443, authName: 'dns.example.net', path: '/dns-query' },
      { transport: 'https', host: '2001:db8::53', port: 8443, authName: 'dns.example.net', path: '/q' },
    ]);
    t.match(good.upstreams.conditional[0]!.servers[0], { transport: 'tls', host: '10.0.0.10', port: 8853, authName: undefined });
    t.same(good.upstreams.tls.pins, { 'dns.example.net': [pki.server.pin], '10.0.0.10': [pki.caPin] });
    t.match(good.upstreams.tls.ca, /BEGIN CERTIFICATE/);
    t.same(good.listen.dot, [{ host: '127.0.0.1', port: 853 }]);
    t.same(good.listen.doh, [{ host: '::1', port: 443 }]);
    t.match(good.listen.tls, { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') });
  }
  const bad: [string, RegExp][] = [
    ['upstreams:\n  servers: ["tls://dns.example.net"]\n', /^2:13: upstreams.servers: "dns.example.net" needs its address in upstreams.tls.bootstrap/],
    ['upstreams:\n  servers: ["https://192.0.2.1/dns-query#not a name"]\n', /^2:13: .*is not a host name/],
    ['upstreams:\n  servers: ["tls://192.0.2.1/path#n.example"]\n', /^2:13: .*a tls:\/\/ upstream has no path/],
    ['upstreams:\n  servers: ["tls://192.0.2.1:99999#n.example"]\n', /^2:13: .*port must be 1 to 65535/],
    ['upstreams:\n  servers: ["tls://2001:db8::1#n.example"]\n', /^2:13: .*IPv6 address in brackets/],
    ['upstreams:\n  servers: ["quic://192.0.2.1"]\n', /^2:13: .*unsupported upstream scheme "quic:\/\/"/],
    ['upstreams:\n  servers: ["tls://192.0.2.1#a.example"]\n  tls:\n    pins: { a.example: ["sha256/short"] }\n', /^4:25: upstreams.tls.pins.a.example: expected "sha256\/"/],
    ['upstreams:\n  servers: ["tls://192.0.2.1#a.example"]\n  tls:\n    pins: { b.example: ["sha256/' + pki.server.pin + '"] }\n', /^4:13: .*no tls:\/\/ or https:\/\/ upstream is checked against "b.example"/],
    ['upstreams:\n  tls:\n    bootstrap: { a.example: not-an-ip }\n', /^3:29: upstreams.tls.bootstrap.a.example: expected the IP address/],
    ['upstreams:\n  tls:\n    ca: missing.pem\n', /^3:9: upstreams.tls.ca: cannot read .*missing.pem: ENOENT/],
    ['upstreams:\n  tls:\n    ca: not-a-ca.pem\n', /^3:9: upstreams.tls.ca: .*holds no PEM certificate/],
    ['upstreams:\n  tls:\n    cert: x\n', /^3:5: upstreams.tls.cert: unknown key; expected one of ca, pins, bootstrap/],
    ['listen:\n  dns: ["127.0.0.1:1053"]\n  dot: ["127.0.0.1:853"]\n', /^1:1: listen.tls: listen.dot and listen.doh need a certificate/],
    ['listen:\n  doh: ["localhost:443"]\n', /^2:9: listen.doh: expected "address:port"/],
    ['listen:\n  tls: { cert: tls.crt }\n', /^2:8: listen.tls: expected both cert and key/],
    ['listen:\n  tls: { cert: tls.crt, key: rogue.key }\n', /^2:8: listen.tls: .*are not a certificate and its key/],
    ['listen:\n  tls: { cert: tls.crt, key: nope.key }\n', /^2:8: listen.tls: cannot read key .*nope.key: ENOENT/],
  ];
  for (const [text, want] of bad) {
    const r = load(text);
    t.ok(Array.isArray(r) && r.some((p) => want.test(p)), `${text.replace(/\n/g, ' ⏎ ')} → ${want}`, { got: r });
  }
  // `sinkhole validate` reports it the same way, one line, with the file.
  writeFileSync(join(dir, 'sinkhole.yaml'), 'upstreams:\n  servers: ["tls://dns.example.net"]\n');
  const v = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'validate', '--config', join(dir, 'sinkhole.yaml')], { encoding: 'utf8' });
  t.equal(v.status, 1);
  t.match(v.stdout, /sinkhole\.yaml:2:13: upstreams\.servers: "dns\.example\.net" needs its address in upstreams\.tls\.bootstrap/);
});

/** A query with an OPT (UDP size 4096, DO) carrying `options`, then a Padding option (RFC 7830) filling it to `total` octets. */
function paddedQuery(name: string, total: number, options: [number, Buffer][] = []): Buffer {
  const base = buildQuery(name, T.A, { id: 0, edns: 4096, dnssecOk: true });
  const opts = ednsOptions(options);
  const pad = total - base.length - opts.length - 4;
  const tail = Buffer.alloc(4 + pad);
  tail.writeUInt16BE(12, 0);
  tail.writeUInt16BE(pad, 2);
  const q = Buffer.concat([base, opts, tail]);
  q.writeUInt16BE(opts.length + tail.length, base.length - 2);
  return q;
}

/** The options of a message's OPT (last record of the additional section, as sinkhole and dns2 write it): [code, length]. */
function optionsOf(msg: Buffer): { udpSize: number; flags: number; options: [number, number][] } | undefined {
  const d = decode(msg);
  if (!d.additionals.some((r: { type: number }) => r.type === 41)) return undefined;
  // Walk to the OPT by hand: dns2 drops the options it does not know (PACKAGES.md §1.4).
  let off = 12;
  const skip = (): void => {
    while (msg[off]! !== 0 && (msg[off]! & 0xc0) !== 0xc0) off += msg[off]! + 1;
    off += (msg[off]! & 0xc0) === 0xc0 ? 2 : 1;
  };
  for (let i = msg.readUInt16BE(4); i > 0; i--) (skip(), (off += 4));
  for (let i = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10); i > 0; i--) {
    skip();
    const type = msg.readUInt16BE(off);
    const rdlen = msg.readUInt16BE(off + 8);
    if (type === 41) {
      const options: [number, number][] = [];
      for (let o = off + 10; o < off + 10 + rdlen; o += 4 + msg.readUInt16BE(o + 2)) options.push([msg.readUInt16BE(o), msg.readUInt16BE(o + 2)]);
      return { udpSize: msg.readUInt16BE(off + 2), flags: msg.readUInt16BE(off + 6), options };
    }
    off += 10 + rdlen;
  }
  return undefined;
}

t.test('EDNS: a client\'s padded 65,535-octet query cannot make a name fail for everyone (issue 23 item 1)', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('*', { echoEdns: true });
  const h = await startSinkhole(t, up.port, config(), FILES);
  const cookie: [number, Buffer] = [10, Buffer.from('0123456789abcdef', 'hex')];
  // Over DoT: the largest message a 2-octet length prefix can frame, padded by the client (RFC 7830).
  const c = await dotClient(h);
  t.teardown(() => c.close());
  const attack = paddedQuery('victim.example.test', 65_535, [cookie]);
  t.equal(attack.length, 65_535);
  c.send(attack);
  const [r] = await c.waitFor(1);
  t.equal(rcodeOf(r!), 0, 'DoT: the padded query itself is answered, NOERROR');
  const ours = optionsOf(r!);
  t.ok(ours, 'the reply carries an OPT: the client sent one (RFC 6891 §7)');
  t.equal(ours!.udpSize, 1232, "the reply's OPT advertises sinkhole's own UDP size");
  t.equal(ours!.flags & 0x8000, 0x8000, 'DO echoed (RFC 3225 §3)');
  t.notOk(ours!.options.some(([code]) => code === 10), 'no cookie comes back: the upstream never saw it');
  t.equal(r!.length % 468, 0, 'padded to a multiple of 468 octets, as the client padded (RFC 7830 §4, RFC 8467 §4.1)');

  const seen = up.seen.filter((s) => s.name === 'victim.example.test');
  t.equal(seen.length, 1, 'asked upstream once');
  const sent = optionsOf(seen[0]!.raw);
  t.ok(sent, 'the upstream got an OPT (the client had EDNS)');
  t.equal(sent!.udpSize, 1232, "with sinkhole's UDP size, not the client's 4096");
  t.equal(sent!.flags & 0x8000, 0x8000, "and the client's DO bit");
  t.same(sent!.options, [], 'and none of the client\'s options: no padding, no cookie');
  t.ok(seen[0]!.raw.length < 100, `a small query upstream (${seen[0]!.raw.length} octets)`);

  // Another client, a plain EDNS query for the same name right after: answered, not a remembered SERVFAIL.
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('victim.example.test', T.A, { edns: 1232, dnssecOk: true }), 4000, '127.0.0.9')), 0,
    'another client: NOERROR right after the attack');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('victim.example.test', T.A, { edns: 1232 }), 4000, '127.0.0.9')), 0, 'also without DO');

  // Over DoH (POST), a fresh name.
  const s = await h2connect(h, pki.caPem);
  t.teardown(() => s.close());
  const viaDoh = paddedQuery('victim2.example.test', 65_535);
  const p = await h2request(s, post(viaDoh), viaDoh);
  t.equal(p.status, 200);
  t.equal(rcodeOf(p.body), 0, 'DoH: the padded query is answered, NOERROR');
  t.equal(p.body.length % 468, 0, 'and its reply padded');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('victim2.example.test', T.A, { edns: 1232, dnssecOk: true }), 4000, '127.0.0.9')), 0,
    'another client: NOERROR');
  t.same(optionsOf(up.seen.find((x) => x.name === 'victim2.example.test')!.raw)!.options, [], 'the upstream saw none of its padding');

  // An unpadded client gets an unpadded reply; a client without EDNS gets no OPT.
  const plain = await dotClient(h);
  t.teardown(() => plain.close());
  plain.send(buildQuery('victim.example.test', T.A, { id: 7, edns: 1232, dnssecOk: true }));
  plain.send(buildQuery('victim.example.test', T.A, { id: 8 }));
  const [withEdns, without] = await plain.waitFor(2);
  t.same(optionsOf(withEdns!)?.options, [], 'DoT without padding: an OPT without options');
  t.equal(optionsOf(without!), undefined, 'DoT without EDNS: no OPT');
  const stats = h.running.stats.upstreams.get(`127.0.0.1:${up.port}`)!;
  t.equal(stats.outcomes.error, 0, 'nothing counted against the upstream');
});
