// Availability (issue 9): serve-stale (RFC 8767), remembered SERVFAILs
// (RFC 2308 §7.1), prefetch, and per-client rate limits. Cache time runs on a
// FakeClock; only the client response timer and upstream timeouts are real,
// and kept short.
import t from 'tap';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { FakeClock, startSinkhole, TIKTOK_LIST, type Harness } from './helpers/sinkhole.js';
import { buildQuery, decode, exchange, optOf, rcodeOf, udpExchange, type Decoded } from './helpers/dns.js';
import { RateLimiter } from '../src/ratelimit/limiter.js';
import { withEde } from '../src/dns/ede.js';
import { decodeQuery } from '../src/dns/query.js';

/** Resolves once `cond` holds, checking as events land; fails the wait after `ms`. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 2));
  }
}

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

t.test('EDE on an upstream reply: appended to its OPT only where that is safe', async (t) => {
  const q = decodeQuery(buildQuery('x.example.test', T.A, { edns: 1232 }), '127.0.0.1', 'udp', 0)!;
  const plain = decodeQuery(buildQuery('x.example.test', T.A), '127.0.0.1', 'udp', 0)!;
  const reply = Buffer.from(buildQuery('x.example.test', T.A, { edns: 1232 }));
  reply[2] = 0x81;
  const out = withEde(q, reply, { infoCode: 3, text: 'stale' });
  const opt = optOf(decode(out)) as { rdata?: { infoCode?: number; extraText?: string }[] };
  t.equal(opt.rdata?.[0]?.infoCode, 3, 'the option is in the existing OPT');
  t.equal(opt.rdata?.[0]?.extraText, 'stale');
  t.equal(out.readUInt16BE(10), 1, 'still one additional record');
  t.equal(withEde(plain, reply, { infoCode: 3, text: '' }), reply, 'no EDNS from the client: unchanged');
  t.equal(withEde(q, reply.subarray(0, 20), { infoCode: 3, text: '' }).length, 20, 'a reply that cannot be walked: unchanged');
  // An OPT that is not the last record: left alone rather than move the records after it.
  const twoAdditional = Buffer.concat([reply, Buffer.from([0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 1])]);
  twoAdditional.writeUInt16BE(2, 10);
  t.equal(withEde(q, twoAdditional, { infoCode: 3, text: '' }), twoAdditional, 'OPT not last: unchanged');
});

const LIMITED = { clients: { allowFrom: ['127.0.0.0/8'], groups: { servers: ['127.0.0.9'] }, rateLimit: { qps: 5, burst: 10, action: 'truncate', exempt: ['servers'], slip: 1 } } };

t.test('rate limit: over its bucket a client gets TC over UDP and REFUSED over TCP; others are served; tokens come back', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  const h = await startSinkhole(t, up.port, { ...LIMITED, listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' } }, {}, { clock });
  const from = (client: string, proto: 'udp' | 'tcp' = 'udp'): Promise<Decoded> => exchange(proto, h.port, buildQuery('www.example.test', T.A, { id: 77 }), client).then(decode);
  for (let i = 0; i < 10; i++) t.equal(addr(await from('127.0.0.2')), '192.0.2.10', `query ${i + 1} of the burst answered`);
  const over = await from('127.0.0.2');
  t.equal(over.header.tc, 1, 'the 11th: TC set, so a real client retries over TCP');
  t.equal(over.header.rcode, 0, 'NOERROR');
  t.equal(over.answers.length, 0, 'empty: a spoofed source gets nothing bigger than its query');
  t.equal(over.header.id, 77, 'its own ID');
  t.equal((await from('127.0.0.2', 'tcp')).header.rcode, 5, 'over TCP there is nothing to truncate: REFUSED');
  t.equal(addr(await from('127.0.0.3')), '192.0.2.10', 'another client is unaffected');
  for (let i = 0; i < 15; i++) t.equal(addr(await from('127.0.0.9')), '192.0.2.10', `exempt group, query ${i + 1}`);
  clock.advance(1_000);
  for (let i = 0; i < 5; i++) t.equal(addr(await from('127.0.0.2')), '192.0.2.10', `1 s later, query ${i + 1} of 5 qps answered`);
  t.equal((await from('127.0.0.2')).header.tc, 1, 'and the 6th is over again');
  t.same(await h.running.reloader.reload('config'), [], 'a reload that leaves the limit as it was');
  t.equal((await from('127.0.0.2')).header.tc, 1, 'keeps the buckets: still over');
  t.same(h.running.stats.rateLimited, { truncate: 3, refuse: 1, drop: 0, dryrun: 0 });
  t.equal(up.count('www.example.test'), 1, 'limited queries cost no upstream work');
  const metrics = await (await fetch(`http://127.0.0.1:${h.running.http!.port}/metrics`)).text();
  t.match(metrics, /sinkhole_ratelimited_total\{action="truncate"\} 3/);
  t.match(metrics, /sinkhole_ratelimit_buckets 3\n/, 'one bucket per client seen: .2, .3, .9');
  t.match(metrics, /sinkhole_responses_total\{result="ratelimited",rcode="REFUSED"\} 1/);
  const report = (await (await fetch(`http://127.0.0.1:${h.running.http!.port}/api/blocked-clients`)).json()) as { clients: { client: string; rateLimited: number }[] };
  t.same(report.clients.map((c) => [c.client, c.rateLimited]), [['127.0.0.2', 4]], 'the compliance report lists the limited client');
});

t.test('rate limit: refuse, dry run, off when absent, and the CLI report column', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  const refuse = await startSinkhole(t, up.port, { clients: { ...LIMITED.clients, rateLimit: { qps: 1, burst: 2, action: 'refuse', slip: 1 } } }, {}, { clock });
  const codes: number[] = [];
  for (let i = 0; i < 3; i++) codes.push(rcodeOf(await udpExchange(refuse.port, buildQuery('www.example.test', T.A), 4000, '127.0.0.2')));
  t.same(codes, [0, 0, 5], 'action refuse: REFUSED past the burst');

  const dry = await startSinkhole(
    t, up.port,
    { listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' }, clients: { ...LIMITED.clients, rateLimit: { qps: 1, burst: 2, dryRun: true } } },
    {}, { clock },
  );
  for (let i = 0; i < 5; i++) t.equal(rcodeOf(await udpExchange(dry.port, buildQuery('www.example.test', T.A), 4000, '127.0.0.4')), 0, `dry run: query ${i + 1} answered`);
  t.same(dry.running.stats.rateLimited, { truncate: 0, refuse: 0, drop: 0, dryrun: 3 }, 'dry run: counted, not acted on');
  const { execFile } = await import('node:child_process');
  const cli = await new Promise<string>((resolve) =>
    execFile(process.execPath, [new URL('../dist/cli.js', import.meta.url).pathname, 'report', '--url', `http://127.0.0.1:${dry.running.http!.port}`], (_e, out) => resolve(out)),
  );
  t.match(cli, /CLIENT\s+MAC\s+HOSTNAME\s+BLOCKED\s+RATE LIMITED\s+FIRST SEEN/, 'sinkhole report shows the column');
  t.match(cli, /\n127\.0\.0\.4\s+-\s+-\s+0\s+3\s/, 'with the client and its count');

  const none = await startSinkhole(t, up.port, {}, {}, { clock });
  for (let i = 0; i < 30; i++) await udpExchange(none.port, buildQuery('www.example.test', T.A));
  t.same(none.running.stats.rateLimited, { truncate: 0, refuse: 0, drop: 0, dryrun: 0 }, 'no clients.rateLimit: no limit');
});

t.test('rate limit: slip — over UDP one over-limit query in `slip` gets its reply, the others none; TCP is always answered', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock();
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-slip-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'queries.jsonl');
  const h = await startSinkhole(
    t, up.port,
    {
      listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
      clients: { ...LIMITED.clients, rateLimit: { qps: 1, burst: 2 } }, // slip absent: 2, as BIND's RRL
      log: { queries: 'all', file: logFile },
    },
    {}, { clock },
  );
  const sock = dgram.createSocket('udp4');
  t.teardown(() => sock.close());
  await new Promise<void>((r) => sock.bind(0, '127.0.0.2', r));
  const replies: Decoded[] = [];
  sock.on('message', (m) => replies.push(decode(m)));
  const replyTo = (id: number): Promise<Decoded> =>
    until(() => replies.some((d) => d.header.id === id), `the reply to ${id}`).then(() => replies.find((d) => d.header.id === id)!);
  const send = (id: number): void => sock.send(buildQuery('www.example.test', T.A, { id }), h.port, '127.0.0.1');
  const limited = (): number => h.running.stats.rateLimited.drop + h.running.stats.rateLimited.truncate;

  send(1);
  send(2);
  await replyTo(2);
  for (let id = 11; id <= 16; id++) send(id);
  await until(() => limited() === 6, 'six over-limit queries');
  // Replies from one socket to one socket arrive in order on loopback: once the reply to 99 (a
  // query within the refilled bucket) is here, every reply to 11..16 that was sent is here too.
  clock.advance(10_000);
  send(99);
  t.equal(addr(await replyTo(99)), '192.0.2.10', 'within the bucket again: answered');
  const over = replies.filter((d) => d.header.id >= 11 && d.header.id <= 16);
  t.same(over.map((d) => d.header.id), [12, 14, 16], 'slip 2: every second over-limit query gets a reply');
  t.ok(over.every((d) => d.header.tc === 1 && d.answers.length === 0), 'and that reply is the empty TC one');
  t.same(h.running.stats.rateLimited, { truncate: 3, refuse: 0, drop: 3, dryrun: 0 });
  const metrics = await (await fetch(`http://127.0.0.1:${h.running.http!.port}/metrics`)).text();
  t.match(metrics, /sinkhole_ratelimited_total\{action="drop"\} 3/, 'drops are counted');
  t.match(metrics, /sinkhole_responses_total\{result="ratelimited",rcode="NOERROR"\} 3\n/, 'only the replies sent count as responses');
  await until(() => existsSync(logFile) && readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"ratelimited"')).length === 6, 'six log lines');
  const logged = readFileSync(logFile, 'utf8').split('\n').filter((l) => l.includes('"ratelimited"')).map((l) => (JSON.parse(l) as { rcode: string }).rcode);
  t.same(logged, ['none', 'NOERROR', 'none', 'NOERROR', 'none', 'NOERROR'], 'the query log says which got no reply');

  for (let id = 21; id <= 24; id++) send(id); // 21 takes the token left after 99; 22-24 are over
  await until(() => limited() === 9, 'three more over the limit');
  const tcp = await exchange('tcp', h.port, buildQuery('www.example.test', T.A, { id: 30 }), '127.0.0.2').then(decode);
  t.equal(tcp.header.rcode, 5, 'over TCP, never dropped: REFUSED');

  const none = await startSinkhole(t, up.port, { clients: { ...LIMITED.clients, rateLimit: { qps: 1, burst: 1, slip: 0 } } }, {}, { clock });
  for (let id = 40; id <= 43; id++) sock.send(buildQuery('www.example.test', T.A, { id }), none.port, '127.0.0.1');
  t.equal(addr(await replyTo(40)), '192.0.2.10', 'slip 0: the bucket is still answered');
  await until(() => none.running.stats.rateLimited.drop + none.running.stats.rateLimited.truncate === 3, 'three over-limit queries');
  t.same(none.running.stats.rateLimited, { truncate: 0, refuse: 0, drop: 3, dryrun: 0 }, 'slip 0: no over-limit query gets a reply (as Unbound drops)');
});

t.test('rate limit: client keys by prefix, and memory bounded by evicting the least recently seen', async (t) => {
  const settings = { qps: 1, burst: 1, action: 'truncate' as const, exempt: [], dryRun: false, ipv4Prefix: 24, ipv6Prefix: 56, slip: 2 };
  const l = new RateLimiter(settings, 100);
  t.equal(l.keyOf('10.1.2.3'), l.keyOf('10.1.2.200'), 'IPv4 /24: one key');
  t.not(l.keyOf('10.1.2.3'), l.keyOf('10.1.3.3'), 'another /24: another key');
  t.equal(l.keyOf('2001:db8:0:1200::1'), l.keyOf('2001:db8:0:12ff:ffff::2'), 'IPv6 /56: one key');
  t.not(l.keyOf('2001:db8:0:1200::1'), l.keyOf('2001:db8:0:1300::1'), 'another /56: another key');
  t.equal(new RateLimiter({ ...settings, ipv4Prefix: 32 }).keyOf('10.1.2.3'), '10.1.2.3', 'IPv4 /32: the address itself, no allocation');
  t.equal(l.take('10.9.9.9', 0), undefined, 'first query: allowed');
  t.ok(l.take('10.9.9.9', 0), 'second in the same instant: over');
  for (let i = 0; i < 1000; i++) {
    l.take(`10.${(i >> 8) & 255}.${i & 255}.1`, 1);
    if (i % 50 === 0) l.take('10.9.9.9', 1); // the flooder stays recently seen
  }
  t.ok(l.size <= 100, `at most 100 buckets kept (${l.size})`);
  t.ok(l.take('10.9.9.9', 1), 'a recently seen flooder keeps its empty bucket: eviction is no way out');
  t.equal(l.take('10.9.9.9', 1_001), undefined, 'a second later it has a token again');
  t.ok(l.take('10.9.9.9', 500), 'a clock that steps back refills nothing');
});
