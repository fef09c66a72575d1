// src/cache/ (the reply cache, its slots and TTL limits) and src/stages/cache.ts (the cache stage:
// coalescing, serve-stale (RFC 8767), remembered SERVFAILs (RFC 2308 §7.1), prefetch).
// Cache time runs on a FakeClock; only the client response timer and upstream timeouts are real,
// and kept short.
import t from 'tap';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { FakeClock, startSinkhole, TIKTOK_LIST, type Harness } from '../helpers/sinkhole.js';
import { buildQuery, decode, exchange, optOf, rcodeOf, udpExchange, type Decoded, handReply, ptr, rr, ipv4 } from '../helpers/dns.js';
import { decodeQuery } from '../../src/dns/query.js';
import { cacheKey, ReplyCache } from '../../src/cache/replyCache.js';
import { scanReply } from '../../src/dns/message.js';
import { until } from '../helpers/wait.js';
import { CacheStage } from '../../src/stages/cache.js';
import { Stats } from '../../src/metrics/stats.js';
import { defaultConfig } from '../../src/config/schema.js';
import { Later } from '../../src/later.js';
import { errorReply } from '../../src/dns/reply.js';
import { RCODE } from '../../src/dns/constants.js';
import type { Outcome } from '../../src/pipeline/types.js';

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
    if (cache.set(q, r, scanReply(r)!) > 0) stored++;
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
  const hit = cache.get(decodeQuery(qb, '127.0.0.1', 'udp', 0)!);
  t.equal(hit?.wire.length, reply(buildQuery('big.example.test', T.A), 60_000).length, 'the big answer comes back whole');
  t.equal(hit?.wire.readUInt16BE(0), 99, 'with this client\'s ID');
  t.equal(hit?.wire.toString('latin1', 13, 16), 'Big', 'and its question case');
  // Keys are the name's bytes and a fixed 5-byte tail: "a" type 1 and a name that ends like the tail differ.
  const k1 = cacheKey(decodeQuery(buildQuery('a.example', T.A), '', 'udp', 0)!);
  const k2 = cacheKey(decodeQuery(buildQuery('a.example', T.AAAA), '', 'udp', 0)!);
  const k3 = cacheKey(decodeQuery(buildQuery('a.example', T.A, { edns: 1232 }), '', 'udp', 0)!);
  t.equal(new Set([k1, k2, k3]).size, 3, 'type and EDNS are in the key');
  // A lookup hashes and compares the query itself, not a key string: every part of the key must still count.
  const stored1 = buildQuery('a.example', T.A);
  cache.set(decodeQuery(stored1, '', 'udp', 0)!, reply(stored1), scanReply(reply(stored1))!);
  const lookup = (qb: Buffer): boolean => cache.get(decodeQuery(qb, '', 'udp', 0)!) !== undefined;
  t.ok(lookup(buildQuery('A.Example', T.A)), 'the same question in another case is a hit');
  const chaos = buildQuery('a.example', T.A);
  chaos.writeUInt16BE(3, chaos.length - 2);
  t.same(
    [
      lookup(buildQuery('a.example', T.AAAA)),
      lookup(chaos),
      lookup(buildQuery('a.example', T.A, { edns: 1232 })),
      lookup(buildQuery('a.example', T.A, { edns: 1232, dnssecOk: true })),
      lookup(buildQuery('a.example', T.A, { rd: false })),
      lookup(buildQuery('a.exampl', T.A)),
      lookup(buildQuery('b.example', T.A)),
    ],
    [false, false, false, false, false, false, false],
    'type, class, EDNS, DO, RD and the name each keep another question from the entry',
  );
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
  // Prefetch off: this test is about plain expiry (prefetch and serve-stale: further down this file).
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

t.test('a miss whose forward settles at once is not left behind as "in flight": the next query for the name goes upstream again', async (t) => {
  const cache = new ReplyCache({ maxEntries: 100, minTtl: 0, maxTtl: 86400, maxNegativeTtl: 3600 });
  const config = defaultConfig('/nonexistent/sinkhole.yaml');
  const stage = new CacheStage(() => cache, new Stats(), () => config, { now: () => Date.now() });
  const ask = (): Promise<Outcome> => Promise.resolve(stage.handle(decodeQuery(buildQuery('at-once.example.test', T.A), '127.0.0.1', 'udp', 0)!, next));
  let forwarded = 0;
  // What the forward stage returns when no socket can be had or a send fails synchronously: a Later settled already.
  const next = (q: Parameters<typeof errorReply>[0]): Later<Outcome> => {
    forwarded++;
    return Later.of({ wire: errorReply(q, RCODE.SERVFAIL), result: 'servfail', local: true } as Outcome);
  };
  t.equal((await ask()).result, 'servfail');
  t.equal((await ask()).result, 'servfail');
  t.equal(forwarded, 2, 'each query was forwarded: the first one\'s settled exchange was not shared with the second');
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

  // Shared by question (name, type, class and the flags in the cache key), not by the bytes a client sent.
  up.on('slower.example.test', { delayMs: 150 });
  const asked = [
    buildQuery('slower.example.test', T.A, { id: 1 }),
    buildQuery('SLOWER.Example.test', T.A, { id: 2 }), // 0x20 case (RFC 4343): the same question
    buildQuery('slower.example.test', T.AAAA, { id: 3 }), // another type
    buildQuery('slower.example.test', T.A, { id: 4, rd: false }), // another RD flag (part of the key)
    buildQuery('slower.example.test', T.A, { id: 5 }),
  ];
  const got = (await Promise.all(asked.map((q) => udpExchange(h.port, q)))).map(decode);
  const sent = up.seen.filter((s) => s.name === 'slower.example.test');
  t.equal(sent.length, 3, 'three questions, three upstream queries: ids 1, 2 and 5 shared one');
  t.same(sent.map((s) => s.type).sort(), [T.A, T.A, T.AAAA].sort());
  t.same(got.map((d) => d.header.id), [1, 2, 3, 4, 5], 'each client gets its own ID back');
  t.equal(got[1]!.questions[0]!.name, 'SLOWER.Example.test', 'and its question as it wrote it');
});


function edeCodes(d: Decoded): number[] {
  const opt = optOf(d) as { rdata?: { infoCode?: number }[] } | undefined;
  return (opt?.rdata ?? []).map((o) => o.infoCode).filter((c): c is number => c !== undefined);
}

const addr = (d: Decoded): string | undefined => (d.answers as { address?: string }[]).find((a) => a.address)?.address;

/** Upstream exchanges that ended, by outcome, for the one upstream in these tests. */
function outcomes(h: Harness, up: FakeUpstream): { ok: number; timeout: number; error: number } {
  const s = h.running.stats.upstreams.get(`127.0.0.1:${up.port}`);
  return { ok: s?.outcomes.ok ?? 0, timeout: s?.outcomes.timeout ?? 0, error: s?.outcomes.error ?? 0 };
}

function staleConfig(up: FakeUpstream, cache: Record<string, unknown> = {}, timeout = '1500ms'): Record<string, unknown> {
  return {
    upstreams: { servers: [`127.0.0.1:${up.port}`], timeout },
    cache: { prefetch: false, ...cache, serveStale: { clientTimeout: '200ms', ...((cache.serveStale as object) ?? {}) } },
  };
}

t.test('serve-stale: a slow upstream gets the expired answer at the client timer; the exchange goes on and refreshes the cache', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  up.on('slow.example.test', { echoEdns: true, answers: [{ name: 'slow.example.test', type: T.A, address: '192.0.2.1', ttl: 60 }] });
  up.on('plain.example.test', { answers: [{ name: 'plain.example.test', type: T.A, address: '192.0.2.2', ttl: 60 }] });
  const h = await startSinkhole(t, up.port, staleConfig(up), {}, { clock });
  const ask = async (name: string, edns?: number): Promise<{ d: Decoded; ms: number }> => {
    const started = Date.now();
    const d = decode(await udpExchange(h.port, buildQuery(name, T.A, edns === undefined ? {} : { edns })));
    return { d, ms: Date.now() - started };
  };
  t.equal(addr((await ask('slow.example.test', 1232)).d), '192.0.2.1', 'cached');
  await ask('plain.example.test');
  await ask('plain.example.test', 1232);
  clock.advance(61_000);
  // Now the upstream takes 700 ms, longer than the 200 ms client timer and within its 1.5 s timeout.
  up.on('slow.example.test', { echoEdns: true, delayMs: 700, answers: [{ name: 'slow.example.test', type: T.A, address: '192.0.2.99', ttl: 60 }] });
  const okBefore = outcomes(h, up).ok;
  const stale = await ask('slow.example.test', 1232);
  t.equal(addr(stale.d), '192.0.2.1', 'the expired answer was served, not the one still on its way');
  t.ok(stale.ms >= 190, `after the client timer, not at once (${stale.ms} ms)`);
  t.equal(stale.d.answers[0]?.ttl, 30, 'with the stale answer TTL, 30 s (RFC 8767 §4)');
  t.same(edeCodes(stale.d), [3], 'EDE 3 "Stale Answer" in the OPT the upstream sent (RFC 8914 §4.4)');
  t.equal(h.running.stats.staleAnswers, 1, 'counted');
  await until(() => outcomes(h, up).ok > okBefore, 'the upstream exchange to finish');
  const fresh = await ask('slow.example.test', 1232);
  t.equal(addr(fresh.d), '192.0.2.99', 'the exchange that was started refreshed the cache');
  t.same(edeCodes(fresh.d), [], 'a fresh answer has no EDE');
  t.equal(up.count('slow.example.test'), 2, 'answered from the refreshed cache, not upstream');

  // An upstream without EDNS (the fake drops OPT here) and clients with and without it.
  up.on('plain.example.test', { silent: true });
  const noEdns = await ask('plain.example.test');
  t.equal(addr(noEdns.d), '192.0.2.2', 'stale for a client without EDNS');
  t.equal(optOf(noEdns.d), undefined, 'and no OPT at all: it sent none (RFC 6891 §7)');
  const withEdns = await ask('plain.example.test', 1232);
  t.same(edeCodes(withEdns.d), [3], 'stale for an EDNS client: an OPT with EDE 3 is added when the upstream sent none');
  const viaTcp = decode(await exchange('tcp', h.port, buildQuery('plain.example.test', T.A)));
  t.equal(addr(viaTcp), '192.0.2.2', 'over TCP too');
  t.equal(h.running.stats.staleAnswers, 4);
});

t.test('serve-stale: when every upstream fails, stale at once; a failed name is retried at most every 30 s; maxStale bounds it; the switch turns it off', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  up.on('down.example.test', { answers: [{ name: 'down.example.test', type: T.A, address: '192.0.2.7', ttl: 60 }] });
  up.on('nx.example.test', { rcode: 3, soa: { ttl: 60, minimum: 60 } });
  // A client timer far above what the upstream takes to fail, so only a failure can explain a fast stale answer.
  const h = await startSinkhole(t, up.port, staleConfig(up, { serveStale: { clientTimeout: '5s', maxStale: '1h' } }), {}, { clock });
  const ask = async (name: string): Promise<{ d: Decoded; ms: number }> => {
    const started = Date.now();
    const d = decode(await udpExchange(h.port, buildQuery(name, T.A)));
    return { d, ms: Date.now() - started };
  };
  await ask('down.example.test');
  await ask('nx.example.test');
  clock.advance(61_000);
  up.on('down.example.test', { rcode: 2 });
  up.on('nx.example.test', { rcode: 2 });
  const first = await ask('down.example.test');
  t.equal(addr(first.d), '192.0.2.7', 'the upstream said SERVFAIL: the stale answer instead');
  t.ok(first.ms < 2500, `without waiting for the 5 s client timer (${first.ms} ms)`);
  t.equal(up.count('down.example.test'), 2, 'it was asked');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('nx.example.test', T.A))), 3, 'a stale negative answer is served as well');

  for (const step of [0, 10_000, 19_000]) {
    clock.advance(step);
    const again = await ask('down.example.test');
    t.equal(addr(again.d), '192.0.2.7', `${step / 1000} s later: stale again`);
  }
  t.equal(up.count('down.example.test'), 2, 'and within 30 s of the failure, without asking upstream (RFC 8767 failure recheck)');
  clock.advance(1_500);
  await ask('down.example.test');
  t.equal(up.count('down.example.test'), 3, 'after 30 s it is asked again');

  clock.advance(3_600_000);
  const tooOld = await ask('down.example.test');
  t.equal(tooOld.d.header.rcode, 2, 'past maxStale (1 h here) there is nothing to serve: SERVFAIL');

  const off = await startSinkhole(t, up.port, staleConfig(up, { serveStale: { enabled: false } }), {}, { clock });
  up.on('off.example.test', { answers: [{ name: 'off.example.test', type: T.A, address: '192.0.2.8', ttl: 60 }] });
  await udpExchange(off.port, buildQuery('off.example.test', T.A));
  clock.advance(61_000);
  up.on('off.example.test', { rcode: 2 });
  t.equal(rcodeOf(await udpExchange(off.port, buildQuery('off.example.test', T.A))), 2, 'serveStale.enabled: false: SERVFAIL');
  t.equal(off.running.stats.staleAnswers, 0);
});

t.test('serve-stale never bypasses policy: a name blocked after it was cached, or whose CNAME target was, is sinkholed', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  up.on('video.example.test', { answers: [{ name: 'video.example.test', type: T.A, address: '192.0.2.5', ttl: 60 }] });
  up.on('alias.example.test', {
    answers: [
      { name: 'alias.example.test', type: T.CNAME, domain: 'edge.cdn-later.test', ttl: 60 },
      { name: 'edge.cdn-later.test', type: T.A, address: '192.0.2.6', ttl: 60 },
    ],
  });
  const config = { ...staleConfig(up), blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] } };
  const h = await startSinkhole(t, up.port, config, { 'tiktok.txt': TIKTOK_LIST }, { clock });
  t.equal(addr(decode(await udpExchange(h.port, buildQuery('video.example.test', T.A)))), '192.0.2.5');
  t.equal(addr(decode(await udpExchange(h.port, buildQuery('alias.example.test', T.A)))), '192.0.2.6');
  clock.advance(61_000);
  up.on('*', { rcode: 2 });
  h.write('tiktok.txt', `${TIKTOK_LIST}video.example.test\ncdn-later.test\n`);
  t.same(await h.running.reloader.reload('list'), [], 'list reloaded');
  for (const name of ['video.example.test', 'alias.example.test']) {
    const r = await udpExchange(h.port, buildQuery(name, T.A));
    t.equal(rcodeOf(r), 3, `${name}: NXDOMAIN from the sinkhole, not the stale answer`);
    t.equal(decode(r).answers.length, 0, `${name}: no cached address leaks`);
  }
  t.equal(up.count('video.example.test'), 1, 'the blocked name never went upstream again');
});

t.test('a failed name is remembered for cache.servfailTtl: a retry storm is one upstream query; never a stale SERVFAIL', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  up.on('broken.example.test', { rcode: 2 });
  const h = await startSinkhole(t, up.port, staleConfig(up, {}, '600ms'), {}, { clock });
  for (let i = 0; i < 20; i++) t.equal(rcodeOf(await udpExchange(h.port, buildQuery('broken.example.test', T.A))), 2, `retry ${i}: SERVFAIL`);
  t.equal(up.count('broken.example.test'), 1, 'twenty client retries, one upstream query');
  t.equal(h.running.stats.servfailsRemembered, 19, 'counted');
  clock.advance(4_999);
  await udpExchange(h.port, buildQuery('broken.example.test', T.A));
  t.equal(up.count('broken.example.test'), 1, 'still remembered at 4.999 s');
  // After 5 s the upstream is silent. A remembered SERVFAIL must not turn into a "stale" answer:
  // the client waits for the real upstream timeout and gets SERVFAIL, without EDE 3.
  clock.advance(1);
  up.on('broken.example.test', { silent: true });
  const started = Date.now();
  const r = decode(await udpExchange(h.port, buildQuery('broken.example.test', T.A, { edns: 1232 })));
  t.equal(r.header.rcode, 2, 'SERVFAIL');
  t.ok(Date.now() - started >= 550, 'after the upstream timeout (600 ms), not the 200 ms stale timer');
  t.same(edeCodes(r), [], 'no "Stale Answer"');
  t.equal(up.count('broken.example.test'), 2, 'asked again after 5 s');
  t.equal(h.running.stats.staleAnswers, 0, 'nothing stale was served');

  const never = await startSinkhole(t, up.port, staleConfig(up, { servfailTtl: '0s' }), {}, { clock });
  up.on('flaky.example.test', { rcode: 2 });
  for (let i = 0; i < 3; i++) await udpExchange(never.port, buildQuery('flaky.example.test', T.A));
  t.equal(up.count('flaky.example.test'), 3, 'servfailTtl: 0s remembers nothing');
});

t.test('an upstream outage of an hour goes unnoticed for every name cached before it (serve-stale on)', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  const names = Array.from({ length: 10 }, (_, i) => `site${i}.example.test`);
  for (const [i, name] of names.entries()) up.on(name, { answers: [{ name, type: T.A, address: `192.0.2.${i + 1}`, ttl: 300 }] });
  // Defaults except short real timers: client timer 150 ms, upstream timeout 400 ms.
  const h = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], timeout: '400ms' }, cache: { serveStale: { clientTimeout: '150ms' } } }, {}, { clock });
  for (const name of names) await udpExchange(h.port, buildQuery(name, T.A));
  // The upstream goes silent (packets dropped) and stays so; its answers expire 5 min later.
  for (const name of names) up.on(name, { silent: true });
  clock.advance(301_000);
  let answered = 0;
  let slowest = 0;
  const outageMs = 3_600_000;
  const stepMs = 600_000;
  for (let elapsed = 0; elapsed <= outageMs; elapsed += stepMs) {
    const timeoutsBefore = outcomes(h, up).timeout;
    const started = Date.now();
    const replies = await Promise.all(names.map((n) => udpExchange(h.port, buildQuery(n, T.A)).then(decode)));
    slowest = Math.max(slowest, Date.now() - started);
    replies.forEach((d, i) => {
      if (d.header.rcode === 0 && addr(d) === `192.0.2.${i + 1}`) answered++;
    });
    // Each name was re-checked upstream (its last failure is > 30 s old): let those exchanges end before time moves on.
    await until(() => outcomes(h, up).timeout >= timeoutsBefore + names.length, 'the re-checks to time out');
    clock.advance(stepMs);
  }
  const asked = names.length * (outageMs / stepMs + 1);
  t.equal(answered, asked, `${asked} queries over ${outageMs / 60_000} min of outage: every one answered with the last known address`);
  t.ok(slowest < 1000, `each within the client timer plus a little (slowest batch ${slowest} ms), never the upstream timeout`);
  t.equal(h.running.stats.staleAnswers, asked);
  t.comment(`outage of ${outageMs / 60_000} min unnoticed: ${answered}/${asked} answered, slowest batch ${slowest} ms (client timer 150 ms)`);
});

t.test('prefetch: a hit in the last 10% of its TTL refreshes the entry once, in the background', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  up.on('popular.example.test', { answers: [{ name: 'popular.example.test', type: T.A, address: '192.0.2.1', ttl: 100 }] });
  const h = await startSinkhole(t, up.port, { cache: { prefetch: true } }, {}, { clock });
  const ask = async (): Promise<Decoded> => decode(await udpExchange(h.port, buildQuery('popular.example.test', T.A)));
  await ask();
  clock.advance(89_000);
  await ask();
  t.equal(h.running.stats.prefetches.started, 0, '11 s of 100 left: no prefetch');
  up.on('popular.example.test', { delayMs: 150, answers: [{ name: 'popular.example.test', type: T.A, address: '192.0.2.2', ttl: 100 }] });
  clock.advance(2_000);
  const due = await ask();
  t.equal(addr(due), '192.0.2.1', '9 s left: still answered from the cache at once');
  t.equal(h.running.stats.prefetches.started, 1, 'and one refresh started');
  await ask();
  await ask();
  t.equal(h.running.stats.prefetches.started, 1, 'more hits while it is in flight start no other');
  await until(() => outcomes(h, up).ok >= 2, 'the refresh');
  t.equal(up.count('popular.example.test'), 2, 'one upstream query for the refresh');
  clock.advance(20_000);
  const later = await ask();
  t.equal(addr(later), '192.0.2.2', 'past the first TTL the refreshed answer is a hit');
  t.equal(up.count('popular.example.test'), 2, 'the popular name never expired in front of a client');

  // A refresh that fails is not retried on every hit: the name waits out the 30 s recheck interval.
  up.on('popular.example.test', { rcode: 2 });
  clock.advance(70_000); // 9 s left of the refreshed entry's 100
  await ask();
  await until(() => outcomes(h, up).error >= 1, 'the failed refresh');
  for (let i = 0; i < 5; i++) t.equal(addr(await ask()), '192.0.2.2', `hit ${i + 1} after the failed refresh: still the cached answer`);
  t.equal(up.count('popular.example.test'), 3, 'one failed refresh, not one per hit');
  t.equal(h.running.stats.prefetches.started, 2);

  const off = await startSinkhole(t, up.port, { cache: { prefetch: false } }, {}, { clock });
  up.on('quiet.example.test', { answers: [{ name: 'quiet.example.test', type: T.A, address: '192.0.2.3', ttl: 100 }] });
  await udpExchange(off.port, buildQuery('quiet.example.test', T.A));
  clock.advance(95_000);
  await udpExchange(off.port, buildQuery('quiet.example.test', T.A));
  t.equal(off.running.stats.prefetches.started, 0, 'prefetch: false');
  t.equal(up.count('quiet.example.test'), 1);
});

t.test('prefetch: background work is capped at a tenth of upstreams.maxInflight; past it, skipped', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  const names = Array.from({ length: 5 }, (_, i) => `p${i}.example.test`);
  for (const name of names) up.on(name, { answers: [{ name, type: T.A, address: '192.0.2.1', ttl: 100 }] });
  const h = await startSinkhole(t, up.port, { upstreams: { servers: [`127.0.0.1:${up.port}`], maxInflight: 20 }, cache: { prefetch: true } }, {}, { clock });
  for (const name of names) await udpExchange(h.port, buildQuery(name, T.A));
  for (const name of names) up.on(name, { delayMs: 300, answers: [{ name, type: T.A, address: '192.0.2.2', ttl: 100 }] });
  clock.advance(95_000);
  for (const name of names) await udpExchange(h.port, buildQuery(name, T.A));
  t.same(h.running.stats.prefetches, { started: 2, skipped: 3 }, 'maxInflight 20: at most 2 refreshes in flight, the rest skipped');
  await until(() => outcomes(h, up).ok >= 7, 'the two refreshes');
  for (const name of names) await udpExchange(h.port, buildQuery(name, T.A));
  t.same(h.running.stats.prefetches, { started: 4, skipped: 4 }, 'the cap is on refreshes in flight: once two ended, two more of the skipped names started');
  await until(() => outcomes(h, up).ok >= 9, 'the last two refreshes');
});

t.test('the TTL cap applies on the way out, fresh or cached; a TTL with the top bit set is 0 (RFC 2181 §8)', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('huge.example.test', { answers: [{ name: 'huge.example.test', type: T.A, address: '192.0.2.1', ttl: 2147483647 }] });
  up.on('topbit.example.test', {
    raw: (q) => handReply(q, Buffer.concat([rr(ptr(12), T.A, 0x80000001, ipv4('192.0.2.2')), rr(ptr(12), T.A, 600, ipv4('192.0.2.3'))]), { an: 2 }),
  });
  const h = await startSinkhole(t, up.port, { cache: { maxTtl: '1h' } });
  for (const round of ['fresh', 'cached']) {
    const huge = decode(await udpExchange(h.port, buildQuery('huge.example.test', T.A)));
    t.equal(huge.answers[0]?.ttl, 3600, `${round}: TTL 2147483647 is capped at cache.maxTtl`);
    const top = decode(await udpExchange(h.port, buildQuery('topbit.example.test', T.A)));
    t.same(top.answers.map((a: { ttl: number }) => a.ttl), [0, 600], `${round}: TTL 0x80000001 is 0, the other record keeps its 600`);
  }
  t.equal(up.count('huge.example.test'), 1, 'the capped answer was cached');
});
