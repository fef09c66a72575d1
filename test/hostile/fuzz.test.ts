// A seeded mutation fuzzer against `sinkhole serve` (a child process):
// random bytes, bit flips, truncations, lying label lengths, compression
// pointer loops, huge counts, several OPT records, odd option lengths, odd
// headers, over UDP and TCP, while a probe keeps asking for a blocked and an
// allowed name. Afterwards: no internal error, the process alive, RSS
// bounded, and every reply that came back decodes (dns2, a decoder nobody
// here wrote). Replay a failure with the seed it printed.
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { Packet } from 'dns2';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { buildQuery, encodeName } from '../helpers/dns.js';
import { Probe, Random, seed, startChild } from './harness.js';

const UDP_PACKETS = Number(process.env.FUZZ_UDP ?? 170_000);
const TCP_FRAMES = Number(process.env.FUZZ_TCP ?? 40_000);
/** Packets per 10 ms: about what the server answers on one core while the probe still gets through. */
const UDP_PER_TICK = 200;

const NAMES = ['www.example.test', 'a.example.test', 'www.tiktok.com', 'x.tiktokv.com', 'version.bind', 'b.c.d.example.test'];

function seedQuery(r: Random): Buffer {
  const name = r.pick(NAMES);
  const type = r.pick([T.A, T.AAAA, T.HTTPS, T.TXT, 255, 41, 0, 252, r.int(65536)]);
  const q = buildQuery(name, type, { id: r.int(65536), edns: r.next() < 0.5 ? 1232 : undefined, dnssecOk: r.next() < 0.2 });
  if (r.next() < 0.1) q.writeUInt16BE(r.pick([3, 255, 4, 0]), 12 + encodeName(name).length + 2); // CH, ANY, HS, 0
  return q;
}

function optRecord(r: Random, options: Buffer): Buffer {
  const b = Buffer.alloc(11);
  b.writeUInt16BE(41, 1);
  b.writeUInt16BE(r.pick([0, 512, 1232, 4096, 65535]), 3);
  b[5] = r.next() < 0.1 ? r.int(256) : 0;
  b[6] = r.next() < 0.1 ? r.int(256) : 0;
  b.writeUInt16BE(options.length, 9);
  return Buffer.concat([b, options]);
}

/** One mutated message; which mutation is picked by the seeded source. */
function mutate(r: Random): Buffer {
  const q = seedQuery(r);
  switch (r.int(10)) {
    case 0:
      return r.bytes(r.int(600));
    case 1: {
      for (let i = 1 + r.int(8); i > 0; i--) {
        const at = r.int(q.length);
        q[at] = q[at]! ^ (1 << r.int(8));
      }
      return q;
    }
    case 2:
      return q.subarray(0, r.int(q.length));
    case 3: {
      // A label length that lies about what follows.
      q[12 + r.int(Math.max(1, q.length - 16))] = r.int(256);
      return q;
    }
    case 4: {
      // Compression pointers: to itself, in a loop, or forwards, in the question or an extra record.
      const loop = Buffer.from([0xc0, 12]);
      const header = Buffer.from(q.subarray(0, 12));
      const variants = [
        Buffer.concat([header, loop, Buffer.from([0, 1, 0, 1])]),
        Buffer.concat([header, Buffer.from([1, 0x61, 0xc0, 12, 0, 1, 0, 1])]),
        Buffer.concat([header, Buffer.from([0xc0, 0x20, 0, 1, 0, 1])]),
        Buffer.concat([q, Buffer.from([0xc0, q.length & 0xff, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0])]),
      ];
      const out = r.pick(variants);
      out.writeUInt16BE(1 + r.int(2), 10);
      return out;
    }
    case 5: {
      // Huge counts.
      for (const at of [4, 6, 8, 10]) if (r.next() < 0.5) q.writeUInt16BE(r.pick([0xffff, 0x8000, 2, 0]), at);
      return q;
    }
    case 6: {
      // Several OPT records.
      const n = 2 + r.int(4);
      q.writeUInt16BE(n, 10);
      // (Names here hold no zero byte, so the first one after the header ends the question name.)
      return Buffer.concat([q.subarray(0, q.indexOf(0, 12) + 5), ...Array.from({ length: n }, () => optRecord(r, Buffer.alloc(0)))]);
    }
    case 7: {
      // Options whose lengths do not add up.
      const opts = Buffer.concat(Array.from({ length: 1 + r.int(3) }, () => {
        const o = Buffer.alloc(4 + r.int(12));
        o.writeUInt16BE(r.pick([8, 10, 12, 15, r.int(65536)]), 0);
        o.writeUInt16BE(r.next() < 0.7 ? r.int(64) : o.length - 4, 2);
        return o;
      }));
      const base = q.subarray(0, q.indexOf(0, 12) + 5);
      base.writeUInt16BE(1, 10);
      return Buffer.concat([base, optRecord(r, opts)]);
    }
    case 8: {
      // Odd headers: any opcode, QR, TC, Z, AD, CD.
      q[2] = r.int(256);
      q[3] = r.int(256);
      return q;
    }
    default:
      return q; // a well-formed query, of any type and class
  }
}

t.test('fuzz: 200k+ mutated packets over UDP and TCP', async (t) => {
  const rnd = new Random(seed(t, 'fuzz'));
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const child = await startChild(
    t,
    {
      upstreams: { servers: [`127.0.0.1:${up.port}`], timeout: '1s' },
      listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0', tcpIdleTimeout: '2s' },
      blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
      chaos: 'sinkhole',
    },
    { 'tiktok.txt': 'tiktok.com\ntiktokv.com\n' },
  );
  const rssBefore = child.rss();
  const blockedProbe = new Probe(child.port, (id) => buildQuery('www.tiktok.com', T.A, { id }), 20);
  const allowedProbe = new Probe(child.port, (id) => buildQuery('probe.example.test', T.A, { id }), 20);
  await Promise.all([blockedProbe.start(), allowedProbe.start()]);

  // Replies to the fuzzer are read and decoded by dns2; one it cannot decode is a malformed reply.
  let replies = 0;
  const undecodable: string[] = [];
  const check = (msg: Buffer): void => {
    replies++;
    if (replies % 4 !== 0) return; // a sample keeps the fuzzer fast
    try {
      Packet.parse(msg);
    } catch (e) {
      if (undecodable.length < 5) undecodable.push(`${msg.toString('hex')}: ${(e as Error).message}`);
    }
  };

  const started = Date.now();
  const socks = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const s = dgram.createSocket('udp4');
      s.on('message', check);
      s.bind(0, '127.0.0.1');
      await once(s, 'listening');
      return s;
    }),
  );
  t.teardown(() => socks.forEach((s) => s.close()));
  const udp = (async () => {
    let sent = 0;
    while (sent < UDP_PACKETS) {
      for (let i = 0; i < UDP_PER_TICK && sent < UDP_PACKETS; i++, sent++) socks[i & 3]!.send(mutate(rnd), child.port, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 10));
    }
    return sent;
  })();

  // TCP: 8 lanes of connections, each carrying 200 frames (mostly honest length prefixes around
  // mutated messages, some that lie), then closing; a connection the server closed is replaced.
  const tcpRnd = new Random(rnd.int(2 ** 32));
  let framesSent = 0;
  const lane = async (): Promise<void> => {
    while (framesSent < TCP_FRAMES) {
      const sock = net.connect(child.port, '127.0.0.1');
      sock.on('error', () => {});
      let buf = Buffer.alloc(0);
      sock.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          check(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
      });
      const closed = once(sock, 'close');
      await Promise.race([once(sock, 'connect'), closed]);
      const frames: Buffer[] = [];
      for (let i = 0; i < 200 && framesSent < TCP_FRAMES; i++, framesSent++) {
        const m = mutate(tcpRnd);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(tcpRnd.next() < 0.03 ? tcpRnd.int(65536) : m.length);
        frames.push(len, m);
      }
      if (!sock.destroyed) sock.end(Buffer.concat(frames));
      // The server answers what it can, then closes: a lying prefix leaves it waiting for the idle timeout.
      await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
      sock.destroy();
    }
  };
  const [udpSent] = await Promise.all([udp, Promise.all(Array.from({ length: 8 }, lane))]);
  const seconds = (Date.now() - started) / 1000;
  await Promise.all([blockedProbe.stop(), allowedProbe.stop()]);

  const internal = await child.metric('sinkhole_internal_errors_total');
  const rssAfter = child.rss();
  t.comment(
    `fuzz: ${udpSent} UDP packets + ${framesSent} TCP frames = ${udpSent + framesSent} in ${seconds.toFixed(1)} s; ` +
      `${replies} replies (a quarter decoded by dns2, ${undecodable.length} undecodable); ` +
      `RSS ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB; internal errors ${internal}`,
  );
  t.comment(`probe, blocked name: ${blockedProbe.summary()}`);
  t.comment(`probe, allowed name: ${allowedProbe.summary()}`);
  t.ok(udpSent + framesSent >= 200_000 || process.env.FUZZ_UDP !== undefined, 'at least 200k packets sent');
  t.ok(child.alive(), 'sinkhole is alive');
  t.equal(internal, 0, 'sinkhole_internal_errors_total is 0');
  t.same(undecodable, [], 'every reply decodes');
  t.ok(rssAfter < 256 * 2 ** 20, `RSS stays bounded (${(rssAfter / 2 ** 20).toFixed(0)} MiB < 256 MiB)`);
  const rcodes = (p: Probe): number[] => [...new Set(p.answers.map((a) => a[3]! & 15))];
  t.same(rcodes(blockedProbe), [3], 'every answer to the blocked probe was the sinkhole NXDOMAIN');
  t.same(rcodes(allowedProbe), [0], 'every answer to the allowed probe was NOERROR');
  t.ok(allowedProbe.answers.every((a) => Packet.parse(a).answers[0]?.address === '192.0.2.10'), 'with the upstream\'s address');
  const lost = blockedProbe.lost + allowedProbe.lost;
  const asked = blockedProbe.latencies.length + allowedProbe.latencies.length;
  t.ok(lost <= asked * 0.01, `the probes kept getting answers (${lost} of ${asked} lost)`);
});
