// UDP exchange with an upstream, hardened as RFC 5452 asks: a fresh random
// ID and a random source port for every query, and a reply is accepted only
// from the address and port queried, with our ID and our question. Anything
// else is dropped and the real reply (or the timeout) is awaited.
import dgram from 'node:dgram';
import { boundedExchange, isOurReply, UpstreamError, withFreshId, type Settle } from './exchange.js';

interface Pending {
  host: string;
  port: number;
  sent: Buffer;
  qend: number;
  settle: Settle;
}

/** One socket on a kernel-chosen random ephemeral port, carrying at most `maxUses` queries. */
class SourcePort {
  readonly sock: dgram.Socket;
  readonly pending = new Map<number, Pending>();
  uses = 0;
  retired = false;

  constructor(family: 'udp4' | 'udp6') {
    this.sock = dgram.createSocket(family);
    this.sock.on('error', (e) => {
      for (const p of this.pending.values()) p.settle(new UpstreamError('error', e.message));
    });
    this.sock.on('message', (msg, rinfo) => {
      const p = msg.length >= 2 ? this.pending.get(msg.readUInt16BE(0)) : undefined;
      // Spoofed or stray packets are ignored, not treated as failures.
      if (p && rinfo.port === p.port && rinfo.address === p.host && isOurReply(msg, msg.readUInt16BE(0), p.sent, p.qend)) p.settle(undefined, msg);
    });
  }

  release(id: number): void {
    this.pending.delete(id);
    if (this.retired && this.pending.size === 0) this.sock.close();
  }
}

/**
 * The UDP side of the forwarder. With `maxUses` 1 (the default) every query
 * gets its own socket, so its source port is fresh and random (RFC 5452
 * §9.2). A larger `maxUses` lets a socket carry that many queries before it
 * is replaced: the ports stay random but live a little longer, which costs
 * far less than a socket per query (upstreams.sourcePortReuse; README).
 */
export class UdpUpstream {
  private readonly current: Partial<Record<'udp4' | 'udp6', SourcePort>> = {};

  constructor(private readonly maxUses = 1) {}

  exchange(host: string, port: number, query: Buffer, qend: number, timeoutMs: number): Promise<Buffer> {
    // Upstream hosts are IP literals (spec.ts): a colon means IPv6, without a regex per query.
    const family = host.includes(':') ? 'udp6' : 'udp4';
    const source = (this.current[family] ??= new SourcePort(family));
    source.uses++;
    if (source.uses >= this.maxUses) {
      source.retired = true;
      this.current[family] = undefined;
    }
    let fresh = withFreshId(query);
    while (source.pending.has(fresh.id)) fresh = withFreshId(query); // IDs in flight on one socket stay distinct
    const { out, id } = fresh;
    return boundedExchange(timeoutMs, `no reply from ${host}:${port} in ${timeoutMs}ms`, (settle) => {
      source.pending.set(id, { host, port, sent: out, qend, settle });
      source.sock.send(out, port, host, (e) => {
        if (e) settle(new UpstreamError('error', e.message));
      });
      return () => source.release(id);
    });
  }
}
