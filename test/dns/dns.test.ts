// src/dns/: the wire format on its own. framing.ts (TCP length prefixes, in linear time), ede.ts
// (Extended DNS Errors on an upstream reply), names with a dot inside a label (message.ts, as the
// cache key and the policy see them), and tsig.ts (RFC 8945).
import t from 'tap';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole } from '../helpers/sinkhole.js';
import { buildQuery, decode, encodeName, handReply, ipv4, optOf, ptr, rcodeOf, rr, TcpClient, udpExchange } from '../helpers/dns.js';
import { scanReply } from '../../src/dns/message.js';
import { FrameReader } from '../../src/dns/framing.js';
import { decodeQuery } from '../../src/dns/query.js';
import { withEde } from '../../src/dns/ede.js';
import { sign, splitTsig, TSIG_ERROR, verify, type TsigKey } from '../../src/dns/tsig.js';

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

t.test('scanReply: the TTL of every record but OPT, the answer\'s targets, and no trust in the section counts', (t) => {
  const q = buildQuery('www.example.test', T.A);
  const soa = Buffer.concat([encodeName('ns.example.test'), encodeName('h.example.test'), Buffer.alloc(16), Buffer.from([0, 0, 0, 30])]);
  const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]); // root owner, OPT, 1232, no options
  const plain = scanReply(handReply(q, Buffer.concat([rr(ptr(12), T.A, 300, ipv4('192.0.2.1')), rr(ptr(12), 6, 600, soa), opt]), { an: 1, ns: 1, ar: 1 }))!;
  t.same(plain.ttls, [300, 600], 'two TTLs: OPT\'s flags are not one');
  t.equal(plain.ttlOffsets.length, 2);
  t.equal(plain.minAnswerTtl, 300);
  t.equal(plain.negativeTtl, 30, 'min(SOA TTL, SOA MINIMUM)');
  t.ok(plain.opt > 0, 'OPT found');
  t.same(plain.targets, [], 'no targets');
  const named = scanReply(handReply(q, Buffer.concat([rr(ptr(12), T.CNAME, 60, encodeName('edge.example.test')), rr(encodeName('edge.example.test'), T.A, 20, ipv4('192.0.2.2'))]), { an: 2 }))!;
  t.same(named.targets, ['edge.example.test'], 'a CNAME\'s target');
  t.same(named.ttls, [60, 20]);
  t.same(plain.targets, [], 'and the shared empty list stayed empty');
  // A short reply whose header claims 3 x 65,535 records: malformed, and it must not cost megabytes to say so.
  const liar = handReply(q, rr(ptr(12), T.A, 300, ipv4('192.0.2.1')), { an: 65535, ns: 65535, ar: 65535 });
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 50; i++) t.equal(scanReply(liar), undefined);
  t.ok(process.memoryUsage().heapUsed - before < 8 << 20, 'fifty of them took well under 8 MB of heap (sized by the counts: ~150 MB)');
  t.end();
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

const ZONE = 'tiktok.rpz.sinkhole';

t.test('TSIG (RFC 8945): sign and verify, the errors of §5.2, and the MAC chain of a multi-message reply', async (t) => {
  const key: TsigKey = { name: 'xfr-key', algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) };
  const query = buildQuery(ZONE, 252);
  const now = 1_800_000_000;
  const signed = sign(query, key, { now });
  const split = splitTsig(signed.wire);
  if (!split || split === 'malformed') throw new Error('no TSIG found');
  t.same(split.unsigned, query, 'the message before signing is recovered exactly (ID, ARCOUNT)');
  t.equal(split.tsig.keyName, 'xfr-key');
  t.match(verify(split, [key], { now }), { ok: true });
  t.match(verify(split, [{ ...key, secret: Buffer.alloc(32, 2) }], { now }), { ok: false, error: TSIG_ERROR.BADSIG });
  t.match(verify(split, [{ ...key, name: 'other' }], { now }), { ok: false, error: TSIG_ERROR.BADKEY });
  t.match(verify(split, [key], { now: now + 301 }), { ok: false, error: TSIG_ERROR.BADTIME }, 'outside the 300 s fudge');
  const tampered = Buffer.from(signed.wire);
  tampered[2] = tampered[2]! ^ 0x01;
  const tsplit = splitTsig(tampered);
  t.match(tsplit !== 'malformed' && tsplit && verify(tsplit, [key], { now }), { ok: false, error: TSIG_ERROR.BADSIG }, 'a flipped header bit');
  // A reply over the request's MAC, then a second message over the first one's (§5.3.1).
  const first = sign(Buffer.from(query), key, { now, requestMac: signed.mac });
  const second = sign(Buffer.from(query), key, { now, priorMac: first.mac });
  const s1 = splitTsig(first.wire);
  const s2 = splitTsig(second.wire);
  if (!s1 || s1 === 'malformed' || !s2 || s2 === 'malformed') throw new Error('no TSIG found');
  t.match(verify(s1, [key], { now, requestMac: signed.mac }), { ok: true });
  t.match(verify(s2, [key], { now, priorMac: first.mac }), { ok: true });
  t.match(verify(s2, [key], { now, requestMac: signed.mac }), { ok: false }, 'a later message is not signed like a first one');
});
