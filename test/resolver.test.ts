// The core resolver: forwarding, cache, truncation, TCP, RFC 5452 checks,
// SERVFAIL timing and malformed input, over real sockets on 127.0.0.1.
import t from 'tap';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { normalizeAddress } from '../src/net/cidr.js';
import { FakeClock, startSinkhole } from './helpers/sinkhole.js';
import { buildQuery, decode, exchange, optOf, rcodeOf, TcpClient, udpExchange } from './helpers/dns.js';
import { TcpListener } from '../src/transport/tcp.js';
import { UdpListener } from '../src/transport/udp.js';
import { FrameReader } from '../src/dns/framing.js';
import { errorReply } from '../src/dns/reply.js';
import { silentLogger } from '../src/log.js';
import type { Query } from '../src/dns/query.js';
import type { Outcome } from '../src/pipeline/types.js';
import { bindPair } from '../src/transport/bind.js';
import { cacheKey, ReplyCache } from '../src/cache/replyCache.js';
import { decodeQuery } from '../src/dns/query.js';
import { scanReply } from '../src/dns/message.js';
import { UdpUpstream } from '../src/upstream/udp.js';
import { LocalSendError } from '../src/upstream/exchange.js';

const PROTOS = ['udp', 'tcp'] as const;

t.test('forwarding: a table of answers, over UDP and TCP', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('nx.example.test', { rcode: 3, soa: { ttl: 600, minimum: 60 } });
  up.on('alias.example.test', {
    answers: [
      { name: 'alias.example.test', type: T.CNAME, domain: 'target.example.test' },
      { name: 'target.example.test', type: T.A, address: '192.0.2.77' },
    ],
  });
  const h = await startSinkhole(t, up.port);
  const table = [
    { name: 'www.example.test', type: T.A, rcode: 0, answer: '192.0.2.10' },
    { name: 'WwW.Example.TEST', type: T.AAAA, rcode: 0, answer: '2001:db8::10' },
    { name: 'nx.example.test', type: T.A, rcode: 3, answer: undefined },
    { name: 'alias.example.test', type: T.A, rcode: 0, answer: '192.0.2.77' },
  ];
  for (const proto of PROTOS) {
    for (const row of table) {
      const id = 0x1234;
      const reply = await exchange(proto, h.port, buildQuery(row.name, row.type, { id }));
      const d = decode(reply);
      t.equal(d.header.id, id, `${proto} ${row.name}: our ID restored`);
      t.equal(d.header.rcode, row.rcode, `${proto} ${row.name}: rcode`);
      t.equal(d.header.ra, 1, `${proto} ${row.name}: RA set`);
      t.equal(d.header.aa, 0, `${proto} ${row.name}: AA cleared (we are not the authority)`);
      t.equal(d.questions[0]?.name, row.name, `${proto} ${row.name}: question echoed in the client's case`);
      const addrs = d.answers.map((a: { address?: string }) => a.address).filter(Boolean);
      t.same(addrs.at(-1), row.answer, `${proto} ${row.name}: answer`);
    }
  }
  // c-ares, a client nobody here wrote.
  t.same(await h.resolver.resolve4('c-ares.example.test'), ['192.0.2.10']);
  t.same(await h.resolver.resolve6('c-ares.example.test'), ['2001:db8::10']);
  await t.rejects(h.resolver.resolve4('nx.example.test'), { code: 'ENOTFOUND' });
});

t.test('cache: answers live off the V8 heap in reused slots, and keys never collide', async (t) => {
  const clock = new FakeClock();
  const cache = new ReplyCache({ maxEntries: 100, minTtl: 0, maxTtl: 86400, maxNegativeTtl: 3600 }, () => clock.now());
  const reply = (q: Buffer, extra = 0): Buffer => {
    const r = Buffer.concat([q, Buffer.alloc(16 + extra)]);
    r[2] = 0x81;
    r.writeUInt16BE(1, 6);
    const rr = q.length;
    r.writeUInt16BE(0xc00c, rr);
    r.writeUInt16BE(extra ? 16 : 1, rr + 2);
    r.writeUInt16BE(1, rr + 4);
    r.writeUInt32BE(300, rr + 6);
    r.writeUInt16BE(4 + extra, rr + 10);
    return r;
  };
  let stored = 0;
  const put = (name: string, extra = 0): void => {
    const qb = buildQuery(name, T.A);
    const q = decodeQuery(qb, '127.0.0.1', 'udp', 0)!;
    const r = reply(qb, extra);
    if (cache.set(cacheKey(q), r, scanReply(r)!) > 0) stored++;
  };
  for (let i = 0; i < 200; i++) put(`warm${i}.example.test`);
  const bytes = cache.slabBytes;
  for (let i = 0; i < 3000; i++) put(`churn${i}.example.test`);
  t.equal(stored, 3200, 'every answer stored');
  t.equal(cache.size, 100, 'bounded by maxEntries');
  t.equal(cache.slabBytes, bytes, 'evicted entries give their slots back: 3000 more inserts took no more memory');
  // A big answer (a 60 KiB TXT over TCP) goes to a slot of its own size class and reads back whole.
  put('big.example.test', 60_000);
  const qb = buildQuery('Big.Example.TEST', T.A, { id: 99 });
  const hit = cache.get(cacheKey(decodeQuery(qb, '127.0.0.1', 'udp', 0)!), decodeQuery(qb, '127.0.0.1', 'udp', 0)!);
  t.equal(hit?.wire.length, reply(buildQuery('big.example.test', T.A), 60_000).length, 'the big answer comes back whole');
  t.equal(hit?.wire.readUInt16BE(0), 99, 'with this client\'s ID');
  t.equal(hit?.wire.toString('latin1', 13, 16), 'Big', 'and its question case');
  // Keys are the name's bytes and a fixed 5-byte tail: "a" type 1 and a name that ends like the tail differ.
  const k1 = cacheKey(decodeQuery(buildQuery('a.example', T.A), '', 'udp', 0)!);
  const k2 = cacheKey(decodeQuery(buildQuery('a.example', T.AAAA), '', 'udp', 0)!);
  const k3 = cacheKey(decodeQuery(buildQuery('a.example', T.A, { edns: 1232 }), '', 'udp', 0)!);
  t.equal(new Set([k1, k2, k3]).size, 3, 'type and EDNS are in the key');
});

t.test('cache: hits, TTL decay, expiry, negative caching and what is never cached', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  up.on('ttl.example.test', { answers: [{ name: 'ttl.example.test', type: T.A, address: '192.0.2.1', ttl: 100 }] });
  up.on('nx.example.test', { rcode: 3, soa: { ttl: 600, minimum: 20 } });
  up.on('nosoa.example.test', { rcode: 3 });
  up.on('zero.example.test', { answers: [{ name: 'zero.example.test', type: T.A, address: '192.0.2.2', ttl: 0 }] });
  up.on('fail.example.test', { rcode: 2 });
  up.on('capped.example.test', { rcode: 3, soa: { ttl: 7200, minimum: 7200 } });
  // Prefetch off: this test is about plain expiry (prefetch and serve-stale: availability.test.ts).
  const h = await startSinkhole(t, up.port, { cache: { maxEntries: 1000, maxNegativeTtl: '30s', prefetch: false } }, {}, { clock });
  const ask = async (name: string): Promise<ReturnType<typeof decode>> => decode(await udpExchange(h.port, buildQuery(name, T.A)));

  t.equal((await ask('ttl.example.test')).answers[0]?.ttl, 100, 'first answer has the upstream TTL');
  clock.advance(40_000);
  const hit = await ask('TTL.example.test');
  t.equal(hit.answers[0]?.ttl, 60, 'a hit 40 s later shows TTL 60');
  t.equal(hit.questions[0]?.name, 'TTL.example.test', 'a hit echoes the question as this client wrote it');
  t.equal(up.count('ttl.example.test'), 1, 'the hit did not go upstream');
  clock.advance(61_000);
  await ask('ttl.example.test');
  t.equal(up.count('ttl.example.test'), 2, 'after the TTL ran out it went upstream again');

  await ask('nx.example.test');
  clock.advance(19_000);
  const neg = await ask('nx.example.test');
  t.equal(neg.header.rcode, 3, 'NXDOMAIN from cache');
  t.equal(up.count('nx.example.test'), 1, 'negative answer cached (RFC 2308: min(SOA TTL, MINIMUM) = 20 s)');
  t.equal(neg.authorities[0]?.ttl, 1, 'the SOA TTL is capped at the negative TTL, and decays');
  clock.advance(2_000);
  await ask('nx.example.test');
  t.equal(up.count('nx.example.test'), 2, 'negative answer expired after 20 s');

  await ask('capped.example.test');
  clock.advance(31_000);
  await ask('capped.example.test');
  t.equal(up.count('capped.example.test'), 2, 'maxNegativeTtl (30 s) caps a 2 h negative TTL');

  for (const name of ['nosoa.example.test', 'zero.example.test']) {
    await ask(name);
    await ask(name);
    t.equal(up.count(name), 2, `${name} is not cached`);
  }
  // A SERVFAIL is not cached as an answer; it is only remembered for cache.servfailTtl (5 s, RFC 2308 §7.1).
  await ask('fail.example.test');
  await ask('fail.example.test');
  t.equal(up.count('fail.example.test'), 1, 'a SERVFAIL is remembered for a moment');
  clock.advance(5_000);
  await ask('fail.example.test');
  t.equal(up.count('fail.example.test'), 2, 'and asked again 5 s later');
  t.equal(h.running.stats.cacheHits, 2, 'hits counted');
});

t.test('coalescing: identical queries in flight share one upstream exchange', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('slow.example.test', { delayMs: 150 });
  const h = await startSinkhole(t, up.port);
  const ids = [11, 22, 33, 44, 55];
  const replies = await Promise.all(ids.map((id) => udpExchange(h.port, buildQuery('slow.example.test', T.A, { id }))));
  t.equal(up.count('slow.example.test'), 1, 'five clients, one upstream query');
  t.same(replies.map((r) => decode(r).header.id), ids, 'each client gets its own ID back');
  t.ok(replies.every((r) => decode(r).answers[0]?.address === '192.0.2.10'), 'each gets the answer');
});

t.test('truncation: header + question + TC over UDP, the whole answer over TCP, and TC→TCP upstream', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const many = Array.from({ length: 60 }, (_, i) => ({ name: 'big.example.test', type: T.A, address: `192.0.2.${i + 1}` }));
  up.on('big.example.test', { answers: many });
  up.on('tc.example.test', { truncate: true, answers: many.slice(0, 3).map((a) => ({ ...a, name: 'tc.example.test' })) });
  const h = await startSinkhole(t, up.port);

  const small = await udpExchange(h.port, buildQuery('big.example.test', T.A, { id: 7 }));
  t.ok(small.length <= 512, 'no EDNS: the reply fits 512 bytes');
  const d = decode(small);
  t.equal(d.header.tc, 1, 'TC set');
  t.equal(d.answers.length, 0, 'no partial records');
  t.equal(d.questions[0]?.name, 'big.example.test', 'question kept');
  t.equal(d.header.id, 7, 'client ID');

  const edns = decode(await udpExchange(h.port, buildQuery('big.example.test', T.A, { edns: 1232 })));
  t.equal(edns.header.tc, 0, 'EDNS 1232: 60 A records fit');
  t.equal(edns.answers.length, 60);
  const tinyEdns = await udpExchange(h.port, buildQuery('big.example.test', T.A, { edns: 600 }));
  t.ok(tinyEdns.length <= 600, 'EDNS 600 is honoured');
  t.equal(decode(tinyEdns).header.tc, 1);
  t.ok(optOf(decode(tinyEdns)), 'a truncated EDNS reply still carries OPT');

  const full = decode(await exchange('tcp', h.port, buildQuery('big.example.test', T.A)));
  t.equal(full.answers.length, 60, 'TCP gets every record');
  t.equal(full.header.tc, 0);

  const viaTcp = decode(await udpExchange(h.port, buildQuery('tc.example.test', T.A)));
  t.equal(viaTcp.answers.length, 3, 'a truncated upstream answer was fetched again over TCP');
  t.same(up.seen.filter((s) => s.name === 'tc.example.test').map((s) => s.proto), ['udp', 'tcp']);

  // Upstream TCP connections are reused and pipelined (RFC 7766 §6.2.1): 30 truncated answers at once
  // ride a few warm connections, not 30 handshakes.
  for (let i = 0; i < 30; i++) up.on(`tc${i}.example.test`, { truncate: true, answers: [{ name: `tc${i}.example.test`, type: T.A, address: '192.0.2.9' }] });
  const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => udpExchange(h.port, buildQuery(`tc${i}.example.test`, T.A, { edns: 1232 }))));
  t.ok(answers.every((a) => decode(a).answers[0]?.address === '192.0.2.9'), '30 truncated answers fetched over TCP');
  const conns = new Set(up.seen.filter((s) => s.proto === 'tcp' && /^tc\d+\./.test(s.name)).map((s) => s.port));
  t.ok(conns.size <= 4, `30 TCP retries used ${conns.size} connection(s)`);
  // The upstream closes its idle connections: the next query is re-sent once on a fresh one.
  up.dropTcpConnections();
  up.on('after-drop.example.test', { truncate: true, answers: [{ name: 'after-drop.example.test', type: T.A, address: '192.0.2.8' }] });
  t.equal(decode(await udpExchange(h.port, buildQuery('after-drop.example.test', T.A))).answers[0]?.address, '192.0.2.8', 'a closed pooled connection is re-dialed');
});

t.test('TCP: pipelined queries answered as they complete, split frames, idle timeout', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('slow.example.test', { delayMs: 300 });
  const h = await startSinkhole(t, up.port, { listen: { dns: ['127.0.0.1:0'], tcpIdleTimeout: '400ms' } });
  const c = await TcpClient.connect(h.port);
  t.teardown(() => c.close());
  // Three queries in one write; the first is slow.
  c.sock.write(
    Buffer.concat([
      TcpClient.frame(buildQuery('slow.example.test', T.A, { id: 1 })),
      TcpClient.frame(buildQuery('fast1.example.test', T.A, { id: 2 })),
      TcpClient.frame(buildQuery('fast2.example.test', T.A, { id: 3 })),
    ]),
  );
  const order = (await c.waitFor(3)).map((r) => decode(r).header.id);
  t.same(order.slice().sort(), [1, 2, 3], 'three answers on one connection');
  t.equal(order[2], 1, 'the slow one came last: answers are sent as they complete (RFC 7766 §6.2.1.1)');
  // A frame split byte by byte.
  const split = TcpClient.frame(buildQuery('split.example.test', T.A, { id: 9 }));
  for (let i = 0; i < split.length; i += 5) c.sock.write(split.subarray(i, i + 5));
  t.equal(decode((await c.waitFor(4))[3]!).header.id, 9, 'a split frame is reassembled');
  // A garbage frame gets no answer, but the connection keeps serving.
  c.send(Buffer.from([1, 2, 3]));
  c.send(buildQuery('after.example.test', T.A, { id: 10 }));
  t.equal(decode((await c.waitFor(5))[4]!).header.id, 10, 'connection survives a garbage frame');
  await c.closed;
  t.pass('idle connection closed by the server');
});

t.test('RFC 5452: fresh ID and port upstream; spoofed replies are dropped', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('wrongid.example.test', { wrongId: true });
  up.on('wrongq.example.test', { wrongQuestion: true });
  up.on('onlybad.example.test', { wrongId: true, onlyBad: true });
  up.on('otherport.example.test', { fromOtherPort: true, onlyBad: true });
  const h = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], timeout: '300ms', sourcePortReuse: 1 } });
  for (let i = 0; i < 5; i++) await udpExchange(h.port, buildQuery(`p${i}.example.test`, T.A, { id: 4242 }));
  const seen = up.seen.filter((s) => s.name.startsWith('p'));
  t.equal(new Set(seen.map((s) => s.port)).size, 5, 'sourcePortReuse 1 (strict): five queries came from five source ports');
  t.ok(seen.filter((s) => s.id === 4242).length <= 1, 'the upstream ID is not the client ID');

  const reuse = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], sourcePorts: 1, sourcePortReuse: 3 } });
  for (let i = 0; i < 6; i++) {
    const d = decode(await udpExchange(reuse.port, buildQuery(`s${i}.example.test`, T.A)));
    t.equal(d.answers[0]?.address, '192.0.2.10', `sourcePortReuse 3: query ${i} answered`);
  }
  const ports = up.seen.filter((s) => /^s\d\./.test(s.name)).map((s) => s.port);
  t.equal(new Set(ports).size, 2, 'one socket in rotation, sourcePortReuse 3: six queries used two source ports');

  // The default pool: each query picks one of 1024 sockets at random, so 200 queries land on ~182
  // distinct ports on average (1024 × (1 − (1 − 1/1024)^200)); fewer than 150 is about 8 σ away.
  const pool = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`] } });
  await Promise.all(Array.from({ length: 200 }, (_, i) => udpExchange(pool.port, buildQuery(`pool${i}.example.test`, T.A))));
  const poolPorts = new Set(up.seen.filter((s) => s.name.startsWith('pool')).map((s) => s.port));
  t.ok(poolPorts.size >= 150, `the default pool spreads 200 queries over ${poolPorts.size} random source ports`);
  t.ok(pool.running.forwarder().sourcePortsOpen >= 150, 'and keeps those sockets open for the next queries');
  // A small pool with a low reuse bound: every socket is replaced after 5 queries.
  const small = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], sourcePorts: 2, sourcePortReuse: 5 } });
  for (let i = 0; i < 20; i++) await udpExchange(small.port, buildQuery(`small${i}.example.test`, T.A));
  const perPort = new Map<number, number>();
  for (const s of up.seen.filter((x) => x.name.startsWith('small'))) perPort.set(s.port, (perPort.get(s.port) ?? 0) + 1);
  t.ok(Math.max(...perPort.values()) <= 5, 'no source port carried more than sourcePortReuse queries');
  t.ok(perPort.size >= 4, `20 queries with reuse 5 used ${perPort.size} ports`);

  const a = decode(await udpExchange(h.port, buildQuery('wrongid.example.test', T.A)));
  t.equal(a.answers[0]?.address, '192.0.2.10', 'a reply with the wrong ID is ignored; the real one is used');
  const b = decode(await udpExchange(h.port, buildQuery('wrongq.example.test', T.A)));
  t.equal(b.answers[0]?.address, '192.0.2.10', 'a reply for another question is ignored');
  t.notOk(b.answers.some((r: { address?: string }) => r.address === '203.0.113.66'), 'the spoofed address never reaches the client');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('onlybad.example.test', T.A))), 2, 'only wrong IDs: SERVFAIL');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('otherport.example.test', T.A))), 2, 'reply from the wrong port: SERVFAIL');
});

t.test('SERVFAIL within timeout + 1 s when upstreams fail; failover; conditional forwarding', async (t) => {
  const silent = await FakeUpstream.start();
  const good = await FakeUpstream.start();
  const corp = await FakeUpstream.start();
  t.teardown(() => Promise.all([silent.close(), good.close(), corp.close()]));
  silent.on('*', { silent: true });
  corp.on('*', { answers: [{ name: 'host.corp.internal', type: T.A, address: '10.9.9.9' }] });
  const h = await startSinkhole(t, good.port, {
    upstreams: {
      servers: [`127.0.0.1:${silent.port}`, `127.0.0.1:${good.port}`],
      conditional: { 'corp.internal': [`127.0.0.1:${corp.port}`] },
      timeout: '600ms',
    },
  });
  const f = decode(await udpExchange(h.port, buildQuery('failover.example.test', T.A)));
  t.equal(f.answers[0]?.address, '192.0.2.10', 'failover: the second upstream answered');
  const c = decode(await udpExchange(h.port, buildQuery('host.corp.internal', T.A)));
  t.equal(c.answers[0]?.address, '10.9.9.9', 'conditional: corp.internal went to its own upstream');
  t.equal(good.count('host.corp.internal'), 0, 'and not to the default upstreams');

  const dead = await startSinkhole(t, silent.port, { upstreams: { servers: [`127.0.0.1:${silent.port}`], timeout: '500ms' } });
  for (const proto of PROTOS) {
    const started = Date.now();
    // One name per transport: a failed name is remembered for cache.servfailTtl.
    const r = await exchange(proto, dead.port, buildQuery(`dead-${proto}.example.test`, T.A));
    const elapsed = Date.now() - started;
    t.equal(rcodeOf(r), 2, `${proto}: SERVFAIL`);
    t.ok(elapsed >= 450 && elapsed < 1500, `${proto}: answered after the 500 ms timeout, within timeout + 1 s (${elapsed} ms)`);
  }
});

t.test('bad input: FORMERR, NOTIMP, BADVERS, drops; the server keeps serving', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port);
  const two = buildQuery('a.example.test', T.A);
  two.writeUInt16BE(2, 4);
  const badLabel = Buffer.concat([buildQuery('x', T.A).subarray(0, 12), Buffer.from([70, 65, 66]), Buffer.alloc(4)]);
  const cut = buildQuery('cut.example.test', T.A).subarray(0, 20);
  const ednsV1 = buildQuery('v1.example.test', T.A, { edns: 1232 });
  ednsV1[ednsV1.length - 5] = 1; // OPT version 1
  const cases = [
    { what: 'two questions', msg: two, rcode: 1 },
    { what: 'label longer than 63', msg: badLabel, rcode: 1 },
    { what: 'question cut short', msg: cut, rcode: 1 },
    { what: 'opcode STATUS', msg: buildQuery('a.example.test', T.A, { opcode: 2 }), rcode: 4 },
    { what: 'AXFR through a forwarder', msg: buildQuery('example.test', 252), rcode: 5 },
    { what: 'EDNS version 1 (RFC 6891 §6.1.3 BADVERS)', msg: ednsV1, rcode: 0 },
  ];
  for (const proto of PROTOS) {
    for (const c of cases) {
      const r = await exchange(proto, h.port, c.msg);
      t.equal(rcodeOf(r), c.rcode, `${proto}: ${c.what} → rcode ${c.rcode}`);
      t.equal(r.readUInt16BE(0), c.msg.readUInt16BE(0), `${proto}: ${c.what}: ID echoed`);
    }
  }
  const v1 = decode(await udpExchange(h.port, ednsV1));
  t.equal((optOf(v1) as { extendedRcode?: number } | undefined)?.extendedRcode, 1, 'BADVERS = extended rcode 1 in OPT');
  // Garbage and responses get no reply; a later query is still answered.
  const s = dgram.createSocket('udp4');
  t.teardown(() => s.close());
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  let stray = 0;
  s.on('message', () => stray++);
  s.send(Buffer.from([0xde, 0xad]), h.port, '127.0.0.1');
  const response = buildQuery('r.example.test', T.A);
  response[2] = response[2]! | 0x80;
  s.send(response, h.port, '127.0.0.1');
  const ok = decode(await udpExchange(h.port, buildQuery('still.example.test', T.A)));
  t.equal(ok.answers[0]?.address, '192.0.2.10', 'still serving');
  t.equal(stray, 0, 'no reply to garbage or to a response');
  t.equal(up.count(), 1, 'nothing malformed was forwarded');
});

t.test('clients outside clients.allowFrom get REFUSED', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, { clients: { allowFrom: ['10.0.0.0/8'] } });
  for (const proto of PROTOS) t.equal(rcodeOf(await exchange(proto, h.port, buildQuery('www.example.test', T.A))), 5, `${proto}: REFUSED`);
  t.equal(up.count(), 0, 'nothing forwarded for a refused client');
});

t.test('strategies: race takes the first good answer, random spreads, tcp:// upstreams', async (t) => {
  const slow = await FakeUpstream.start();
  const fast = await FakeUpstream.start();
  t.teardown(() => Promise.all([slow.close(), fast.close()]));
  slow.on('*', { delayMs: 400, answers: [{ name: 'race.example.test', type: T.A, address: '192.0.2.1' }] });
  fast.on('*', { answers: [{ name: 'race.example.test', type: T.A, address: '192.0.2.2' }] });
  const servers = [`127.0.0.1:${slow.port}`, `127.0.0.1:${fast.port}`];
  const race = await startSinkhole(t, slow.port, { upstreams: { servers, strategy: 'race', timeout: '2s' } });
  const started = Date.now();
  const r = decode(await udpExchange(race.port, buildQuery('race.example.test', T.A)));
  t.equal(r.answers[0]?.address, '192.0.2.2', 'race: the fast upstream won');
  t.ok(Date.now() - started < 350, 'race: did not wait for the slow one');
  t.equal(slow.count('race.example.test') + fast.count('race.example.test'), 2, 'race: both were asked');

  const random = await startSinkhole(t, slow.port, { upstreams: { servers: [`127.0.0.1:${fast.port}`, `127.0.0.1:${slow.port}`], strategy: 'random', timeout: '2s' } });
  const before = { slow: slow.count(), fast: fast.count() };
  for (let i = 0; i < 16; i++) await udpExchange(random.port, buildQuery(`r${i}.example.test`, T.A));
  t.ok(slow.count() > before.slow && fast.count() > before.fast, 'random: both upstreams got first tries');

  const tcpOnly = await startSinkhole(t, fast.port, { upstreams: { servers: [`tcp://127.0.0.1:${fast.port}`] } });
  const viaTcp = decode(await udpExchange(tcpOnly.port, buildQuery('tcp-only.example.test', T.A)));
  t.equal(viaTcp.answers[0]?.address, '192.0.2.2', 'tcp:// upstream answered');
  t.same(fast.seen.filter((s) => s.name === 'tcp-only.example.test').map((s) => s.proto), ['tcp'], 'and only over TCP');
});

t.test('an upstream that keeps failing is tried last for a while', async (t) => {
  const dead = await FakeUpstream.start();
  const good = await FakeUpstream.start();
  t.teardown(() => Promise.all([dead.close(), good.close()]));
  dead.on('*', { rcode: 2 });
  const h = await startSinkhole(t, good.port, { upstreams: { servers: [`127.0.0.1:${dead.port}`, `127.0.0.1:${good.port}`] } });
  for (let i = 0; i < 6; i++) t.equal(rcodeOf(await udpExchange(h.port, buildQuery(`h${i}.example.test`, T.A))), 0, `query ${i} answered`);
  t.equal(dead.count(), 3, 'after three failures in a row the failing upstream was no longer tried first');
  t.equal(good.count(), 6);
});

t.test('TCP connection cap: a newcomer takes an idle slot of the biggest holder, and is refused when none is idle', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('hold.example.test', { delayMs: 1500 });
  const h = await startSinkhole(t, up.port, { listen: { dns: ['127.0.0.1:0'], tcpMaxConnections: 2 } });
  const a = await TcpClient.connect(h.port);
  const b = await TcpClient.connect(h.port);
  t.teardown(() => (a.close(), b.close()));
  a.send(buildQuery('a.example.test', T.A));
  b.send(buildQuery('b.example.test', T.A));
  await Promise.all([a.waitFor(1), b.waitFor(1)]);
  // Both idle: a third client's connection takes the least recently active one (a's).
  const c = await TcpClient.connect(h.port, '127.0.0.2');
  t.teardown(() => c.close());
  c.send(buildQuery('c.example.test', T.A));
  t.equal((await c.waitFor(1)).length, 1, 'the newcomer is served');
  await a.closed;
  t.pass('the idle connection that was active longest ago gave way');
  b.send(buildQuery('b2.example.test', T.A));
  t.equal((await b.waitFor(2)).length, 2, 'the other one keeps working');
  // Both busy (a query in flight each): nothing idle to give up, so the newcomer is refused.
  b.send(buildQuery('hold.example.test', T.A));
  c.send(buildQuery('hold.example.test', T.AAAA));
  await new Promise<void>((r) => {
    const wait = (): void => void (up.count('hold.example.test') >= 2 ? r() : setTimeout(wait, 5));
    wait();
  });
  const d = await TcpClient.connect(h.port, '127.0.0.3');
  await d.closed;
  t.equal(d.replies.length, 0, 'with no idle connection the newcomer is closed without service');
  t.equal((await b.waitFor(3)).length, 3, 'the busy ones are answered');
});

t.test('IPv6 and dual-stack listeners; IPv4-mapped clients are IPv4 clients', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const v6 = await startSinkhole(t, up.port, { listen: { dns: ['[::1]:0'] } });
  const s = dgram.createSocket('udp6');
  t.teardown(() => s.close());
  s.send(buildQuery('v6.example.test', T.A, { id: 66 }), v6.port, '::1');
  const [msg] = (await once(s, 'message')) as [Buffer];
  t.equal(decode(msg).answers[0]?.address, '192.0.2.10', 'answered over UDP on ::1 (allowFrom ::1/128)');
  const resolver = new (await import('node:dns/promises')).Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([`[::1]:${v6.port}`]);
  t.same(await resolver.resolve4('v6c.example.test'), ['192.0.2.10'], 'c-ares over IPv6');

  // A dual-stack socket ([::]) reports IPv4 clients as ::ffff:a.b.c.d; tests stay on loopback, so the
  // transport's normalisation is checked directly rather than by binding every interface.
  t.equal(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1', '::ffff:127.0.0.1 is 127.0.0.1');
  t.equal(normalizeAddress('fe80::1%lo'), 'fe80::1', 'zone index dropped');
  const view = v6.running.policy.current.clients.view(normalizeAddress('::ffff:127.0.0.5'));
  t.ok(view.allowed, 'an IPv4-mapped client matches 127.0.0.0/8 in allowFrom');
});

t.test('hostile TCP clients cannot hold slots: byte drip, and clients outside allowFrom', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, { listen: { dns: ['127.0.0.1:0'], tcpIdleTimeout: '400ms' }, clients: { allowFrom: ['127.0.0.1/32'] } });
  const drip = await TcpClient.connect(h.port);
  t.teardown(() => drip.close());
  const frame = TcpClient.frame(buildQuery('drip.example.test', T.A));
  let i = 0;
  const timer = setInterval(() => {
    if (i < frame.length - 1 && !drip.sock.destroyed) drip.sock.write(frame.subarray(i, ++i));
  }, 100);
  t.teardown(() => clearInterval(timer));
  const started = Date.now();
  await drip.closed;
  t.ok(Date.now() - started < 2500, `a frame dripped a byte every 100 ms was cut off after the timeout (${Date.now() - started} ms)`);

  const outsider = await TcpClient.connect(h.port, '127.0.0.2');
  outsider.send(buildQuery('a.example.test', T.A));
  outsider.send(buildQuery('b.example.test', T.A));
  const [first] = await outsider.waitFor(1);
  t.equal(rcodeOf(first!), 5, 'a client outside allowFrom gets REFUSED over TCP');
  await outsider.closed;
  t.pass('and the connection is closed after that answer');
});

t.test('a dot inside a label is not a label boundary: no shared cache entry or verdict', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('www\\.example\\.test', { rcode: 3, soa: { ttl: 3600, minimum: 3600 } });
  const h = await startSinkhole(t, up.port, { blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] } }, { 'tiktok.txt': 'tiktok.com\n' });
  const oneLabel = buildQuery('x', T.A);
  const weird = Buffer.concat([oneLabel.subarray(0, 12), Buffer.from([16]), Buffer.from('www.example.test'), Buffer.from([0, 0, 1, 0, 1])]);
  await udpExchange(h.port, weird);
  const real = decode(await udpExchange(h.port, buildQuery('www.example.test', T.A)));
  t.equal(real.answers[0]?.address, '192.0.2.10', 'the real name is not answered from the one-label name\'s NXDOMAIN');
  // dns2 (the fake upstream's decoder) itself reads both as www.example.test: it saw two queries.
  t.equal(up.count('www.example.test'), 2, 'both went upstream: two cache entries, not one');
  const fake = Buffer.concat([oneLabel.subarray(0, 12), Buffer.from([10]), Buffer.from('tiktok.com'), Buffer.from([0, 0, 1, 0, 1])]);
  t.not(rcodeOf(await udpExchange(h.port, fake)), 3, 'the one-label name "tiktok.com" is not sinkholed as the domain tiktok.com');
  t.equal(h.running.stats.blockedByList.get('tiktok') ?? 0, 0, 'nothing was counted as blocked');
});

t.test('upstreams.maxInflight: past the cap a miss gets SERVFAIL at once', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('*', { delayMs: 300 });
  const h = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], maxInflight: 1 } });
  const first = udpExchange(h.port, buildQuery('one.example.test', T.A));
  await new Promise<void>((r) => {
    const wait = (): void => void (up.count() ? r() : setTimeout(wait, 5));
    wait();
  });
  const started = Date.now();
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('two.example.test', T.A))), 2, 'second miss: SERVFAIL');
  t.ok(Date.now() - started < 250, 'at once, not after the timeout');
  t.equal(rcodeOf(await first), 0, 'the first is answered');
  t.equal(h.running.stats.upstreamOverloads, 1, 'counted');
  // The overload was ours, not the upstream's: the name is not remembered as failed (issue 23 item 1).
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('two.example.test', T.A))), 0, 'asked again at once: answered, no remembered SERVFAIL');
  t.equal(h.running.stats.servfailsRemembered, 0);
});

t.test('a query that cannot leave this host (EMSGSIZE) is not the upstream failing (issue 23 item 1)', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const udp = new UdpUpstream();
  t.teardown(() => udp.close());
  // 65,508 octets: one more than a UDP datagram over IPv4 can carry.
  const huge = Buffer.concat([buildQuery('big.example.test', T.A), Buffer.alloc(65_508 - 34)]);
  await t.rejects(udp.exchange('127.0.0.1', up.port, huge.subarray(0, 65_508), 34, 1000), { name: 'LocalSendError', message: /EMSGSIZE/ });
  // Through the forwarder: a send failure of our own leaves the upstream healthy, and is not remembered.
  const h = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], timeout: '1s' } });
  // The forwarder's UDP source ports are private: reached through a cast, for this fault only.
  const forwarder = h.running.forwarder() as unknown as { udp: UdpUpstream };
  const real = forwarder.udp.exchange.bind(forwarder.udp);
  let fail = true;
  // Stands in for a send that the kernel refuses with EMSGSIZE, whatever the query.
  forwarder.udp.exchange = (...args) => (fail ? Promise.reject(new LocalSendError('send EMSGSIZE')) : real(...args));
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('local.example.test', T.A))), 2, 'SERVFAIL for the query that could not be sent');
  fail = false;
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('local.example.test', T.A))), 0, 'the next query for the name goes upstream: not remembered');
  const u = h.running.stats.upstreams.get(`127.0.0.1:${up.port}`)!;
  t.same({ error: u.outcomes.error, timeout: u.outcomes.timeout }, { error: 0, timeout: 0 }, 'nothing counted against the upstream');
  t.equal(h.running.stats.localSendErrors, 1, 'counted as a local error');
});

t.test('TCP abuse: one client cannot hold the slots (per-client cap), connections have a lifetime', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('hold.example.test', { delayMs: 2000 });
  const h = await startSinkhole(t, up.port, {
    listen: { dns: ['127.0.0.1:0'], tcpMaxConnections: 8, tcpMaxConnectionsPerClient: 3, tcpConnectionLifetime: '1s' },
  });
  const gauge = async (name: string): Promise<number> =>
    ((await h.running.registry.getSingleMetric(name)!.get()) as { values: { value: number }[] }).values[0]!.value;
  // A client that opens connection after connection, 40 times, never closing one: it holds at most 3.
  const hog: TcpClient[] = [];
  t.teardown(() => hog.forEach((c) => c.close()));
  let most = 0;
  for (let i = 0; i < 40; i++) {
    const c = await TcpClient.connect(h.port, '127.0.0.66');
    hog.push(c);
    c.send(buildQuery(`hog${i}.example.test`, T.A));
    await c.waitFor(1);
    most = Math.max(most, await gauge('sinkhole_tcp_connections'));
  }
  t.equal(most, 3, 'the client never held more than its 3 slots: each new connection took the place of its own idle one');
  t.ok((await gauge('sinkhole_tcp_evictions_total')) >= 37, 'the older ones were evicted');
  // Meanwhile, fresh clients are all served.
  const fresh = await Promise.all(
    Array.from({ length: 5 }, async (_, i) => {
      const c = await TcpClient.connect(h.port, `127.0.0.${10 + i}`);
      t.teardown(() => c.close());
      c.send(buildQuery(`fresh${i}.example.test`, T.A));
      return rcodeOf((await c.waitFor(1))[0]!);
    }),
  );
  t.same(fresh, [0, 0, 0, 0, 0], 'every fresh client was answered');
  // With all of its 3 connections busy, the client's fourth is refused: nothing of its own to give up.
  const busy = hog.slice(-3);
  busy.forEach((c, i) => c.send(buildQuery('hold.example.test', [T.A, T.AAAA, T.TXT][i]!)));
  await new Promise<void>((r) => {
    const wait = (): void => void (up.count('hold.example.test') >= 3 ? r() : setTimeout(wait, 5));
    wait();
  });
  const fourth = await TcpClient.connect(h.port, '127.0.0.66');
  await fourth.closed;
  t.equal(fourth.replies.length, 0, 'with its 3 connections busy, the client\'s fourth is refused');
  t.ok((await gauge('sinkhole_tcp_refused_total')) >= 1, 'and counted');
  t.same((await Promise.all(busy.map((c) => c.waitFor(2, 5000)))).map((r) => r.length), [2, 2, 2], 'the busy ones are answered');
  // Lifetime: a connection that keeps asking, inside the idle timeout, is still closed after 1 s.
  const chatty = await TcpClient.connect(h.port, '127.0.0.20');
  t.teardown(() => chatty.close());
  const started = Date.now();
  let sent = 0;
  const timer = setInterval(() => {
    if (!chatty.sock.destroyed) chatty.send(buildQuery(`chat${sent++}.example.test`, T.A));
  }, 100);
  t.teardown(() => clearInterval(timer));
  await chatty.closed;
  clearInterval(timer);
  const lived = Date.now() - started;
  t.ok(lived >= 900 && lived < 3000, `a busy connection was closed after its 1 s lifetime (${lived} ms)`);
  t.ok(chatty.replies.length >= 5, `and its queries up to then were answered (${chatty.replies.length})`);
});

t.test('TCP abuse: a pipelined burst is taken a few frames per connection per event-loop turn', async (t) => {
  // The listener alone, with a handler that notes in which event-loop turn each query arrived.
  let turn = 0;
  let ticking = true;
  const tick = (): void => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  tick();
  const turns: number[] = [];
  const handler = (q: Query): Outcome => {
    turns.push(turn);
    return { wire: errorReply(q, 3), result: 'blocked' };
  };
  const limits = { idleTimeoutMs: 5000, maxConnections: 10, maxConnectionsPerClient: 10, lifetimeMs: 60_000 };
  const listener = new TcpListener({ host: '127.0.0.1', port: 0 }, handler, limits, silentLogger);
  const { port } = await listener.start();
  t.teardown(async () => {
    ticking = false;
    await listener.close();
  });
  const c = await TcpClient.connect(port);
  t.teardown(() => c.close());
  // 400 frames in one write: one read on the server, which used to handle them all in one go.
  c.sock.write(Buffer.concat(Array.from({ length: 400 }, (_, i) => TcpClient.frame(buildQuery(`b${i}.example.test`, T.A)))));
  t.equal((await c.waitFor(400, 20_000)).length, 400, 'every frame answered');
  const perTurn = new Map<number, number>();
  for (const n of turns) perTurn.set(n, (perTurn.get(n) ?? 0) + 1);
  const most = Math.max(...perTurn.values());
  t.ok(most <= 16, `at most 16 frames of one connection in one turn (most: ${most}), over ${perTurn.size} turns`);
});

t.test('TCP framing: a read holding thousands of pipelined frames is framed in linear time', async (t) => {
  const frames = Array.from({ length: 20_000 }, (_, i) => TcpClient.frame(buildQuery(`f${i}.example.test`, T.A, { id: i & 0xffff })));
  const chunk = Buffer.concat(frames);
  let n = 0;
  let ids = 0;
  const reader = new FrameReader((msg) => {
    n++;
    ids += msg.readUInt16BE(0);
  });
  const started = performance.now();
  // Split in three reads, the middle one cutting a frame in two.
  reader.push(chunk.subarray(0, 1001));
  reader.push(chunk.subarray(1001, chunk.length - 7));
  reader.push(chunk.subarray(chunk.length - 7));
  const ms = performance.now() - started;
  t.equal(n, 20_000, 'every frame');
  t.equal(ids, Array.from({ length: 20_000 }, (_, i) => i & 0xffff).reduce((a, b) => a + b, 0), 'each one whole and in order');
  t.equal(reader.buffered, 0, 'nothing left over');
  t.ok(ms < 200, `in ${ms.toFixed(1)} ms (copying the rest after every frame took seconds)`);
});

t.test('a UDP listener started again after close (the bind retry when TCP finds its port taken) answers', async (t) => {
  const handler = (q: Query): Outcome => ({ wire: errorReply(q, 3), result: 'blocked' });
  const u = new UdpListener({ host: '127.0.0.1', port: 0 }, handler, silentLogger);
  await u.start();
  await u.close();
  const { port } = await u.start();
  t.teardown(() => u.close());
  t.equal(rcodeOf(await udpExchange(port, buildQuery('again.example.test', T.A), 2000)), 3, 'answered after the restart');
});

t.test('binding UDP and TCP on one port: after a TCP clash, the UDP listener of the retry answers', async (t) => {
  const answer = (): { wire: Buffer; result: 'local' } => ({ wire: Buffer.alloc(12), result: 'local' });
  const ep = { host: '127.0.0.1', port: 0 };
  const tcp = new TcpListener(ep, answer, { idleTimeoutMs: 1000, maxConnections: 10, maxConnectionsPerClient: 10, lifetimeMs: 60_000 }, silentLogger);
  // The first TCP bind fails as if another process had that port on TCP; the second succeeds.
  const start = tcp.start.bind(tcp);
  let calls = 0;
  tcp.start = (port?: number) => (calls++ === 0 ? Promise.reject(Object.assign(new Error('in use'), { code: 'EADDRINUSE' })) : start(port));
  const made: UdpListener[] = [];
  const bound = await bindPair(ep, () => (made.push(new UdpListener(ep, (q) => ({ wire: Buffer.from(q.buf), result: 'local' }), silentLogger)), made.at(-1)!), tcp);
  t.teardown(() => Promise.all([bound.udp.close(), tcp.close()]));
  t.equal(made.length, 2, 'a second UDP listener for the retry');
  t.equal(bound.udp, made[1], 'and that is the one returned');
  const reply = await udpExchange(bound.addresses.udp.port, buildQuery('retry.example.test', T.A, { id: 0x5151 }));
  t.equal(reply.readUInt16BE(0), 0x5151, 'it answers (the closed first one would drop every query)');
});
