// Defects found by a hostile-input run (issue 8), each with the test that
// reproduced it: local answers for ANY and CHAOS, header flags on error
// replies, meta-types, malformed EDNS, metric labels, and replies from a
// lying or broken upstream (compression tricks, broken records, huge TTLs).
import t from 'tap';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST } from './helpers/sinkhole.js';
import { buildQuery, decode, encodeName, exchange, handReply, ptr, questionEnd, rcodeOf, rr, udpExchange } from './helpers/dns.js';

const PROTOS = ['udp', 'tcp'] as const;
const BLOCKING = { blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] } };
const HINFO = 13;
const ANY = 255;
const CLASS_CH = 3;

/** The same query in another class. */
function inClass(msg: Buffer, klass: number): Buffer {
  const out = Buffer.from(msg);
  out.writeUInt16BE(klass, questionEnd(out) - 2);
  return out;
}

/** Answer-section records as [type, class, ttl, rdata] straight from the wire (dns2 does not know HINFO). */
function answersOf(reply: Buffer): { type: number; klass: number; ttl: number; rdata: Buffer }[] {
  const out = [];
  let off = questionEnd(reply);
  for (let i = 0; i < reply.readUInt16BE(6); i++) {
    while (reply[off]! !== 0 && (reply[off]! & 0xc0) !== 0xc0) off += reply[off]! + 1;
    off += reply[off]! === 0 ? 1 : 2;
    const rdlen = reply.readUInt16BE(off + 8);
    out.push({ type: reply.readUInt16BE(off), klass: reply.readUInt16BE(off + 2), ttl: reply.readUInt32BE(off + 4), rdata: reply.subarray(off + 10, off + 10 + rdlen) });
    off += 10 + rdlen;
  }
  return out;
}

async function metricsText(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

t.test('ANY is answered locally with HINFO "RFC8482" (RFC 8482), never forwarded; a blocked name is still sinkholed', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, BLOCKING, { 'tiktok.txt': TIKTOK_LIST });
  for (const proto of PROTOS) {
    const r = await exchange(proto, h.port, buildQuery('www.example.test', ANY, { id: 77, edns: 1232 }));
    t.equal(rcodeOf(r), 0, `${proto}: NOERROR`);
    t.equal(r.readUInt16BE(0), 77, `${proto}: ID echoed`);
    const [hinfo, ...rest] = answersOf(r);
    t.same(rest, [], `${proto}: one record`);
    t.equal(hinfo?.type, HINFO, `${proto}: an HINFO record`);
    t.equal(hinfo?.klass, 1, `${proto}: class IN`);
    t.same(hinfo?.rdata, Buffer.from('\x07RFC8482\x00', 'latin1'), `${proto}: CPU "RFC8482", OS ""`);
    t.equal(decode(r).header.ra, 1, `${proto}: RA set`);
    const blocked = await exchange(proto, h.port, buildQuery('www.tiktok.com', ANY));
    t.equal(rcodeOf(blocked), 3, `${proto}: ANY for a blocked name gets the sinkhole NXDOMAIN`);
  }
  t.equal(up.count(), 0, 'no ANY query was forwarded');
  t.equal(h.running.stats.responseCount('local', 0), 2, 'counted as result="local"');
  t.equal(h.running.stats.blockedByList.get('tiktok'), 2, 'and the blocked ones as blocked');
});

t.test('CHAOS class is answered locally: REFUSED by default, or the configured string; never forwarded', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const refused = await startSinkhole(t, up.port);
  const named = await startSinkhole(t, up.port, { chaos: 'sinkhole' });
  for (const proto of PROTOS) {
    for (const name of ['version.bind', 'hostname.bind', 'id.server', 'version.server', 'authors.bind']) {
      const q = inClass(buildQuery(name, T.TXT), CLASS_CH);
      t.equal(rcodeOf(await exchange(proto, refused.port, q)), 5, `${proto} ${name} CH TXT: REFUSED by default`);
    }
    const r = await exchange(proto, named.port, inClass(buildQuery('version.bind', T.TXT), CLASS_CH));
    t.equal(rcodeOf(r), 0, `${proto}: version.bind with chaos: sinkhole → NOERROR`);
    const [txt] = answersOf(r);
    t.equal(txt?.type, T.TXT, `${proto}: a TXT record`);
    t.equal(txt?.klass, CLASS_CH, `${proto}: in class CH`);
    t.same(txt?.rdata, Buffer.from('\x08sinkhole', 'latin1'), `${proto}: the configured string`);
    t.equal(rcodeOf(await exchange(proto, named.port, inClass(buildQuery('whatever.example', T.TXT), CLASS_CH))), 5, `${proto}: other CH names: REFUSED`);
    t.equal(rcodeOf(await exchange(proto, named.port, inClass(buildQuery('version.bind', T.A), CLASS_CH))), 5, `${proto}: CH A: REFUSED`);
  }
  t.equal(up.count(), 0, 'nothing in class CH was forwarded');
});

t.test('error replies to NOTIMP and unparsable queries carry QR, opcode and rcode only (RFC 1035 §4.1.1, RFC 6895)', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port);
  const withFlags = (msg: Buffer): Buffer => {
    const out = Buffer.from(msg);
    out[2] = out[2]! | 0x01; // RD
    out[3] = 0x70; // Z, AD, CD
    return out;
  };
  const status = withFlags(buildQuery('a.example.test', T.A, { opcode: 2 }));
  const update = withFlags(buildQuery('a.example.test', T.A, { opcode: 5 }));
  const cut = withFlags(buildQuery('cut.example.test', T.A).subarray(0, 20));
  const two = withFlags(buildQuery('a.example.test', T.A));
  two.writeUInt16BE(2, 4);
  for (const proto of PROTOS) {
    for (const [what, msg, opcode, rcode] of [
      ['opcode STATUS', status, 2, 4],
      ['opcode UPDATE', update, 5, 4],
      ['question cut short', cut, 0, 1],
      ['two questions', two, 0, 1],
    ] as const) {
      const r = await exchange(proto, h.port, msg);
      t.equal(r[2], 0x80 | (opcode << 3), `${proto} ${what}: byte 2 is QR + opcode ${opcode}, nothing else (no AA, TC, RD)`);
      t.equal(r[3], rcode, `${proto} ${what}: byte 3 is the rcode ${rcode}, nothing else (no RA, Z, AD, CD)`);
    }
  }
});

t.test('meta-types in the question: OPT and type 0 are FORMERR, 128-254 NOTIMP, AXFR/IXFR REFUSED; none forwarded', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port);
  const cases = [
    [41, 1, 'OPT'],
    [0, 1, 'type 0'],
    [128, 4, '128'],
    [249, 4, 'TKEY'],
    [250, 4, 'TSIG'],
    [251, 5, 'IXFR'],
    [252, 5, 'AXFR'],
    [253, 4, 'MAILB'],
    [254, 4, 'MAILA'],
  ] as const;
  for (const proto of PROTOS) {
    for (const [qtype, rcode, what] of cases) {
      t.equal(rcodeOf(await exchange(proto, h.port, buildQuery('meta.example.test', qtype))), rcode, `${proto}: qtype ${what} → rcode ${rcode}`);
    }
    t.equal(rcodeOf(await exchange(proto, h.port, buildQuery('meta.example.test', 127))), 0, `${proto}: 127 is a data type: forwarded`);
  }
  t.equal(up.count(), 2, 'only the data type went upstream');
});

t.test('malformed EDNS is FORMERR (RFC 6891 §6.1.2), never forwarded', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port);
  /** A query whose OPT RDATA is `rdata` (and whose owner is `owner`). */
  const withOpt = (rdata: Buffer, owner: Buffer = Buffer.from([0])): Buffer => {
    const q = buildQuery('edns.example.test', T.A);
    q.writeUInt16BE(1, 10);
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(41, 0);
    fixed.writeUInt16BE(1232, 2);
    fixed.writeUInt16BE(rdata.length, 8);
    return Buffer.concat([q, owner, fixed, rdata]);
  };
  const option = (code: number, data: Buffer, len = data.length): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(code, 0);
    b.writeUInt16BE(len, 2);
    return Buffer.concat([b, data]);
  };
  const cases = [
    ['an option whose length runs past the OPT RDATA', withOpt(option(10, Buffer.alloc(8), 40))],
    ['an option header cut short', withOpt(Buffer.from([0, 10, 0]))],
    ['a second option running past the end', withOpt(Buffer.concat([option(10, Buffer.alloc(8)), option(12, Buffer.alloc(2), 9)]))],
    ['an OPT whose owner is not the root', withOpt(Buffer.alloc(0), encodeName('x'))],
  ] as const;
  for (const proto of PROTOS) {
    for (const [what, msg] of cases) t.equal(rcodeOf(await exchange(proto, h.port, msg)), 1, `${proto}: ${what} → FORMERR`);
    const good = withOpt(Buffer.concat([option(10, Buffer.alloc(8)), option(12, Buffer.alloc(3))]));
    t.equal(rcodeOf(await exchange(proto, h.port, good)), 0, `${proto}: well-formed options (cookie, padding) are fine`);
  }
  // An OPT in the answer section of a query (RFC 6891 §6.1.1: additional section only).
  const misplaced = withOpt(Buffer.alloc(0));
  misplaced.writeUInt16BE(1, 6);
  misplaced.writeUInt16BE(0, 10);
  t.equal(rcodeOf(await udpExchange(h.port, misplaced)), 1, 'OPT outside the additional section → FORMERR');
  t.equal(up.count(), 1, 'only the well-formed query went upstream (asked twice, the second from the cache)');
});

t.test('metrics: BADVERS is labelled BADVERS, and only (result, rcode) pairs that can happen are exported', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, { listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' } });
  const v1 = buildQuery('v1.example.test', T.A, { edns: 1232 });
  v1[v1.length - 5] = 1; // EDNS version 1
  await udpExchange(h.port, v1);
  const text = await metricsText(h.running.http!.port);
  t.match(text, /sinkhole_responses_total\{result="badvers",rcode="BADVERS"\} 1\n/, 'a BADVERS series with the query in it');
  t.notMatch(text, /result="formerr",rcode="NOERROR"/, 'not mislabelled as formerr/NOERROR');
  const pairs = [...text.matchAll(/sinkhole_responses_total\{result="([a-z]+)",rcode="([A-Z]+)"\}/g)].map((m) => `${m[1]}/${m[2]}`);
  const possible = new Set([
    'blocked/NXDOMAIN', 'excepted/NOERROR', 'excepted/NXDOMAIN', 'cached/NOERROR', 'cached/NXDOMAIN', 'forwarded/NOERROR',
    'forwarded/NXDOMAIN', 'local/NOERROR', 'refused/REFUSED', 'formerr/FORMERR', 'notimp/NOTIMP', 'badvers/BADVERS', 'servfail/SERVFAIL',
    'stale/NOERROR', 'stale/NXDOMAIN',
  ]);
  t.same(pairs.filter((p) => !possible.has(p)), [], 'no impossible pair such as servfail/NOERROR');
  t.ok(pairs.includes('servfail/SERVFAIL') && pairs.includes('blocked/NXDOMAIN'), 'the possible ones are there before they happen');
  t.notOk(pairs.some((p) => p.startsWith('ratelimited/')), 'no rate-limit series without clients.rateLimit');
});

const NULL_TYPE = 10;

/** Bytes of an A record's RDATA. */
function ipv4(addr: string): Buffer {
  return Buffer.from(addr.split('.').map(Number));
}

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
