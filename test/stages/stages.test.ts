// src/stages/: what the pipeline's stages answer themselves or refuse, before anything is forwarded.
//   validate.ts     FORMERR/NOTIMP/BADVERS, meta-types, malformed EDNS, error-reply flags, clients.allowFrom
//   localAnswers.ts ANY (anyAnswer.ts, RFC 8482), CHAOS (chaos.ts), DDR (ddr.ts, RFC 9462)
//   relay.ts        EDNS Client Subnet and the MAC option, believed from trusted relays only
// Each was a defect found by a hostile-input run (issue 8), a listener feature (issue 12) or identity
// (issue 11); all over real sockets on 127.0.0.1.
import t from 'tap';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { FakeClock, startSinkhole, TIKTOK_LIST } from '../helpers/sinkhole.js';
import { buildQuery, decode, ednsOptions, exchange, optOf, rcodeOf, udpExchange, encodeName, questionEnd } from '../helpers/dns.js';
import { decodeQuery } from '../../src/dns/query.js';
import { makePki } from '../helpers/pki.js';
import { encryptedConfig, encryptedFiles } from '../helpers/encrypted.js';
import { dohGet as get, h2connect, h2request } from '../helpers/doh.js';
import { IDENTITY_CONFIG as CONFIG, KEA_HEADER, MAC1, askTiktok as ask } from '../helpers/identity.js';

const PROTOS = ['udp', 'tcp'] as const;

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

const pki = makePki();
t.teardown(() => pki.close());

const FILES = encryptedFiles(pki);
const config = encryptedConfig;


/** SVCB records of a reply, decoded here by hand (RFC 9460 §2.2) as an independent check. */
function svcb(reply: Buffer): { priority: number; target: string; params: Map<number, Buffer> }[] {
  const d = decode(reply);
  const name = (buf: Buffer, off: number): [string, number] => {
    const labels: string[] = [];
    while (buf[off] !== 0) {
      labels.push(buf.toString('ascii', off + 1, off + 1 + buf[off]!));
      off += buf[off]! + 1;
    }
    return [labels.join('.'), off + 1];
  };
  let off = 12;
  off = name(reply, off)[1] + 4;
  const out: { priority: number; target: string; params: Map<number, Buffer> }[] = [];
  for (let i = 0; i < d.header.ancount; i++) {
    off += reply[off]! >= 0xc0 ? 2 : name(reply, off)[1] - off;
    const type = reply.readUInt16BE(off);
    const rdlen = reply.readUInt16BE(off + 8);
    const rdata = off + 10;
    if (type === 64) {
      const [target, p0] = name(reply, rdata + 2);
      const params = new Map<number, Buffer>();
      for (let p = p0; p < rdata + rdlen; p += 4 + reply.readUInt16BE(p + 2)) params.set(reply.readUInt16BE(p), reply.subarray(p + 4, p + 4 + reply.readUInt16BE(p + 2)));
      out.push({ priority: reply.readUInt16BE(rdata), target, params });
    }
    off = rdata + rdlen;
  }
  return out;
}

t.test('DDR: _dns.resolver.arpa SVCB names the DoT and DoH endpoints, and resolver.arpa is never forwarded', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, config(), FILES);
  const reply = await udpExchange(h.port, buildQuery('_DNS.Resolver.ARPA', T.SVCB));
  t.equal(rcodeOf(reply), 0);
  const recs = svcb(reply);
  t.equal(recs.length, 2, 'one record per protocol');
  const [dot, doh] = recs;
  t.same([dot!.priority, dot!.target, dot!.params.get(1)?.toString('latin1')], [1, 'dns.test', '\x03dot'], 'DoT first: alpn=dot, TargetName = the certificate name');
  t.equal(dot!.params.get(3)?.readUInt16BE(0), h.running.dot[0]!.port, 'port of the DoT listener');
  t.same([...(dot!.params.get(4) ?? [])], [127, 0, 0, 1], 'ipv4hint: its address');
  t.same([doh!.priority, doh!.params.get(1)?.toString('latin1')], [2, '\x02h2'], 'then DoH: alpn=h2');
  t.equal(doh!.params.get(3)?.readUInt16BE(0), h.running.doh[0]!.port, 'port of the DoH listener');
  t.equal(doh!.params.get(7)?.toString(), '/dns-query{?dns}', 'dohpath (RFC 9461)');
  t.equal(decode(reply).answers[0]?.ttl, 300);

  const s = await h2connect(h, pki.caPem);
  t.teardown(() => s.close());
  const viaDoh = await h2request(s, get(buildQuery('_dns.resolver.arpa', T.SVCB, { id: 0 })));
  t.equal(svcb(viaDoh.body).length, 2, 'the same over DoH');

  const cases: [string, number, number][] = [['_dns.resolver.arpa', T.A, 0], ['resolver.arpa', T.SOA, 0], ['other.resolver.arpa', T.A, 3]];
  for (const [name, type, rcode] of cases) {
    const r = await udpExchange(h.port, buildQuery(name, type));
    t.same([rcodeOf(r), decode(r).header.ancount], [rcode, 0], `${name} ${type}: ${rcode ? 'NXDOMAIN' : 'NODATA'}`);
  }
  t.equal(up.count(), 0, 'nothing under resolver.arpa went upstream');
  await udpExchange(h.port, buildQuery('notresolver.arpa', T.A));
  t.equal(up.count('notresolver.arpa'), 1, 'a name that only ends in the same letters is forwarded');
  t.equal(h.running.stats.responseCount('local', 0) + h.running.stats.responseCount('local', 3), 5, 'counted as result="local"');

  const plain = await startSinkhole(t, up.port, {});
  const none = await udpExchange(plain.port, buildQuery('_dns.resolver.arpa', T.SVCB));
  t.same([rcodeOf(none), decode(none).header.ancount], [0, 0], 'without DoT/DoH: NODATA, no designation');
});

const NOW = Date.UTC(2026, 10, 28, 12, 0, 0);


/** A query with an OPT carrying these options (code, data). */
function withOptions(name: string, options: [number, Buffer][]): Buffer {
  const base = buildQuery(name, T.A);
  base.writeUInt16BE(1, 10);
  const body = ednsOptions(options);
  const opt = Buffer.alloc(11);
  opt.writeUInt16BE(41, 1);
  opt.writeUInt16BE(1232, 3);
  opt.writeUInt16BE(body.length, 9);
  return Buffer.concat([base, opt, body]);
}
const ecs = (ip: string, prefix = 32): [number, Buffer] => [8, Buffer.from([0, 1, prefix, 0, ...ip.split('.').map(Number).slice(0, Math.ceil(prefix / 8))])];
const macOpt = (mac: string): [number, Buffer] => [65001, Buffer.from(mac.split(':').map((x) => parseInt(x, 16)))];
const cookie: [number, Buffer] = [10, Buffer.from('0123456789abcdef', 'hex')];

/** The EDNS option codes in a query's OPT, as the upstream received it. */
function optionCodes(raw: Buffer): number[] {
  const q = decodeQuery(raw, '127.0.0.1', 'udp', 0)!;
  if (q.optRdata < 0) return [];
  const out: number[] = [];
  const end = q.optRdata + raw.readUInt16BE(q.optRdata - 2);
  for (let off = q.optRdata; off + 4 <= end; off += 4 + raw.readUInt16BE(off + 2)) out.push(raw.readUInt16BE(off));
  return out;
}

t.test('EDNS Client Subnet and the MAC option: believed from trusted relays, ignored and stripped from anyone else', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const clock = new FakeClock(NOW);
  const config = CONFIG({
    clients: { allowFrom: ['127.0.0.0/16'], trustedRelays: ['127.0.0.2/32'] },
    exceptions: [
      { id: 'EX-MAC', clients: [`mac:${MAC1}`], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
      { id: 'EX-IP', clients: ['127.0.0.21'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
    ],
  });
  const h = await startSinkhole(t, up.port, config, { 'tiktok.txt': TIKTOK_LIST, 'leases.csv': KEA_HEADER }, { clock });
  for (const proto of ['udp', 'tcp'] as const) {
    t.equal(await ask(h, '127.0.0.2', proto, withOptions('www.tiktok.com', [macOpt(MAC1)])), 0, `${proto}: a trusted relay's MAC option names the device`);
    t.equal(await ask(h, '127.0.0.3', proto, withOptions('www.tiktok.com', [macOpt(MAC1)])), 3, `${proto}: anyone else claiming that MAC is blocked`);
    t.equal(await ask(h, '127.0.0.2', proto, withOptions('www.tiktok.com', [ecs('127.0.0.21')])), 0, `${proto}: a trusted relay's ECS /32 is the client`);
    t.equal(await ask(h, '127.0.0.3', proto, withOptions('www.tiktok.com', [ecs('127.0.0.21')])), 3, `${proto}: an untrusted ECS is ignored`);
    t.equal(await ask(h, '127.0.0.2', proto, withOptions('www.tiktok.com', [ecs('127.0.0.0', 24)])), 3, `${proto}: a subnet names no device`);
  }
  // What reaches the upstream: sinkhole's own OPT, none of the client's options (issue 23 item 1).
  for (const [from, name] of [['127.0.0.2', 'trusted.example.test'], ['127.0.0.3', 'untrusted.example.test']] as const) {
    t.equal(await ask(h, from, 'udp', withOptions(name, [cookie, ecs('127.0.0.21'), macOpt(MAC1)])), 0);
    const seen = up.seen.find((s) => s.name === name)!;
    t.same(optionCodes(seen.raw), [], `${from}: ECS and MAC never forwarded, nor the client's cookie`);
  }
  // The report and the logs record the device the relay named, not the relay.
  t.equal(await ask(h, '127.0.0.2', 'udp', withOptions('www.tiktok.com', [ecs('127.0.0.55'), macOpt('02:00:00:00:00:09')])), 3);
  const rows = (await h.running.report.snapshot()).clients;
  t.match(rows.find((r) => r.mac === '02:00:00:00:00:09'), { client: '127.0.0.55', blocked: 1 }, 'a relayed device has its own row');
  t.notOk(rows.some((r) => r.client === '127.0.0.3' && r.mac !== null), 'an untrusted MAC claim is not recorded as that device');
  const m = await h.running.registry.metrics();
  t.match(m, /sinkhole_identity_options_total\{source="trusted"\} 8/);
  t.match(m, /sinkhole_identity_options_total\{source="untrusted"\} 5/);
  const q = withOptions('x.example.test', [cookie, macOpt(MAC1)]);
  t.equal(decodeQuery(q, '127.0.0.1', 'udp', 0)!.identityOptions, true);
  t.equal(decodeQuery(buildQuery('x.example.test', T.A, { edns: 1232 }), '127.0.0.1', 'udp', 0)!.identityOptions, false, 'plain EDNS: nothing to do');
});
