// src/transport/: the UDP and TCP listeners (udp.ts, tcp.ts, tcpSlots.ts, bind.ts): truncation,
// pipelining, idle timeouts, connection caps and abuse, IPv6 and dual stack, and binding both on one
// port. Over real sockets on 127.0.0.1. (DoT and DoH listeners: encrypted.test.ts.)
import t from 'tap';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { normalizeAddress } from '../../src/net/cidr.js';
import { startSinkhole } from '../helpers/sinkhole.js';
import { buildQuery, decode, exchange, optOf, rcodeOf, TcpClient, udpExchange } from '../helpers/dns.js';
import { TcpListener } from '../../src/transport/tcp.js';
import { UdpListener } from '../../src/transport/udp.js';
import { errorReply } from '../../src/dns/reply.js';
import { silentLogger } from '../../src/log.js';
import type { Query } from '../../src/dns/query.js';
import type { Outcome } from '../../src/pipeline/types.js';
import { bindPair } from '../../src/transport/bind.js';

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
