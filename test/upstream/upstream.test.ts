// src/upstream/ over UDP and TCP (forwarder.ts, exchange.ts, udp.ts, tcp.ts, random.ts) and
// src/stages/forward.ts: forwarding, RFC 5452 checks, SERVFAIL timing, failover and strategies,
// maxInflight, and replies from a lying or broken upstream (compression tricks, broken records, faults:
// found by a hostile-input run, issue 8). Encrypted upstreams: encrypted.test.ts.
import t from 'tap';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST } from '../helpers/sinkhole.js';
import { buildQuery, decode, exchange, rcodeOf, udpExchange, encodeName, handReply, ptr, questionEnd, rr, ipv4 } from '../helpers/dns.js';
import { UdpUpstream } from '../../src/upstream/udp.js';
import { LocalSendError } from '../../src/upstream/exchange.js';

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

t.test('a truncated UDP answer is retried over TCP, with one upstream (the short path) and with several (failover)', async (t) => {
  const up = await FakeUpstream.start();
  const second = await FakeUpstream.start();
  t.teardown(() => Promise.all([up.close(), second.close()]));
  up.on('big.example.test', { truncate: true, answers: [{ name: 'big.example.test', type: T.A, address: '192.0.2.99' }] });
  const one = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], timeout: '1s' } });
  const two = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`, `127.0.0.1:${second.port}`], timeout: '1s' } });
  for (const [what, h] of [['one upstream', one], ['two upstreams', two]] as const) {
    const d = decode(await udpExchange(h.port, buildQuery('big.example.test', T.A)));
    t.same(d.answers.map((a: { address?: string }) => a.address), ['192.0.2.99'], `${what}: the answer that came over TCP`);
    t.equal(d.header.tc, 0, `${what}: not truncated for the client`);
    const u = h.running.stats.upstreams.get(`127.0.0.1:${up.port}`)!;
    t.same({ truncated: u.outcomes.truncated, ok: u.outcomes.ok }, { truncated: 1, ok: 1 }, `${what}: counted once as truncated, once as ok`);
  }
});

const BLOCKING = { blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] } };

const NULL_TYPE = 10;

/**
 * A reply whose CNAME target is www.tiktok.com written once in a NULL record
 * and then reached through `hops` backward compression pointers, each
 * pointing at the one before (dig and kdig decode this fine).
 */
function pointerChainReply(query: Buffer, hops: number): Buffer {
  const start = questionEnd(query);
  const target = encodeName('www.tiktok.com');
  const nameAt = start + 12; // past the NULL record's owner pointer (2) and fixed fields (10)
  const chain = [target];
  let last = nameAt;
  for (let i = 0, at = nameAt + target.length; i < hops - 1; i++, at += 2) {
    chain.push(ptr(last));
    last = at;
  }
  const holder = rr(ptr(12), NULL_TYPE, 300, Buffer.concat(chain));
  const cname = rr(ptr(12), T.CNAME, 300, ptr(last));
  const a = rr(ptr(nameAt), T.A, 300, ipv4('192.0.2.66'));
  return handReply(query, Buffer.concat([holder, cname, a]), { an: 3 });
}

t.test('a lying upstream: every name the policy inspects is decoded fully, or the reply is SERVFAIL (fail closed)', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('chain.example.test', { raw: (q) => pointerChainReply(q, 130) });
  up.on('longchain.example.test', { raw: (q) => pointerChainReply(q, 300) });
  up.on('loop.example.test', {
    // The CNAME's RDATA is a pointer to itself.
    raw: (q) => handReply(q, rr(ptr(12), T.CNAME, 300, ptr(questionEnd(q) + 12)), { an: 1 }),
  });
  up.on('forward.example.test', {
    // A pointer to a name written after it (RFC 1035 §4.1.4 and RFC 9267 §2: only prior occurrences).
    raw: (q) => {
      const cnameAt = questionEnd(q);
      const later = cnameAt + 14;
      return handReply(q, Buffer.concat([rr(ptr(12), T.CNAME, 300, ptr(later + 12)), rr(ptr(12), NULL_TYPE, 300, encodeName('www.tiktok.com'))]), { an: 2 });
    },
  });
  up.on('toolong.example.test', {
    // A target of 63-byte labels repeated through pointers, past 255 bytes in all (RFC 1035 §2.3.4).
    raw: (q) => {
      const at = questionEnd(q) + 12;
      const label = Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)]);
      const chain = Buffer.concat([label, Buffer.from([0]), label, ptr(at), label, ptr(at + 65), label, ptr(at + 65 + 66)]);
      return handReply(q, Buffer.concat([rr(ptr(12), NULL_TYPE, 300, chain), rr(ptr(12), T.CNAME, 300, ptr(at + 65 + 66 + 66))]), { an: 2 });
    },
  });
  up.on('badptr.example.test', {
    // An owner name pointing past the end of the message: dig prints "Got bad packet".
    raw: (q) => handReply(q, rr(ptr(0x3fff), T.A, 300, ipv4('192.0.2.1')), { an: 1 }),
  });
  up.on('https.example.test', {
    // HTTPS (RFC 9460): SvcPriority 1, TargetName www.tiktok.com through a pointer chain.
    raw: (q) => {
      const base = pointerChainReply(q, 20);
      const body = base.subarray(questionEnd(q));
      const holderLen = 12 + 16 + 19 * 2;
      const lastPtr = questionEnd(q) + 12 + 16 + 18 * 2;
      const https = rr(ptr(12), T.HTTPS, 300, Buffer.concat([Buffer.from([0, 1]), ptr(lastPtr)]));
      return handReply(q, Buffer.concat([body.subarray(0, holderLen), https]), { an: 2 });
    },
  });
  // servfailTtl 0: each query goes upstream again, so each broken reply is seen (and counted) anew.
  const h = await startSinkhole(t, up.port, { ...BLOCKING, cache: { servfailTtl: '0s' } }, { 'tiktok.txt': TIKTOK_LIST });
  for (const proto of PROTOS) {
    t.equal(rcodeOf(await exchange(proto, h.port, buildQuery('chain.example.test', T.A))), 3, `${proto}: a CNAME to www.tiktok.com through 130 pointer hops is sinkholed`);
    t.equal(rcodeOf(await exchange(proto, h.port, buildQuery('https.example.test', T.HTTPS))), 3, `${proto}: an HTTPS TargetName through 20 hops is sinkholed`);
    for (const name of ['longchain', 'loop', 'forward', 'toolong', 'badptr']) {
      t.equal(rcodeOf(await exchange(proto, h.port, buildQuery(`${name}.example.test`, T.A))), 2, `${proto}: ${name}: SERVFAIL, never relayed`);
    }
  }
  t.equal(up.count('badptr.example.test'), 2, 'an undecodable reply is never cached: asked again');
  const outcomes = h.running.stats.upstream(`127.0.0.1:${up.port}`).outcomes;
  t.equal(outcomes.error, 10, 'each undecodable reply counted as an upstream error');
});

t.test('a broken reply is that upstream failing: the next one is tried (failover and race)', async (t) => {
  const broken = await FakeUpstream.start();
  const good = await FakeUpstream.start();
  t.teardown(() => Promise.all([broken.close(), good.close()]));
  // Our ID and question, then an A record whose RDLENGTH runs past the end of the message.
  broken.on('*', {
    raw: (q) => {
      const a = rr(ptr(12), T.A, 300, ipv4('203.0.113.66'));
      a.writeUInt16BE(40, 10);
      return handReply(q, a, { an: 1 });
    },
  });
  good.on('*', { delayMs: 30, answers: [{ name: 'x', type: T.A, address: '192.0.2.44' }] });
  const servers = [`127.0.0.1:${broken.port}`, `127.0.0.1:${good.port}`];
  const failover = await startSinkhole(t, good.port, { upstreams: { servers, strategy: 'failover', timeout: '2s' } });
  const race = await startSinkhole(t, good.port, { upstreams: { servers, strategy: 'race', timeout: '2s' } });
  for (const [what, h] of [['failover', failover], ['race', race]] as const) {
    for (let i = 0; i < 4; i++) {
      const d = decode(await udpExchange(h.port, buildQuery(`${what}${i}.example.test`, T.A)));
      t.equal(d.header.rcode, 0, `${what} ${i}: NOERROR`);
      t.equal(d.answers[0]?.address, '192.0.2.44', `${what} ${i}: the good upstream's answer`);
    }
    const o = h.running.stats.upstream(`127.0.0.1:${broken.port}`).outcomes;
    t.equal(o.ok, 0, `${what}: the broken upstream never counted ok`);
    t.ok(o.error >= 1, `${what}: it counted as an error (${o.error})`);
  }
});

t.test('upstream faults: each answered within upstreams.timeout + 1 s, nothing wrong cached', async (t) => {
  const up = await FakeUpstream.start();
  const refusing = await FakeUpstream.start();
  const flappy = await FakeUpstream.start();
  t.teardown(() => Promise.all([up.close(), refusing.close(), flappy.close()]));
  await refusing.closeTcp();
  const rnd = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 151 + 7) & 255));
  up.on('garbage.example.test', { raw: () => rnd(40) });
  up.on('wrongid.example.test', { wrongId: true, onlyBad: true });
  up.on('otherq.example.test', { wrongQuestion: true, onlyBad: true });
  up.on('otherport.example.test', { fromOtherPort: true, onlyBad: true });
  up.on('tcpreset.example.test', { truncate: true, tcpFault: 'reset' });
  up.on('tcpcut.example.test', { truncate: true, tcpFault: 'cut' });
  up.on('hugettl.example.test', { answers: [{ name: 'hugettl.example.test', type: T.A, address: '192.0.2.9', ttl: 2_000_000_000 }] });
  refusing.on('*', { truncate: true });
  const timeout = 1000;
  // servfailTtl 0: a SERVFAIL is not remembered (RFC 2308 §7.1 allows it), so "afterwards" asks upstream again.
  const main = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], timeout: '1s' }, cache: { maxTtl: '1d', servfailTtl: '0s' } });
  const tcRefused = await startSinkhole(t, refusing.port, { upstreams: { servers: [`127.0.0.1:${refusing.port}`], timeout: '1s' } });
  const timed = async (port: number, name: string): Promise<{ rcode: number; ms: number; reply: Buffer }> => {
    const at = performance.now();
    const reply = await udpExchange(port, buildQuery(name, T.A), 5000);
    return { rcode: rcodeOf(reply), ms: Math.round(performance.now() - at), reply };
  };
  const faults = [
    ['garbage bytes', main.port, 'garbage.example.test', 2],
    ['wrong ID', main.port, 'wrongid.example.test', 2],
    ['right ID, another question', main.port, 'otherq.example.test', 2],
    ['a reply from another port', main.port, 'otherport.example.test', 2],
    ['TC, then TCP refused', tcRefused.port, 'tcrefused.example.test', 2],
    ['TC, then TCP reset', main.port, 'tcpreset.example.test', 2],
    ['TCP closed mid-message', main.port, 'tcpcut.example.test', 2],
    ['a huge TTL', main.port, 'hugettl.example.test', 0],
  ] as const;
  const results = await Promise.all(faults.map(([, port, name]) => timed(port, name)));
  faults.forEach(([what, , name, rcode], i) => {
    const r = results[i]!;
    t.comment(`upstream fault "${what}": rcode ${r.rcode} in ${r.ms} ms`);
    t.equal(r.rcode, rcode, `${what}: rcode ${rcode}`);
    t.ok(r.ms < timeout + 1000, `${what}: answered within timeout + 1 s (${r.ms} ms)`);
    t.notMatch(r.reply.toString('latin1'), /spoofed/, `${what}: nothing of a forged reply reached the client (${name})`);
  });
  t.equal(decode(results[7]!.reply).answers[0]?.ttl, 86_400, 'the huge TTL is clamped to cache.maxTtl');
  // Nothing wrong was cached: once the upstream behaves, every name gets its real answer.
  for (const [what, , name] of faults.slice(0, 4).concat(faults.slice(5, 7))) {
    up.on(name, {});
    const d = decode(await udpExchange(main.port, buildQuery(name, T.A)));
    t.equal(d.answers[0]?.address, '192.0.2.10', `${what}: afterwards, the real answer (no SERVFAIL or forgery cached)`);
  }

  // An upstream that flaps (answers, then is silent, then answers...), with a steady one behind it.
  const steady = await FakeUpstream.start();
  t.teardown(() => steady.close());
  steady.on('*', { answers: [{ name: 'x', type: T.A, address: '192.0.2.77' }] });
  let n = 0;
  flappy.on('*', { raw: (q) => (n++ % 2 === 0 ? handReply(q, rr(ptr(12), T.A, 60, ipv4('192.0.2.66')), { an: 1 }) : undefined) });
  const flap = await startSinkhole(t, flappy.port, { upstreams: { servers: [`127.0.0.1:${flappy.port}`, `127.0.0.1:${steady.port}`], timeout: '1s' } });
  const flaps = [];
  for (let i = 0; i < 8; i++) flaps.push(await timed(flap.port, `flap${i}.example.test`));
  t.comment(`upstream fault "an upstream that flaps": rcodes ${flaps.map((f) => f.rcode).join(',')}, slowest ${Math.max(...flaps.map((f) => f.ms))} ms`);
  t.same(flaps.map((f) => f.rcode), Array(8).fill(0), 'flapping: every query answered NOERROR (by one upstream or the other)');
  t.ok(flaps.every((f) => f.ms < timeout + 1000), 'each within timeout + 1 s');
});
