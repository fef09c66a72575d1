// The UDP upstream exchange after issue 22 (connected source ports, one timer for every deadline,
// pooled exchange records): what must not change, over real sockets on 127.0.0.1.
import t from 'tap';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole } from '../helpers/sinkhole.js';
import { buildQuery, decode, rcodeOf, udpExchange } from '../helpers/dns.js';
import { UdpUpstream } from '../../src/upstream/udp.js';
import { UpstreamError } from '../../src/upstream/exchange.js';
import { Later } from '../../src/later.js';

/** A hand-driven upstream: it hands each query to the test, which answers (or not) itself. */
async function manualUpstream(t: { teardown: (fn: () => void) => void }): Promise<{ sock: dgram.Socket; port: number; next: () => Promise<[Buffer, dgram.RemoteInfo]> }> {
  const sock = dgram.createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  t.teardown(() => sock.close());
  return { sock, port: sock.address().port, next: () => once(sock, 'message') as Promise<[Buffer, dgram.RemoteInfo]> };
}

/** A socket on another loopback port, to send forged replies from. */
async function spoofingSocket(t: { teardown: (fn: () => void) => void }): Promise<dgram.Socket> {
  const sock = dgram.createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  t.teardown(() => sock.close());
  return sock;
}

/** The query with the reply bit set and one A record: an answer of our own making, to send from wherever the test likes. */
function answerTo(query: Buffer, address: [number, number, number, number]): Buffer {
  const head = Buffer.from(query.subarray(0, query.length));
  head[2] = head[2]! | 0x80;
  head.writeUInt16BE(1, 6);
  const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, ...address]);
  return Buffer.concat([head, rr]);
}

t.test('RFC 5452 §9.1: a reply with the right ID and question from another port is dropped by the connected socket', async (t) => {
  const up = await manualUpstream(t);
  const spoofer = await spoofingSocket(t);
  const udp = new UdpUpstream({ ports: 4, maxUses: 100 });
  t.teardown(() => udp.close());
  const q = buildQuery('spoof.example.test', T.A);
  const reply = udp.exchange('127.0.0.1', up.port, q, q.length, 2000);
  const [sent, from] = await up.next();
  // The spoofer knows everything an on-path observer would: the ID, the question, the source port.
  spoofer.send(answerTo(sent, [203, 0, 113, 66]), from.port, '127.0.0.1');
  // The real answer only after the forged one was delivered (or dropped), so the forgery comes first.
  await new Promise<void>((r) => setImmediate(r));
  up.sock.send(answerTo(sent, [192, 0, 2, 1]), from.port, from.address);
  const got = await reply;
  t.same([...got.subarray(-4)], [192, 0, 2, 1], 'the real answer, not the forged one');
  t.equal(udp.inflight, 0, 'nothing left in flight');
});

/** Queries in flight until two have left from different source ports (with 64 sockets the second almost always does). */
async function onTwoSockets(
  udp: UdpUpstream,
  up: { port: number; next: () => Promise<[Buffer, dgram.RemoteInfo]> },
  label: string,
): Promise<{ reply: Promise<Buffer>; sent: Buffer; port: number }[]> {
  const queries: { reply: Promise<Buffer>; sent: Buffer; port: number }[] = [];
  while (queries.length < 2 || queries.every((q) => q.port === queries[0]!.port)) {
    const q = buildQuery(`${label}${queries.length}.example.test`, T.A);
    const reply = udp.exchange('127.0.0.1', up.port, q, q.length, 2000);
    reply.catch(() => undefined); // each test judges its replies; never an unhandled rejection meanwhile
    const [sent, from] = await up.next();
    queries.push({ reply, sent, port: from.port });
  }
  return queries;
}

t.test('the pool shares one table of IDs, but a reply counts only on the socket its query left from', async (t) => {
  const up = await manualUpstream(t);
  const udp = new UdpUpstream({ ports: 64, maxUses: 100 });
  t.teardown(() => udp.close());
  const queries = await onTwoSockets(udp, up, 'pair');
  const a = queries[0]!;
  const b = queries.find((q) => q.port !== a.port)!;
  t.not(a.sent.readUInt16BE(0), b.sent.readUInt16BE(0), 'IDs in flight to one upstream are distinct across its sockets');
  // From the upstream's own address and port, with a's ID and question, but to b's socket: the
  // kernel lets it in (the socket is connected to this very address), and the table knows the ID.
  up.sock.send(answerTo(a.sent, [203, 0, 113, 66]), b.port, '127.0.0.1');
  // Then b's own answer on the same socket: once b has it, the one before it was read and judged.
  up.sock.send(answerTo(b.sent, [192, 0, 2, 2]), b.port, '127.0.0.1');
  t.same([...(await b.reply).subarray(-4)], [192, 0, 2, 2], 'b gets the answer to its own ID');
  for (const q of queries) if (q !== b) up.sock.send(answerTo(q.sent, [192, 0, 2, 1]), q.port, '127.0.0.1');
  t.same([...(await a.reply).subarray(-4)], [192, 0, 2, 1], "a's ID on b's socket was dropped: a gets the answer sent to its own socket");
  await Promise.all(queries.map((q) => q.reply));
  t.equal(udp.inflight, 0, 'nothing left in flight');
});

t.test('a spoofed reply alone never settles the exchange: it times out', async (t) => {
  const up = await manualUpstream(t);
  const spoofer = await spoofingSocket(t);
  const udp = new UdpUpstream({ ports: 1, maxUses: 100 });
  t.teardown(() => udp.close());
  const q = buildQuery('alone.example.test', T.A);
  const reply = udp.exchange('127.0.0.1', up.port, q, q.length, 300);
  const [sent, from] = await up.next();
  spoofer.send(answerTo(sent, [203, 0, 113, 66]), from.port, '127.0.0.1');
  await t.rejects(reply, { name: 'UpstreamError', outcome: 'timeout' });
  t.equal(udp.inflight, 0);
});

t.test('one timer for every deadline: exchanges time out in deadline order, whatever order they were sent in', async (t) => {
  const up = await manualUpstream(t);
  const udp = new UdpUpstream({ ports: 8, maxUses: 100 });
  t.teardown(() => udp.close());
  const order: number[] = [];
  const started = Date.now();
  // Sent with the longest timeout first: each shorter one must re-arm the one timer earlier.
  const timeouts = [400, 250, 100, 300];
  const all = timeouts.map((ms, i) => {
    const q = buildQuery(`t${i}.example.test`, T.A);
    return udp.exchange('127.0.0.1', up.port, q, q.length, ms).then(
      () => t.fail('answered'),
      (e: unknown) => {
        t.ok(e instanceof UpstreamError && e.outcome === 'timeout', `t${i}: a timeout`);
        t.ok(Date.now() - started >= ms - 5, `t${i}: not before its ${ms} ms`);
        order.push(ms);
      },
    );
  });
  t.equal(udp.inflight, 4);
  await Promise.all(all);
  t.same(order, [100, 250, 300, 400], 'in deadline order');
  t.equal(udp.inflight, 0, 'none left behind');
  // Answered exchanges leave nothing armed either: one answered after the others timed out.
  const q = buildQuery('late.example.test', T.A);
  const reply = udp.exchange('127.0.0.1', up.port, q, q.length, 1000);
  const [sent, from] = await up.next();
  up.sock.send(answerTo(sent, [192, 0, 2, 2]), from.port, from.address);
  t.same([...(await reply).subarray(-4)], [192, 0, 2, 2]);
  t.equal(udp.inflight, 0);
});

t.test('an idle list leaves its timer armed but unref\'d: it holds the process open only while something is in flight, and a later exchange still times out on time', async (t) => {
  const up = await manualUpstream(t);
  const udp = new UdpUpstream({ ports: 1, maxUses: 100 });
  t.teardown(() => udp.close());
  // Ref'd timers are what keep the event loop (and so the process) alive.
  const refdTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const before = refdTimers();
  const q1 = buildQuery('first.example.test', T.A);
  const first = udp.exchange('127.0.0.1', up.port, q1, q1.length, 100);
  t.equal(refdTimers(), before + 1, 'in flight: the deadline timer holds the process open');
  const [sent, from] = await up.next();
  up.sock.send(answerTo(sent, [192, 0, 2, 1]), from.port, from.address);
  await first;
  t.equal(udp.inflight, 0);
  t.equal(refdTimers(), before, 'idle: the timer left armed no longer holds the process open');
  // Its timer is still armed for the first deadline, earlier than this one's: it must fire, then re-arm.
  const started = performance.now();
  const q2 = buildQuery('second.example.test', T.A);
  const second = udp.exchange('127.0.0.1', up.port, q2, q2.length, 300);
  t.equal(refdTimers(), before + 1, 'in flight again: held again');
  await t.rejects(second, { name: 'UpstreamError', outcome: 'timeout' });
  t.ok(performance.now() - started >= 295, 'not before its own 300 ms');
  t.equal(udp.inflight, 0);
  t.equal(refdTimers(), before, 'nothing armed holds the process open after the timeout');

  // One at a time, as at a moderate rate: the list empties between queries, and no query arms a timer of its own.
  const realSetTimeout = globalThis.setTimeout;
  let armed = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    armed++;
    return realSetTimeout(...args);
  }) as typeof setTimeout;
  try {
    for (let i = 0; i < 20; i++) {
      const q = buildQuery(`one${i}.example.test`, T.A);
      const reply = udp.exchange('127.0.0.1', up.port, q, q.length, 2000);
      const [sent, from] = await up.next();
      up.sock.send(answerTo(sent, [192, 0, 2, 3]), from.port, from.address);
      await reply;
    }
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  t.equal(armed, 1, '20 exchanges one after another armed the deadline timer once');
});

t.test('records are reused: many exchanges in a row each get their own reply', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const udp = new UdpUpstream({ ports: 2, maxUses: 3 });
  t.teardown(() => udp.close());
  for (let round = 0; round < 3; round++) {
    const names = Array.from({ length: 20 }, (_, i) => `r${round}-${i}.example.test`);
    const replies = await Promise.all(
      names.map((n) => {
        const q = buildQuery(n, T.A);
        return udp.exchange('127.0.0.1', up.port, q, q.length, 2000);
      }),
    );
    t.same(
      replies.map((r) => decode(r).questions[0]?.name),
      names,
      `round ${round}: each exchange got the reply to its own question`,
    );
  }
  t.equal(udp.inflight, 0);
  t.ok(udp.openSockets <= 2, 'sockets retired after 3 queries each are not left open');
});

t.test('a timed-out upstream still fails over to the next one (failover)', async (t) => {
  const dead = await FakeUpstream.start();
  t.teardown(() => dead.close());
  dead.on('*', { silent: true });
  const live = await FakeUpstream.start();
  t.teardown(() => live.close());
  const h = await startSinkhole(t, dead.port, {
    upstreams: { servers: [`127.0.0.1:${dead.port}`, `127.0.0.1:${live.port}`], strategy: 'failover', timeout: '600ms' },
  });
  const started = Date.now();
  const r = await udpExchange(h.port, buildQuery('failover.example.test', T.A));
  t.equal(rcodeOf(r), 0, 'answered by the second upstream');
  t.ok(Date.now() - started >= 250, 'after the first one timed out');
  t.equal(dead.count('failover.example.test'), 1);
  t.equal(live.count('failover.example.test'), 1);
  const stats = h.running.stats.upstreams.get(`127.0.0.1:${dead.port}`)!;
  t.equal(stats.outcomes.timeout, 1, 'counted as a timeout of the first');
});

/** The sockets UdpUpstream makes from now until the test ends, to reach one from outside. */
function socketsMade(t: { teardown: (fn: () => void) => void }): dgram.Socket[] {
  const made: dgram.Socket[] = [];
  const create = dgram.createSocket;
  dgram.createSocket = ((...args: Parameters<typeof dgram.createSocket>) => {
    const s = create(...args);
    made.push(s);
    return s;
  }) as typeof dgram.createSocket;
  t.teardown(() => void (dgram.createSocket = create));
  return made;
}

t.test('a socket error ends that socket only: its slot gets a new socket, and its queries fail as errors, never as an unhandled rejection', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const made = socketsMade(t);
  const udp = new UdpUpstream({ ports: 1, maxUses: 1000 });
  t.teardown(() => udp.close());
  const ask = (name: string): Promise<Buffer> => {
    const q = buildQuery(name, T.A);
    return udp.exchange('127.0.0.1', up.port, q, q.length, 1000);
  };
  t.equal(decode(await ask('first.example.test')).questions[0]?.name, 'first.example.test');
  t.equal(made.length, 1, 'one socket so far');
  made[0]!.emit('error', Object.assign(new Error('EIO: the socket broke'), { code: 'EIO' }));
  // The one slot still held the broken socket: the next query must get a new one, not a send on a closed socket.
  t.equal(decode(await ask('second.example.test')).questions[0]?.name, 'second.example.test', 'the next query is answered');
  t.equal(made.length, 2, 'through a new socket');
});

t.test("a socket error fails that socket's queries only: a query in flight on another socket of the pool still gets its reply", async (t) => {
  const up = await manualUpstream(t);
  const made = socketsMade(t);
  const udp = new UdpUpstream({ ports: 64, maxUses: 100 });
  t.teardown(() => udp.close());
  const queries = await onTwoSockets(udp, up, 'err');
  const broken = queries[0]!;
  const brokenSocket = made.find((s) => s.address().port === broken.port)!;
  brokenSocket.emit('error', Object.assign(new Error('EIO: the socket broke'), { code: 'EIO' }));
  for (const q of queries) {
    if (q.port === broken.port) {
      const e = await q.reply.then(() => undefined, (err: unknown) => err);
      t.ok(e instanceof UpstreamError && e.outcome === 'error', 'a query on the broken socket fails as an error');
    }
    else {
      up.sock.send(answerTo(q.sent, [192, 0, 2, 1]), q.port, '127.0.0.1');
      t.same([...(await q.reply).subarray(-4)], [192, 0, 2, 1], 'a query on another socket is answered');
    }
  }
  t.equal(udp.inflight, 0, 'nothing left in flight');
});

t.test('an ICMP error reported on a connected socket names no query: the query in flight still gets its reply', async (t) => {
  const up = await manualUpstream(t);
  const made = socketsMade(t);
  const udp = new UdpUpstream({ ports: 1, maxUses: 1000 });
  t.teardown(() => udp.close());
  const q = buildQuery('icmp.example.test', T.A);
  const asked = up.next();
  const reply = udp.exchange('127.0.0.1', up.port, q, q.length, 2000);
  const [sent, from] = await asked;
  // What a forged (or stale) ICMP host-unreachable for this 4-tuple looks like to a connected socket.
  made[0]!.emit('error', Object.assign(new Error('connect EHOSTUNREACH'), { code: 'EHOSTUNREACH' }));
  up.sock.send(answerTo(sent, [192, 0, 2, 7]), from.port, from.address);
  t.equal(decode(await reply).questions[0]?.name, 'icmp.example.test', 'answered, not failed by the ICMP error');
});

t.test('a stale ICMP error handed to the next send does not fail that query: it is sent again', async (t) => {
  // A port nobody listens on: each datagram draws an ICMP port unreachable, which a connected socket
  // reports to its next receive or its next send.
  const probe = dgram.createSocket('udp4');
  probe.bind(0, '127.0.0.1');
  await once(probe, 'listening');
  const closedPort = probe.address().port;
  probe.close();
  const udp = new UdpUpstream({ ports: 1, maxUses: 1000 });
  t.teardown(() => udp.close());
  const outcomes = await Promise.all(
    ['a', 'b', 'c', 'd'].map((n) => {
      const q = buildQuery(`${n}.closed.example.test`, T.A);
      return udp.exchange('127.0.0.1', closedPort, q, q.length, 300).then(
        () => 'answered',
        (e: UpstreamError) => e.outcome ?? String(e),
      );
    }),
  );
  // Each query is judged by its own reply or its own timeout, as on an unconnected socket; none fails at
  // once because of the ICMP error an earlier query drew.
  t.same(outcomes, ['timeout', 'timeout', 'timeout', 'timeout']);
});

// src/later.ts: the promise that settles synchronously, which carries a miss from the upstream's reply
// to the client's (issue 22). Every chain below runs twice, once on Promises and once on Laters, and
// must end the same way; then what differs on purpose (it runs reactions at once) is checked too.
t.test('Later settles every chain as a Promise would, but at once', async (t) => {
  interface Kit {
    name: string;
    /** A value and the functions that settle it. */
    make<T>(): { p: Promise<T>; resolve: (v: T | PromiseLike<T>) => void; reject: (e: unknown) => void };
  }
  const kits: Kit[] = [
    {
      name: 'Promise',
      make<T>() {
        let resolve!: (v: T | PromiseLike<T>) => void;
        let reject!: (e: unknown) => void;
        const p = new Promise<T>((a, b) => ((resolve = a), (reject = b)));
        return { p, resolve, reject };
      },
    },
    {
      name: 'Later',
      make<T>() {
        const p = new Later<T>();
        return { p, resolve: (v: T | PromiseLike<T>) => p.resolve(v), reject: (e: unknown) => p.reject(e) };
      },
    },
  ];
  /** Each chain settles its value one way and reads it another; it returns what it saw, in order. */
  const chains: Record<string, (k: Kit) => Promise<unknown[]>> = {
    'three reactions in a row': async (k) => {
      const { p, resolve } = k.make<number>();
      const out = p.then((v) => v + 1).then((v) => v * 10).then((v) => [v]);
      resolve(1);
      return await out;
    },
    'a reaction that throws skips the fulfilments to the next onRejected, then goes on': async (k) => {
      const { p, resolve } = k.make<number>();
      const seen: unknown[] = [];
      const out = p
        .then((): number => {
          throw new Error('boom');
        })
        .then((v) => seen.push(['skipped', v]))
        .catch((e: unknown) => (seen.push((e as Error).message), 7))
        .then((v) => seen.push(v));
      resolve(1);
      await out;
      return seen;
    },
    'a rejection passes a then without onRejected': async (k) => {
      const { p, reject } = k.make<number>();
      const out = p.then((v) => v + 1).then(undefined, (e: unknown) => `caught ${String(e)}`);
      reject('no');
      return [await out];
    },
    'a reaction returning a Promise or a Later is waited for': async (k) => {
      const { p, resolve } = k.make<number>();
      const inner = k.make<string>();
      const laterInner = new Later<string>();
      const out = p.then(() => inner.p).then((v) => laterInner.then(() => `${v}+later`));
      resolve(0);
      inner.resolve('inner');
      laterInner.resolve('x');
      return [await out];
    },
    'resolving with a Promise adopts it, rejected too': async (k) => {
      const a = k.make<number>();
      const b = k.make<number>();
      a.resolve(Promise.resolve(5));
      b.resolve(Promise.reject(new Error('adopted')) as Promise<number>);
      return [await a.p, await b.p.then(undefined, (e: unknown) => (e as Error).message)];
    },
    'two readers of one value each get it, and one reader failing leaves the other alone': async (k) => {
      const { p, resolve } = k.make<number>();
      const one = p.then((v): number => {
        throw new Error(`one ${v}`);
      });
      const two = p.then((v) => `two ${v}`);
      resolve(3);
      return [await one.then(undefined, (e: unknown) => (e as Error).message), await two];
    },
    'finally runs on either side and passes the value or the failure through': async (k) => {
      const ok = k.make<number>();
      const bad = k.make<number>();
      const seen: string[] = [];
      const a = ok.p.finally(() => seen.push('ok'));
      const b = bad.p.finally(() => seen.push('bad')).then(undefined, (e: unknown) => `still ${String(e)}`);
      ok.resolve(1);
      bad.reject('failed');
      return [await a, await b, seen.sort()];
    },
    'settling twice keeps the first': async (k) => {
      const { p, resolve, reject } = k.make<number>();
      resolve(1);
      resolve(2);
      reject('late');
      return [await p];
    },
    'a reader added after it settled still gets the value': async (k) => {
      const { p, resolve } = k.make<number>();
      resolve(9);
      await p;
      return [await p.then((v) => v * 2), await Promise.all([p, p])];
    },
  };
  for (const [what, chain] of Object.entries(chains)) {
    const [viaPromise, viaLater] = await Promise.all(kits.map((k) => chain(k)));
    t.same(viaLater, viaPromise, `${what}: ${JSON.stringify(viaPromise)}`);
  }

  // What differs, on purpose: a reaction runs in the call that settles the Later, not in a later microtask.
  const l = new Later<number>();
  const seen: number[] = [];
  l.then((v) => seen.push(v)).then(() => seen.push(2));
  l.resolve(1);
  t.same(seen, [1, 2], 'the whole chain ran inside resolve()');
  const from = Later.of(Promise.resolve('from a promise'));
  t.equal(await from, 'from a promise', 'Later.of a promise settles as it does');
  t.equal(Object.prototype.toString.call(l), '[object Later]');
});
