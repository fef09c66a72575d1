// A real DNS server on 127.0.0.1, UDP and TCP on one ephemeral port, standing
// in for the internet. Each test scripts what it does per name (answer, delay,
// truncate, SERVFAIL, wrong ID, silence...) and reads what it was asked.
// Replies are built with dns2's Packet, a codec nobody here wrote.
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { Packet } from 'dns2';

export interface RR {
  name: string;
  type: number;
  ttl?: number;
  address?: string;
  domain?: string;
  data?: Buffer;
}

export interface Behaviour {
  /** Records for the answer section (default: one A/AAAA for the qname, TTL 300). */
  answers?: RR[];
  rcode?: number;
  /** An SOA in authority (for negative answers): its TTL and MINIMUM. */
  soa?: { ttl: number; minimum: number };
  delayMs?: number;
  /** Over UDP: reply with TC=1 and no records; over TCP: the full answer. */
  truncate?: boolean;
  /** Never reply. */
  silent?: boolean;
  /** First send a reply with another ID (a spoofing attempt), then (unless onlyWrong) the real one. */
  wrongId?: boolean;
  /** First send a reply for another question, then the real one. */
  wrongQuestion?: boolean;
  /** Send only the bad replies, never the real one. */
  onlyBad?: boolean;
  /** Reply from another port (a spoof from the right address but wrong port). */
  fromOtherPort?: boolean;
  /** Hand-made reply bytes instead of dns2's (a lying or broken upstream); undefined sends nothing. */
  raw?: (query: Buffer, proto: Seen['proto']) => Buffer | undefined;
  /** Over TCP: reset the connection instead of answering, or send half the framed reply and close. */
  tcpFault?: 'reset' | 'cut';
  /** Echo EDNS: an OPT in the reply when the query had one, as real servers (NSD, unbound) do. */
  echoEdns?: boolean;
}

export interface Seen {
  name: string;
  type: number;
  proto: 'udp' | 'tcp' | 'dot' | 'doh';
  id: number;
  port: number;
  /** The query as it arrived, bytes untouched. */
  raw: Buffer;
}

export const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, TXT: 16, AAAA: 28, SVCB: 64, HTTPS: 65 } as const;

export class FakeUpstream {
  readonly seen: Seen[] = [];
  private readonly scripts = new Map<string, Behaviour>();
  private fallback: Behaviour = {};
  private udp!: dgram.Socket;
  private other!: dgram.Socket;
  private tcp!: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private closed = false;
  port = 0;

  static async start(): Promise<FakeUpstream> {
    const f = new FakeUpstream();
    await f.listen();
    return f;
  }

  /** Scripts a name (lower-case, no trailing dot); `*` sets the default for every other name. */
  on(name: string, b: Behaviour): this {
    if (name === '*') this.fallback = b;
    else this.scripts.set(name, b);
    return this;
  }

  count(name?: string): number {
    return name === undefined ? this.seen.length : this.seen.filter((s) => s.name === name).length;
  }

  private async listen(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      this.udp = dgram.createSocket('udp4');
      this.udp.bind(0, '127.0.0.1');
      await once(this.udp, 'listening');
      this.port = this.udp.address().port;
      this.tcp = net.createServer((s) => this.onTcp(s));
      try {
        this.tcp.listen(this.port, '127.0.0.1');
        await once(this.tcp, 'listening');
        break;
      } catch (e) {
        this.udp.close();
        if (attempt > 20) throw e;
      }
    }
    this.other = dgram.createSocket('udp4');
    this.other.bind(0, '127.0.0.1');
    await once(this.other, 'listening');
    this.udp.on('message', (msg, rinfo) => {
      void this.respond(msg, 'udp', rinfo.port, (out, fromOther) => {
        // A delayed reply may come due after the test closed us.
        if (!this.closed) (fromOther ? this.other : this.udp).send(out, rinfo.port, rinfo.address);
      });
    });
  }

  private onTcp(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void this.respond(Buffer.from(msg), 'tcp', sock.remotePort ?? 0, (out, _fromOther, fault) => {
          const framed = Buffer.alloc(2 + out.length);
          framed.writeUInt16BE(out.length, 0);
          out.copy(framed, 2);
          if (sock.destroyed) return;
          if (fault === 'reset') sock.resetAndDestroy();
          else if (fault === 'cut') sock.end(framed.subarray(0, Math.max(3, framed.length >> 1)));
          else sock.write(framed);
        });
      }
    });
  }

  /** Stops taking TCP connections: a TCP retry is then refused (ECONNREFUSED). */
  async closeTcp(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.tcp.close(() => r()));
    this.tcpClosed = true;
  }

  private tcpClosed = false;

  /** Answers one query as scripted; also used by the DoT/DoH fakes in fakeEncrypted.ts. */
  async respond(
    raw: Buffer,
    proto: Seen['proto'],
    port: number,
    send: (b: Buffer, fromOther?: boolean, fault?: Behaviour['tcpFault']) => void,
  ): Promise<void> {
    const req = Packet.parse(raw);
    const q = req.questions[0];
    if (!q) return;
    const name = q.name.toLowerCase();
    this.seen.push({ name, type: q.type, proto, id: req.header.id, port, raw: Buffer.from(raw) });
    const b = this.scripts.get(name) ?? this.fallback;
    if (b.silent) return;
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    if (b.tcpFault && proto === 'tcp') return send(Buffer.from(raw), false, b.tcpFault);
    if (b.raw) {
      const out = b.raw(raw, proto);
      if (out) send(out);
      return;
    }
    const res = Packet.createResponseFromRequest(req);
    // Like an authoritative server (NSD): AA set, RA clear. sinkhole must set RA and clear AA.
    res.header.aa = 1;
    res.header.ra = 0;
    res.header.rcode = b.rcode ?? 0;
    const truncated = b.truncate && proto === 'udp';
    if (truncated) res.header.tc = 1;
    else if (b.rcode === undefined || b.rcode === 0) {
      const answers = b.answers ?? defaultAnswers(q.name, q.type);
      for (const a of answers) res.answers.push({ class: 1, ttl: 300, ...a } as never);
    }
    if (b.soa && !truncated) {
      res.authorities.push({
        name: q.name.split('.').slice(-2).join('.'), type: T.SOA, class: 1, ttl: b.soa.ttl,
        primary: 'ns.example.test', admin: 'hostmaster.example.test', serial: 1, refresh: 3600, retry: 600,
        expiration: 86400, minimum: b.soa.minimum,
      } as never);
    }
    if (b.echoEdns && (req.additionals ?? []).some((r: { type: number }) => r.type === 41)) {
      res.additionals.push(Packet.Resource.EDNS([], { udpPayloadSize: 1232 }) as never);
    }
    const out = Buffer.from(res.toBuffer());
    if (b.wrongId) {
      const spoof = Buffer.from(out);
      spoof.writeUInt16BE((req.header.id + 1) & 0xffff, 0);
      send(spoof);
    }
    if (b.wrongQuestion) {
      const other = Packet.createResponseFromRequest(req);
      other.questions = [{ name: 'spoofed.example.test', type: q.type, class: 1 }] as never;
      other.answers.push({ name: 'spoofed.example.test', type: T.A, class: 1, ttl: 300, address: '203.0.113.66' } as never);
      send(Buffer.from(other.toBuffer()));
    }
    if (b.fromOtherPort) send(out, true);
    if (!b.onlyBad) send(out);
  }

  /** Closes every open TCP connection from our side, as a server does with idle ones (RFC 7766 §6.2.3). */
  dropTcpConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.sockets) s.destroy();
    await Promise.all([
      new Promise<void>((r) => this.udp.close(() => r())),
      new Promise<void>((r) => this.other.close(() => r())),
      this.tcpClosed ? Promise.resolve() : new Promise<void>((r) => this.tcp.close(() => r())),
    ]);
  }
}

function defaultAnswers(name: string, type: number): RR[] {
  if (type === T.A) return [{ name, type: T.A, address: '192.0.2.10' }];
  if (type === T.AAAA) return [{ name, type: T.AAAA, address: '2001:db8::10' }];
  return [];
}
