// UDP exchange with an upstream, hardened as RFC 5452 asks: every query gets
// a fresh random ID and a source port chosen at random, and a reply is
// accepted only from the address and port queried, with our ID and our
// question. Anything else is dropped and the real reply (or the timeout) is
// awaited.
//
// Source ports come from a pool (upstreams.sourcePorts, default 1024 sockets
// per address family, each bound by the kernel to a random ephemeral port).
// Each query picks a socket at random with the CSPRNG, and a socket carries at
// most upstreams.sourcePortReuse queries before it is closed and its slot is
// refilled with a socket on a new random port. An off-path spoofer must then
// guess the 16-bit ID and which of the 1024 ports is in use: 26 bits, against
// ~31 for a fresh port per query (RFC 5452 §9.2, §10). `sourcePortReuse: 1`
// keeps that strict form: a new socket for every query. Opening a socket per
// query cost ~17 µs, most of a cache miss (bench/RESULTS.md).
import dgram from 'node:dgram';
import { boundedExchange, isOurReply, sendError, UpstreamError, withFreshId, type Settle } from './exchange.js';
import { randomIndex } from './random.js';
import { literalLookup } from '../net/lookup.js';

interface Pending {
  host: string;
  port: number;
  sent: Buffer;
  qend: number;
  settle: Settle;
}

type Family = 'udp4' | 'udp6';

/** One socket on a kernel-chosen random ephemeral port, carrying at most `maxUses` queries. */
class SourcePort {
  readonly sock: dgram.Socket;
  readonly pending = new Map<number, Pending>();
  uses = 0;
  /** No more queries: close once those in flight have settled. */
  retired = false;
  private closed = false;

  constructor(family: Family) {
    this.sock = dgram.createSocket({ type: family, lookup: literalLookup });
    this.sock.on('error', (e) => {
      this.retired = true;
      for (const p of this.pending.values()) p.settle(new UpstreamError('error', e.message));
      this.closeIfIdle();
    });
    this.sock.on('message', (msg, rinfo) => {
      const p = msg.length >= 2 ? this.pending.get(msg.readUInt16BE(0)) : undefined;
      // Spoofed or stray packets are ignored, not treated as failures.
      if (p && rinfo.port === p.port && rinfo.address === p.host && isOurReply(msg, msg.readUInt16BE(0), p.sent, p.qend)) p.settle(undefined, msg);
    });
  }

  release(id: number): void {
    this.pending.delete(id);
    this.closeIfIdle();
  }

  closeIfIdle(): void {
    if (this.retired && !this.closed && this.pending.size === 0) {
      this.closed = true;
      this.sock.close();
    }
  }
}

export interface SourcePortOptions {
  /** Sockets in rotation per address family. */
  ports: number;
  /** Queries one socket carries before it is replaced (1 = a fresh socket per query). */
  maxUses: number;
}

export class UdpUpstream {
  private readonly slots: Record<Family, (SourcePort | undefined)[]>;

  constructor(private readonly opts: SourcePortOptions = { ports: 1, maxUses: 1 }) {
    this.slots = { udp4: new Array(opts.ports).fill(undefined), udp6: new Array(opts.ports).fill(undefined) };
  }

  /** Sockets open now, both families (the sinkhole_upstream_source_ports gauge). */
  get openSockets(): number {
    let n = 0;
    for (const family of ['udp4', 'udp6'] as const) for (const s of this.slots[family]) if (s) n++;
    return n;
  }

  /** A socket picked at random; an empty or used-up slot gets a new one (on a new random port). */
  private pick(family: Family): SourcePort {
    const slots = this.slots[family];
    const i = slots.length === 1 ? 0 : randomIndex(slots.length);
    let s = slots[i];
    if (!s) slots[i] = s = new SourcePort(family);
    if (++s.uses >= this.opts.maxUses) {
      // Retired: it answers what it has in flight, then closes; the slot is refilled on its next pick.
      s.retired = true;
      slots[i] = undefined;
    }
    return s;
  }

  exchange(host: string, port: number, query: Buffer, qend: number, timeoutMs: number): Promise<Buffer> {
    // Upstream hosts are IP literals (spec.ts): a colon means IPv6, without a regex per query.
    const source = this.pick(host.includes(':') ? 'udp6' : 'udp4');
    let fresh = withFreshId(query);
    while (source.pending.has(fresh.id)) fresh = withFreshId(query); // IDs in flight on one socket stay distinct
    const { out, id } = fresh;
    return boundedExchange(timeoutMs, `no reply from ${host}:${port} in ${timeoutMs}ms`, (settle) => {
      source.pending.set(id, { host, port, sent: out, qend, settle });
      source.sock.send(out, port, host, (e) => {
        if (e) settle(sendError(e, `${host}:${port}`));
      });
      return () => source.release(id);
    });
  }

  /** Closes every socket (their queries in flight settle as errors through their timeouts). */
  close(): void {
    for (const family of ['udp4', 'udp6'] as const) {
      const slots = this.slots[family];
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
