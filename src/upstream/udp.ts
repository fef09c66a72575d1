// UDP exchange with an upstream, hardened as RFC 5452 asks: every query gets
// a fresh random ID and a source port chosen at random, and a reply is
// accepted only from the address and port queried, with our ID and our
// question. Anything else is dropped and the real reply (or the timeout) is
// awaited.
//
// Source ports come from a pool per upstream (upstreams.sourcePorts, default
// 1024 sockets, each bound by the kernel to a random ephemeral port). Each
// query picks a socket at random with the CSPRNG, and a socket carries at
// most upstreams.sourcePortReuse queries before it is closed and its slot is
// refilled with a socket on a new random port. An off-path spoofer must then
// guess the 16-bit ID and which of the 1024 ports is in use: 26 bits, against
// ~31 for a fresh port per query (RFC 5452 §9.2, §10). `sourcePortReuse: 1`
// keeps that strict form: a new socket for every query. Opening a socket per
// query cost ~17 µs, most of a cache miss (bench/RESULTS.md).
//
// Each socket is connected to its upstream (connect(2)), so the kernel itself
// drops a datagram from any other address or port (RFC 5452 §9.1's source
// check, done before a spoofed packet costs us a wakeup), and a send skips
// the per-datagram address parse and route lookup. The pool is therefore one
// per upstream address: a spoofer aiming at one upstream's answers still has
// the same 1024 ports to guess. The JS check of the source stays, for a
// runtime without connectSync (then the sockets stay unconnected).
//
// Per exchange there is one Later (later.ts: a promise that settles at once)
// and no closure or timer (issue 22): the exchange is a pooled record whose
// send callback was made once, and one timer (deadlines.ts) serves every
// deadline in flight.
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { isOurReply, sendError, UpstreamError } from './exchange.js';
import { Deadlines, type Expiring } from './deadlines.js';
import { idHash, randomId, randomIndex } from './random.js';
import { literalLookup } from '../net/lookup.js';
import { StableTable } from '../stableTable.js';
import { Later } from '../later.js';

type Family = 'udp4' | 'udp6';

const NO_BYTES = Buffer.alloc(0);
/** Sends of one query after stale ICMP errors failed them (sent()). */
const MAX_RESENDS = 3;
/** Records kept for reuse; past this (a burst of timeouts) the extra ones are left to the GC. */
const MAX_SPARE_RECORDS = 4096;

/** One query in flight. Pooled: reused once it has settled and its send callback has come. */
class Exchange implements Expiring {
  deadline = 0;
  slot = -1;
  id = 0;
  source: SourcePort | undefined;
  sent: Buffer = NO_BYTES;
  qend = 0;
  timeoutMs = 0;
  settled = true;
  /** Its send callback has not come yet: until it has, the record is not reused (the callback names it). */
  sending = false;
  /** Sends again after a stale ICMP error failed a send (see sent()). */
  resends = 0;
  /** What the query's caller waits on: settled in settle(), which then runs the caller's reactions (later.ts). */
  reply: Later<Buffer> | undefined;
  /** Made once per record, not once per query. */
  readonly onSent = (e: Error | null): void => this.owner.sent(this, e);

  constructor(private readonly owner: UdpUpstream) {}

  expire(): void {
    const s = this.source!;
    this.owner.settle(this, new UpstreamError('timeout', `no reply from ${s.pool.host}:${s.pool.port} in ${this.timeoutMs}ms`));
  }
}

/** The errors a connected UDP socket reports for an ICMP message about an earlier datagram (Linux). Not EPERM:
 * that is the local firewall refusing the send, a failure of our own that must fail the query at once. */
const ICMP_ERRORS: ReadonlySet<string> = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EACCES', 'ENOPROTOOPT', 'EPROTO']);

/**
 * Each open socket's IDs have a range of their own in its pool's table of exchanges: `base + id`.
 * A closed socket's range is given to the next new one (all its exchanges have left the table), so
 * the keys stay small integers that V8 keeps unboxed while fewer than 32,768 sockets are open.
 */
const freeBases: number[] = [];
let basesMade = 0;

/** One socket on a kernel-chosen random ephemeral port, connected to one upstream, carrying at most `maxUses` queries. */
class SourcePort {
  readonly sock: dgram.Socket;
  /** Its exchanges in flight (they are in the pool's table of IDs). */
  inflight = 0;
  /** This socket's IDs in the pool's table: `base + id`. Its own, so its IDs are never used up by others'. */
  readonly base = freeBases.pop() ?? basesMade++ * 65536;
  uses = 0;
  /** No more queries: close once those in flight have settled. */
  retired = false;
  /** connect(2)ed to host:port: the kernel drops datagrams from anyone else. */
  readonly connected: boolean;
  private closed = false;

  constructor(
    owner: UdpUpstream,
    /** The upstream address it is connected to, and the table its exchanges are in. */
    readonly pool: Pool,
  ) {
    const { host, port, pending } = pool;
    this.sock = dgram.createSocket({ type: pool.family, lookup: literalLookup });
    this.connected = connect(this.sock, host, port);
    this.sock.on('error', (e: Error & { code?: string }) => {
      // An ICMP error for one of our datagrams (port, host or network unreachable, administratively
      // prohibited: RFC 1122 §4.1.3.3, RFC 4443 §3.1), reported on a connected socket's next receive:
      // it names no query, and anyone who can guess the port can forge one, so each query still waits
      // for its reply or its timeout, as on an unconnected socket, which never hears of it.
      if (this.connected && ICMP_ERRORS.has(e.code ?? '')) return;
      // Any other error ends the socket: its queries fail now, and pick() gives its slot a new one.
      this.retired = true;
      for (const x of pending.values()) if (x.source === this) owner.settle(x, new UpstreamError('error', e.message));
      this.closeIfIdle();
    });
    this.sock.on('message', (msg, rinfo) => {
      if (msg.length < 12) return;
      const id = msg.readUInt16BE(0);
      const x = pending.get(this.base + id);
      // Spoofed or stray packets are ignored, not treated as failures: the ID must be in flight on
      // this very socket. The source is checked here too: the kernel's check holds only on a
      // connected socket.
      if (x !== undefined && rinfo.port === port && rinfo.address === host && isOurReply(msg, id, x.sent, x.qend)) owner.settle(x, undefined, msg);
    });
  }

  /** One of its exchanges has settled: its ID leaves the pool's table. */
  release(id: number): void {
    this.pool.pending.delete(this.base + id);
    this.inflight--;
    this.closeIfIdle();
  }

  closeIfIdle(): void {
    if (this.retired && !this.closed && this.inflight === 0) {
      this.closed = true;
      this.sock.close();
      freeBases.push(this.base);
    }
  }
}

/** Connects a new socket to the upstream (binding it to a random ephemeral port); false when it stays unconnected. */
function connect(sock: dgram.Socket, host: string, port: number): boolean {
  // connectSync (Node 24.21+): connect(2) on a UDP socket only records the peer, so it can run
  // inline; the async connect() would hold every send until its callback.
  if (typeof sock.connectSync !== 'function') return false;
  try {
    sock.connectSync(port, host);
    return true;
  } catch {
    // No route now (ENETUNREACH...): unconnected, each send then fails as it did before.
    return false;
  }
}

/** The source ports of one upstream address. */
class Pool {
  readonly slots: (SourcePort | undefined)[];
  readonly family: Family;
  /**
   * The exchanges in flight on every socket of the pool, by socket and query ID (`SourcePort.base +
   * id`): a reply counts only on the socket its query left from. One table instead of one per socket:
   * with 1,024 sockets a table per socket was cold in the CPU's caches at every send and reply (issue
   * 22, bench/RESULTS.md "A bare relay with the same pool"). IDs are distinct per socket, as before, so
   * no number of queries in flight (upstreams.maxInflight goes to 100,000) can use them all up: a
   * socket carries at most sourcePortReuse (≤ 10,000) queries, far fewer than its 65,536 IDs. Not a Map:
   * see stableTable.ts; the low 16 bits of a key are the random ID, so idHash still spreads them.
   */
  readonly pending = new StableTable<number, Exchange>(idHash, 256);

  constructor(
    readonly host: string,
    readonly port: number,
    size: number,
  ) {
    // Upstream hosts are IP literals (spec.ts): a colon means IPv6.
    this.family = host.includes(':') ? 'udp6' : 'udp4';
    this.slots = new Array<SourcePort | undefined>(size).fill(undefined);
  }
}

export interface SourcePortOptions {
  /** Sockets in rotation per upstream address. */
  ports: number;
  /** Queries one socket carries before it is replaced (1 = a fresh socket per query). */
  maxUses: number;
}

export class UdpUpstream {
  /** host → port → its pool. */
  private readonly pools = new Map<string, Map<number, Pool>>();
  /** The pool used last: with one upstream, every query's (the lookup is skipped). */
  private last: Pool | undefined;
  private readonly deadlines = new Deadlines<Exchange>();
  private readonly spare: Exchange[] = [];

  constructor(private readonly opts: SourcePortOptions = { ports: 1, maxUses: 1 }) {}

  /** Sockets open now, every upstream (the sinkhole_upstream_source_ports gauge). */
  get openSockets(): number {
    let n = 0;
    for (const byPort of this.pools.values()) for (const pool of byPort.values()) for (const s of pool.slots) if (s) n++;
    return n;
  }

  /** Exchanges in flight (for tests: every one settles, none is left behind). */
  get inflight(): number {
    return this.deadlines.size;
  }

  private pool(host: string, port: number): Pool {
    const last = this.last;
    if (last !== undefined && last.host === host && last.port === port) return last;
    let byPort = this.pools.get(host);
    if (!byPort) this.pools.set(host, (byPort = new Map()));
    let pool = byPort.get(port);
    if (!pool) byPort.set(port, (pool = new Pool(host, port, this.opts.ports)));
    return (this.last = pool);
  }

  /** A socket picked at random; an empty or used-up slot gets a new one (on a new random port). */
  private pick(pool: Pool): SourcePort {
    const slots = pool.slots;
    const i = slots.length === 1 ? 0 : randomIndex(slots.length);
    let s = slots[i];
    // A socket still in its slot but retired was ended by a socket error: it takes no more queries.
    if (!s || s.retired) slots[i] = s = new SourcePort(this, pool);
    if (++s.uses >= this.opts.maxUses) {
      // Retired: it answers what it has in flight, then closes; the slot is refilled on its next pick.
      s.retired = true;
      slots[i] = undefined;
    }
    return s;
  }

  /** The upstream's reply, or why there is none: a Later (later.ts), so the miss's reactions run in the call that reads the reply. */
  exchange(host: string, port: number, query: Buffer, qend: number, timeoutMs: number): Promise<Buffer> {
    const pool = this.pool(host, port);
    const source = this.pick(pool);
    // A fresh, unpredictable ID (RFC 5452 §9.2), distinct from the others in flight on this socket.
    const pending = pool.pending;
    let id = randomId();
    while (pending.has(source.base + id)) id = randomId();
    const out = Buffer.from(query);
    out.writeUInt16BE(id, 0);
    const x = this.spare.pop() ?? new Exchange(this);
    x.id = id;
    x.source = source;
    x.sent = out;
    x.qend = qend;
    x.timeoutMs = timeoutMs;
    x.deadline = performance.now() + timeoutMs;
    x.settled = false;
    x.sending = true;
    x.resends = 0;
    const reply = new Later<Buffer>();
    x.reply = reply;
    pending.set(source.base + id, x);
    source.inflight++;
    this.deadlines.add(x);
    try {
      if (source.connected) source.sock.send(out, x.onSent);
      else source.sock.send(out, port, host, x.onSent);
    } catch (e) {
      // dgram throws at once for a socket that is no longer running: the exchange fails as a send error.
      this.sent(x, e as Error);
    }
    return reply;
  }

  /** An exchange's send callback. */
  sent(x: Exchange, e: Error | null): void {
    x.sending = false;
    const s = x.source;
    // A connected socket hands a pending ICMP error about an earlier datagram to the next send, which
    // then fails without sending. That error is not this query's: it is sent again (an unconnected
    // socket would have sent it the first time), and after MAX_RESENDS it is left to its reply or its
    // timeout, as the receive side leaves such errors (a forged ICMP message must not fail queries).
    const code = (e as (Error & { code?: string }) | null)?.code;
    if (e && s !== undefined && !x.settled && s.connected && !s.retired && ICMP_ERRORS.has(code ?? '')) {
      if (x.resends >= MAX_RESENDS) return;
      x.resends++;
      x.sending = true;
      try {
        s.sock.send(x.sent, x.onSent);
        return;
      } catch {
        x.sending = false; // not running any more: fails below, as a send error
      }
    }
    // Settling now recycles it (the callback has come); if it settled before, it was left for here.
    if (s !== undefined && e) this.settle(x, sendError(e, `${s.pool.host}:${s.pool.port}`));
    else if (x.settled) this.recycle(x);
  }

  /** Settles an exchange once: with its reply, or an error (timeout, send or socket error). */
  settle(x: Exchange, err: Error | undefined, reply?: Buffer): void {
    if (x.settled) return;
    x.settled = true;
    this.deadlines.remove(x);
    x.source!.release(x.id);
    const later = x.reply!;
    x.reply = undefined;
    x.source = undefined;
    x.sent = NO_BYTES;
    if (!x.sending) this.recycle(x);
    // Last: the caller's reactions run inside these calls, and may start other exchanges.
    if (err) later.reject(err);
    else later.resolve(reply!);
  }

  private recycle(x: Exchange): void {
    if (this.spare.length < MAX_SPARE_RECORDS) this.spare.push(x);
  }

  /** Closes every socket (their queries in flight settle as errors through their timeouts). */
  close(): void {
    this.last = undefined;
    for (const byPort of this.pools.values()) {
      for (const pool of byPort.values()) {
        const slots = pool.slots;
        for (let i = 0; i < slots.length; i++) {
          const s = slots[i];
          slots[i] = undefined;
          if (s) {
            s.retired = true;
            s.closeIfIdle();
          }
        }
      }
    }
  }
}
