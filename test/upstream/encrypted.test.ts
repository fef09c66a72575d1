// src/upstream/ tls.ts, https.ts, tlsDial.ts, stream.ts and encrypted.ts.
// Encrypted upstreams (issue 12): tls:// (RFC 7858) and https:// (RFC 8484),
// against scripted fakes that misbehave on cue and against real servers
// nobody here wrote (unbound, dnsdist), all on 127.0.0.1.
import t from 'tap';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { FakeDoh, FakeDot, silentServer } from '../helpers/fakeEncrypted.js';
import { makePki } from '../helpers/pki.js';
import { startDnsdist, startUnbound } from '../helpers/peers.js';
import { skipUnless } from '../helpers/requires.js';
import { startSinkhole, type Harness } from '../helpers/sinkhole.js';
import { buildQuery, decode, exchange, rcodeOf, udpExchange } from '../helpers/dns.js';
import { UpstreamStats } from '../../src/metrics/stats.js';
import { decodeQuery } from '../../src/dns/query.js';
import { DohUpstream } from '../../src/upstream/https.js';
import { DotUpstream } from '../../src/upstream/tls.js';
import { dialTls, type SessionStore } from '../../src/upstream/tlsDial.js';

const pki = makePki();
t.teardown(() => pki.close());

/** The options of the OPT record, parsed here by hand (dns2 drops unknown options). */
function ednsOptions(msg: Buffer): { code: number; length: number }[] | undefined {
  const skip = (off: number): number => {
    for (;;) {
      const len = msg[off]!;
      if (len === 0) return off + 1;
      if ((len & 0xc0) === 0xc0) return off + 2;
      off += len + 1;
    }
  };
  let off = 12;
  for (let i = msg.readUInt16BE(4); i > 0; i--) off = skip(off) + 4;
  const rrs = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  for (let i = 0; i < rrs; i++) {
    const end = skip(off);
    const rdlen = msg.readUInt16BE(end + 8);
    if (msg.readUInt16BE(end) === 41) {
      const out: { code: number; length: number }[] = [];
      for (let o = end + 10; o < end + 10 + rdlen; o += 4 + msg.readUInt16BE(o + 2)) out.push({ code: msg.readUInt16BE(o), length: msg.readUInt16BE(o + 2) });
      return out;
    }
    off = end + 10 + rdlen;
  }
  return undefined;
}

function dotConfig(port: number, extra: Record<string, unknown> = {}, timeout = '1s'): Record<string, unknown> {
  return { upstreams: { servers: [`tls://127.0.0.1:${port}#dns.test`], timeout, tls: { ca: 'ca.pem', ...extra } } };
}

const CA = { 'ca.pem': pki.caPem };

function stats(h: Harness, label: string): UpstreamStats {
  return h.running.stats.upstream(label);
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('DoT upstream: pipelined on one connection, out of order, fresh unique IDs, padded to 128, padding removed', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const dot = await FakeDot.start(up, pki.server);
  t.teardown(() => dot.close());
  up.on('slow.example.test', { delayMs: 300 });
  const h = await startSinkhole(t, 0, dotConfig(dot.port), CA);
  const label = `tls://127.0.0.1:${dot.port}#dns.test`;

  const names = Array.from({ length: 30 }, (_, i) => `n${i}.example.test`);
  const replies = await Promise.all(names.map((n) => udpExchange(h.port, buildQuery(n, T.A, { id: 0x4242 }))));
  for (const [i, r] of replies.entries()) {
    const d = decode(r);
    t.equal(d.header.id, 0x4242, `${names[i]}: the client's ID restored`);
    t.equal((d.answers[0] as { address?: string } | undefined)?.address, '192.0.2.10', `${names[i]}: answered`);
  }
  t.equal(dot.connections, 1, '30 queries at once share one connection (pipelining)');
  const ids = dot.queries.map((q) => q.id);
  t.equal(new Set(ids).size, 30, 'every query in flight on the connection has its own ID');
  t.ok(ids.filter((id) => id === 0x4242).length <= 1, "the upstream sees fresh IDs, not the client's");
  t.ok(dot.queries.every((q) => q.raw.length % 128 === 0), 'every query is a multiple of 128 octets (RFC 8467)');
  t.ok(dot.queries.every((q) => ednsOptions(q.raw)?.some((o) => o.code === 12)), 'with an EDNS Padding option (RFC 7830)');

  // The fake pads its replies (as unbound does): the client gets them clean.
  const plain = await udpExchange(h.port, buildQuery('plain.example.test', T.A));
  t.equal(plain.readUInt16BE(10), 0, 'a client that sent no OPT gets none back, though we added one upstream');
  const withEdns = await udpExchange(h.port, buildQuery('edns.example.test', T.A, { edns: 1232 }));
  t.same(ednsOptions(withEdns), [], "an EDNS client's OPT comes back without the upstream's padding");

  // Out of order (RFC 7766 §6.2.1.1): the slow answer does not hold up the fast one behind it.
  const done: string[] = [];
  const slow = udpExchange(h.port, buildQuery('slow.example.test', T.A)).then((r) => (done.push('slow'), r));
  await until(() => up.count('slow.example.test') === 1, 'the slow query upstream');
  const fast = udpExchange(h.port, buildQuery('fast.example.test', T.A)).then((r) => (done.push('fast'), r));
  t.equal(rcodeOf(await fast), 0);
  t.equal(rcodeOf(await slow), 0);
  t.same(done, ['fast', 'slow'], 'the reply to the later query came first');
  const conns = dot.queries.filter((q) => /slow|fast/.test(decode(q.raw).questions[0]!.name)).map((q) => q.conn);
  t.same(conns, [1, 1], 'both on the same connection');
  t.equal(stats(h, label).connects, 1, 'sinkhole_upstream_connects_total: one connection for 34 queries');
  t.equal(stats(h, label).open, 1, 'and it is still open');
  t.equal(stats(h, label).outcomes.ok, 34);
});

t.test('DoT upstream: a dead reused connection gets one transparent re-dial; mid-pipeline close', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  for (let i = 0; i < 5; i++) up.on(`p${i}.example.test`, { delayMs: 40 * i });

  await t.test('the server dropped a connection we still thought alive', async (t) => {
    const dot = await FakeDot.start(up, pki.server);
    t.teardown(() => dot.close());
    const h = await startSinkhole(t, 0, dotConfig(dot.port), CA);
    t.equal(rcodeOf(await udpExchange(h.port, buildQuery('warm.example.test', T.A))), 0, 'warm-up');
    dot.killNext = true;
    t.equal(rcodeOf(await udpExchange(h.port, buildQuery('again.example.test', T.A))), 0, 'answered on a fresh connection');
    t.equal(dot.connections, 2, 'one re-dial');
    const s = stats(h, `tls://127.0.0.1:${dot.port}#dns.test`);
    t.same([s.outcomes.ok, s.outcomes.error], [2, 0], 'not counted as a failure');
  });

  await t.test('the server closes a warm connection with queries still in flight', async (t) => {
    const dot = await FakeDot.start(up, pki.server);
    t.teardown(() => dot.close());
    const h = await startSinkhole(t, 0, dotConfig(dot.port), CA);
    t.equal(rcodeOf(await udpExchange(h.port, buildQuery('warm.example.test', T.A))), 0, 'warm-up');
    dot.closeAfter = 3; // the warm connection answers two more, then closes on the other three
    const replies = await Promise.all([0, 1, 2, 3, 4].map((i) => udpExchange(h.port, buildQuery(`p${i}.example.test`, T.A))));
    t.same(replies.map(rcodeOf), [0, 0, 0, 0, 0], 'all five answered');
    t.equal(dot.connections, 2, 'the three left over went together on one new connection');
    t.equal(stats(h, `tls://127.0.0.1:${dot.port}#dns.test`).outcomes.error, 0);
  });

  await t.test('a fresh connection that closes mid-pipeline is a real failure: SERVFAIL at once, counted', async (t) => {
    const dot = await FakeDot.start(up, pki.server);
    t.teardown(() => dot.close());
    dot.closeAfter = 1;
    const h = await startSinkhole(t, 0, dotConfig(dot.port), CA);
    const t0 = performance.now();
    const replies = await Promise.all([0, 1, 2].map((i) => udpExchange(h.port, buildQuery(`p${i}.example.test`, T.A))));
    t.same(replies.map(rcodeOf).sort(), [0, 2, 2], 'one answered, two SERVFAIL');
    t.ok(performance.now() - t0 < 900, 'without waiting for the 1 s timeout');
    t.equal(stats(h, `tls://127.0.0.1:${dot.port}#dns.test`).outcomes.error, 2, 'each counted for health');
  });
});

t.test('DoT pool: idle connections close; a busy pool grows to its cap and no further', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('*', { delayMs: 100 });
  const dot = await FakeDot.start(up, pki.server);
  t.teardown(() => dot.close());
  const stats = new UpstreamStats();
  const pool = new DotUpstream(
    { host: '127.0.0.1', port: dot.port, authName: 'dns.test', alpn: ['dot'] }, { ca: pki.caPem, pins: [] },
    { handshakeTimeoutMs: 1000, stats, label: 'test' }, { idleMs: 200, pipeline: 2, connections: 2 },
  );
  t.teardown(() => pool.close());
  const ask = (name: string): Promise<Buffer> => {
    const q = decodeQuery(buildQuery(name, T.A), '127.0.0.1', 'udp', 0)!;
    return pool.exchange(q.buf, q.qend, 2000);
  };
  t.equal(rcodeOf(await ask('one.example.test')), 0);
  await until(() => stats.open === 0, 'the idle connection to close');
  t.pass('closed by us after idleMs');
  const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => ask(`six${i}.example.test`)));
  t.ok(replies.every((r) => rcodeOf(r) === 0), 'six at once, all answered');
  t.equal(stats.connects, 3, 'two more connections (2 queries each in flight), then the cap: the rest share them');
  t.equal(new Set(dot.queries.slice(1).map((q) => q.conn)).size, 2, 'over two connections');
  // Two at a time fit one connection (pipeline 2): they are packed onto it, not spread over both,
  // so the burst's other connection goes idle and closes (sparse traffic per connection is what
  // meets an upstream's Nagle delay, bench/dot.sh).
  const before = dot.queries.length;
  for (let round = 0; round < 3; round++) {
    const pair = await Promise.all([ask(`pair${round}a.example.test`), ask(`pair${round}b.example.test`)]);
    t.ok(pair.every((r) => rcodeOf(r) === 0), `pair ${round + 1} answered`);
  }
  t.equal(new Set(dot.queries.slice(before).map((q) => q.conn)).size, 1, 'every pair on one connection');
  t.equal(stats.open, 1, 'the other one idled out meanwhile');
});

t.test('DoT upstream: bad certificate, wrong name, pins (wrong on every connection, right, CA), handshake timeout', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());

  for (const [what, pair] of [['a self-signed impostor', pki.rogue], ['a valid certificate for another name', pki.wrongName]] as const) {
    const dot = await FakeDot.start(up, pair);
    const h = await startSinkhole(t, 0, dotConfig(dot.port), CA);
    t.equal(rcodeOf(await udpExchange(h.port, buildQuery(`bad.example.test`, T.A))), 2, `${what}: SERVFAIL`);
    t.equal(stats(h, `tls://127.0.0.1:${dot.port}#dns.test`).outcomes.error, 1, `${what}: counted as an error`);
    t.equal(dot.queries.length, 0, `${what}: no query was sent to it`);
    await dot.close();
  }

  const dot = await FakeDot.start(up, pki.server);
  t.teardown(() => dot.close());
  const wrong = await startSinkhole(t, 0, dotConfig(dot.port, { pins: { 'dns.test': [`sha256/${pki.rogue.pin}`] } }), CA);
  t.equal(rcodeOf(await udpExchange(wrong.port, buildQuery('pin1.example.test', T.A))), 2, 'wrong pin: SERVFAIL');
  t.equal(rcodeOf(await udpExchange(wrong.port, buildQuery('pin2.example.test', T.A))), 2, 'wrong pin: SERVFAIL on the second connection too');
  t.equal(dot.accepted, 2, 'two connections, each checked');
  t.equal(dot.queries.length, 0, 'and no query ever written to the server that failed its pin');

  for (const [what, pin] of [['leaf', pki.server.pin], ['CA', pki.caPin]]) {
    const h = await startSinkhole(t, 0, dotConfig(dot.port, { pins: { 'dns.test': [`sha256/${pin}`] } }), CA);
    t.equal(rcodeOf(await udpExchange(h.port, buildQuery(`pinned-${what}.example.test`, T.A))), 0, `a pin of the ${what} key in the chain: answered`);
  }

  // A server that accepts TCP but never completes the handshake.
  const silent = await silentServer();
  t.teardown(() => silent.close());
  const fallback = await FakeUpstream.start();
  t.teardown(() => fallback.close());
  const label = `tls://127.0.0.1:${silent.port}#dns.test`;
  const h = await startSinkhole(t, 0, { upstreams: { servers: [label, `127.0.0.1:${fallback.port}`], timeout: '1s', tls: { ca: 'ca.pem' } } }, CA);
  let t0 = performance.now();
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('hs.example.test', T.A))), 0, 'the next upstream answers within the shared timeout');
  t.ok(performance.now() - t0 < 1500, 'within timeout + 1 s');
  t.equal(stats(h, label).outcomes.timeout, 1, 'the handshake timeout counts for health');
  const alone = await startSinkhole(t, 0, { upstreams: { servers: [label], timeout: '1s', tls: { ca: 'ca.pem' } } }, CA);
  t0 = performance.now();
  t.equal(rcodeOf(await udpExchange(alone.port, buildQuery('hs2.example.test', T.A))), 2, 'alone: SERVFAIL');
  const took = performance.now() - t0;
  t.ok(took >= 900 && took < 2000, `SERVFAIL within timeout + 1 s (${Math.round(took)} ms)`);
  await until(() => silent.closed() === silent.accepted(), 'the stalled handshakes to be abandoned');
  t.pass(`every stalled handshake was closed (${silent.accepted()})`);
});

t.test('dialTls: sessions are resumed without pins, never offered with pins', async (t) => {
  // Keeps each connection open and reading: an OpenSSL server sends its TLS 1.3 tickets once it reads.
  const server = tls.createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, (s) => s.on('error', () => {}).resume());
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const open: tls.TLSSocket[] = [];
  t.teardown(() => open.forEach((s) => s.destroy()));
  server.on('secureConnection', (s) => open.push(s));
  const target = { host: '127.0.0.1', port: (server.address() as { port: number }).port, authName: 'dns.test', alpn: ['dot'] };
  const store: SessionStore = {};
  const first = await dialTls(target, { ca: pki.caPem, pins: [] }, 1000, store);
  first.resume(); // TLS 1.3 tickets are read after the handshake
  await until(() => store.session !== undefined, 'a session ticket');
  first.destroy();
  const second = await dialTls(target, { ca: pki.caPem, pins: [] }, 1000, store);
  t.equal(second.isSessionReused(), true, 'unpinned: the ticket is used (so this test can tell)');
  second.destroy();
  const pinned = await dialTls(target, { ca: pki.caPem, pins: [pki.server.pin] }, 1000, store);
  t.equal(pinned.isSessionReused(), false, 'pinned: a full handshake, whose certificate the pin was checked against');
  pinned.destroy();
  await t.rejects(dialTls(target, { ca: pki.caPem, pins: [pki.rogue.pin] }, 1000, store), { message: /pins/ }, 'a wrong pin fails even with a ticket at hand');
});

t.test('DoH upstream: POST, ID 0, padding, one multiplexed session, GOAWAY, refused streams, HTTP errors, bootstrap', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const doh = await FakeDoh.start(up, pki.server);
  t.teardown(() => doh.close());
  const label = `https://127.0.0.1:${doh.port}/dns-query#dns.test`;
  const cfg = { upstreams: { servers: [label], timeout: '1s', tls: { ca: 'ca.pem' } } };
  const h = await startSinkhole(t, 0, cfg, CA);

  const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => udpExchange(h.port, buildQuery(`d${i}.example.test`, T.A, { id: 0x77 }))));
  t.ok(replies.every((r) => rcodeOf(r) === 0 && r.readUInt16BE(0) === 0x77), '20 answered, with their IDs');
  t.equal(doh.sessions, 1, 'all on one HTTP/2 session');
  t.ok(doh.requests.every((r) => r.method === 'POST' && r.path === '/dns-query' && r.contentType === 'application/dns-message'), 'POST application/dns-message to /dns-query');
  t.ok(doh.requests.every((r) => r.body.readUInt16BE(0) === 0), 'DNS ID 0 (RFC 8484 §4.1)');
  t.ok(doh.requests.every((r) => r.body.length % 128 === 0), 'padded to 128');
  t.equal((await udpExchange(h.port, buildQuery('clean.example.test', T.A))).readUInt16BE(10), 0, 'the upstream padding is taken off');

  await t.test('GOAWAY: new queries go to a new session', async (t) => {
    const g = await FakeDoh.start(up, pki.server);
    t.teardown(() => g.close());
    g.goawayAfter = 2;
    const gl = `https://127.0.0.1:${g.port}/dns-query#dns.test`;
    const hg = await startSinkhole(t, 0, { upstreams: { servers: [gl], timeout: '1s', tls: { ca: 'ca.pem' } } }, CA);
    for (let i = 0; i < 5; i++) t.equal(rcodeOf(await udpExchange(hg.port, buildQuery(`g${i}.example.test`, T.A))), 0, `query ${i} answered`);
    t.equal(g.sessions, 3, 'two queries per session, then a new one');
    t.equal(stats(hg, gl).connects, 3, 'sinkhole_upstream_connects_total counts sessions');
    t.equal(stats(hg, gl).outcomes.error, 0, 'GOAWAY is not a failure');
  });

  await t.test('a refused stream is retried once', async (t) => {
    const r = await FakeDoh.start(up, pki.server);
    t.teardown(() => r.close());
    r.refuseFirst = true;
    const rl = `https://127.0.0.1:${r.port}/dns-query#dns.test`;
    const hr = await startSinkhole(t, 0, { upstreams: { servers: [rl], timeout: '1s', tls: { ca: 'ca.pem' } } }, CA);
    t.equal(rcodeOf(await udpExchange(hr.port, buildQuery('refused.example.test', T.A))), 0, 'answered');
    t.equal(r.requests.length, 1, 'on the second try');
  });

  await t.test('an HTTP error status is an upstream failure', async (t) => {
    const e = await FakeDoh.start(up, pki.server);
    t.teardown(() => e.close());
    e.status = 500;
    const el = `https://127.0.0.1:${e.port}/dns-query#dns.test`;
    const he = await startSinkhole(t, 0, { upstreams: { servers: [el], timeout: '1s', tls: { ca: 'ca.pem' } } }, CA);
    t.equal(rcodeOf(await udpExchange(he.port, buildQuery('err.example.test', T.A))), 2, 'SERVFAIL');
    t.equal(stats(he, el).outcomes.error, 1);
  });

  await t.test('a host name with a bootstrap address', async (t) => {
    const bl = `https://dns.test:${doh.port}/dns-query`;
    const hb = await startSinkhole(t, 0, { upstreams: { servers: [bl], timeout: '1s', tls: { ca: 'ca.pem', bootstrap: { 'dns.test': '127.0.0.1' } } } }, CA);
    t.equal(rcodeOf(await udpExchange(hb.port, buildQuery('boot.example.test', T.A))), 0, 'answered');
  });
});

t.test('DoH upstream: PING keepalive and idle close', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const doh = await FakeDoh.start(up, pki.server);
  t.teardown(() => doh.close());
  const stats = new UpstreamStats();
  const transport = new DohUpstream(
    { host: '127.0.0.1', port: doh.port, authName: 'dns.test', alpn: ['h2'] }, '/dns-query', { ca: pki.caPem, pins: [] },
    { handshakeTimeoutMs: 1000, stats, label: 'test' }, { pingMs: 50, idleMs: 400 },
  );
  t.teardown(() => transport.close());
  const ask = (name: string): Promise<Buffer> => {
    const q = decodeQuery(buildQuery(name, T.A), '127.0.0.1', 'udp', 0)!;
    return transport.exchange(q.buf, q.qend, 1000);
  };
  const reply = await ask('ping.example.test');
  t.equal(rcodeOf(reply), 0);
  await until(() => doh.pings >= 2, 'two PINGs');
  t.pass(`the idle session is PINGed (${doh.pings})`);
  await until(() => doh.live === 0, 'the idle session to close');
  t.equal(stats.open, 0, 'closed after the idle timeout');
  t.equal(rcodeOf(await ask('again.example.test')), 0, 'the next query opens a new session');
  t.equal(doh.sessions, 2);
});

t.test('real peers: unbound over DoT, dnsdist over DoH and DoT', { skip: skipUnless({ unbound: 'unbound', dnsdist: 'dnsdist' }) }, async (t) => {
  const big = Array.from({ length: 40 }, (_, i) => `big.example.test. 300 IN A 192.0.2.${i + 1}`);
  const unbound = await startUnbound(pki, [
    'www.example.test. 300 IN A 192.0.2.53',
    'x.doh.example.test. 300 IN A 192.0.2.54',
    'x.dot.example.test. 300 IN A 192.0.2.55',
    ...big,
  ]);
  t.teardown(() => unbound.stop());
  const dnsdist = await startDnsdist(pki, unbound.ports.dns!);
  t.teardown(() => dnsdist.stop());
  const viaUnbound = `tls://127.0.0.1:${unbound.ports.tls}#dns.test`;
  const viaDoh = `https://127.0.0.1:${dnsdist.ports.doh}/dns-query#dns.test`;
  const viaDot = `tls://127.0.0.1:${dnsdist.ports.dot}#dns.test`;
  const h = await startSinkhole(t, 0, {
    upstreams: {
      servers: [viaUnbound],
      conditional: { 'doh.example.test': [viaDoh], 'dot.example.test': [viaDot] },
      timeout: '2s',
      tls: { ca: 'ca.pem', pins: { 'dns.test': [`sha256/${pki.server.pin}`] } },
    },
  }, CA);

  // c-ares in front, real servers behind.
  t.same(await h.resolver.resolve4('www.example.test'), ['192.0.2.53'], 'unbound over DoT (pinned)');
  t.same(await h.resolver.resolve4('x.doh.example.test'), ['192.0.2.54'], 'dnsdist over DoH');
  t.same(await h.resolver.resolve4('x.dot.example.test'), ['192.0.2.55'], 'dnsdist over DoT');
  await t.rejects(h.resolver.resolve4('nothing.example.test'), { code: 'ENOTFOUND' }, 'NXDOMAIN relayed');
  const tcpBig = decode(await exchange('tcp', h.port, buildQuery('big.example.test', T.A)));
  t.equal(tcpBig.answers.length, 40, 'a 40-record answer over DoT');

  // Pipelining against real servers: 20 at once, on the connection already open.
  for (const [suffix, label] of [['example.test', viaUnbound], ['doh.example.test', viaDoh], ['dot.example.test', viaDot]] as const) {
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => udpExchange(h.port, buildQuery(`q${i}.${suffix}`, T.A))));
    t.ok(rs.every((r) => rcodeOf(r) === 3), `${label}: 20 queries at once, all answered (NXDOMAIN)`);
    const s = stats(h, label);
    t.equal(s.outcomes.error + s.outcomes.timeout, 0, `${label}: no failures`);
    t.equal(s.connects, 1, `${label}: one connection for all of it`);
  }
  // unbound pads its DoT responses (RFC 8467); the client, which sent no EDNS, must not see an OPT.
  t.equal((await udpExchange(h.port, buildQuery('www.example.test', T.AAAA))).readUInt16BE(10), 0, 'no OPT for a client that sent none');
  const edns = await udpExchange(h.port, buildQuery('www.example.test', T.TXT, { edns: 1232 }));
  t.notOk(ednsOptions(edns)?.some((o) => o.code === 12), "no upstream padding in an EDNS client's reply");
});
