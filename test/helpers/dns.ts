// Raw DNS clients for tests: build a query by hand (so malformed ones are
// possible too), send it over UDP or TCP to 127.0.0.1, and decode the reply
// with dns2's Packet — an independent decoder.
import dgram from 'node:dgram';
import net from 'node:net';
import { Packet } from 'dns2';

export interface QueryOptions {
  id?: number;
  /** Add an OPT record advertising this UDP size (RFC 6891). */
  edns?: number;
  dnssecOk?: boolean;
  rd?: boolean;
  opcode?: number;
}

export function encodeName(name: string): Buffer {
  const labels = name.split('.').filter(Boolean);
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

export function buildQuery(name: string, type: number, o: QueryOptions = {}): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(o.id ?? Math.floor(Math.random() * 65536), 0);
  header[2] = ((o.opcode ?? 0) << 3) | (o.rd === false ? 0 : 1);
  header.writeUInt16BE(1, 4);
  const q = Buffer.alloc(4);
  q.writeUInt16BE(type, 0);
  q.writeUInt16BE(1, 2);
  const parts = [header, encodeName(name), q];
  if (o.edns !== undefined) {
    header.writeUInt16BE(1, 10);
    const opt = Buffer.alloc(11);
    opt.writeUInt16BE(41, 1);
    opt.writeUInt16BE(o.edns, 3);
    if (o.dnssecOk) opt[7] = 0x80;
    parts.push(opt);
  }
  return Buffer.concat(parts);
}

/** Sends one datagram and resolves with the first reply (or rejects after timeoutMs). */
export function udpExchange(port: number, msg: Buffer, timeoutMs = 4000, from?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    // Any 127.0.0.0/8 address is on loopback: binding one lets a test be a different client.
    if (from) s.bind(0, from);
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('udp timeout'));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(msg, port, '127.0.0.1');
  });
}

/** A TCP connection that can pipeline queries and collects framed replies. */
export class TcpClient {
  readonly replies: Buffer[] = [];
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  readonly closed: Promise<void>;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (c) => {
      this.buf = Buffer.concat([this.buf, c]);
      while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
        const len = this.buf.readUInt16BE(0);
        this.replies.push(Buffer.from(this.buf.subarray(2, 2 + len)));
        this.buf = this.buf.subarray(2 + len);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    sock.on('error', () => {});
    this.closed = new Promise((r) => sock.on('close', () => r()));
  }

  static connect(port: number, from?: string): Promise<TcpClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: from }, () => resolve(new TcpClient(s)));
      s.once('error', reject);
    });
  }

  /** A client over a stream socket that is already connected (a TLS one, for DoT). */
  static over(sock: net.Socket): TcpClient {
    return new TcpClient(sock);
  }

  static frame(msg: Buffer): Buffer {
    const f = Buffer.alloc(2 + msg.length);
    f.writeUInt16BE(msg.length, 0);
    msg.copy(f, 2);
    return f;
  }

  send(msg: Buffer): void {
    this.sock.write(TcpClient.frame(msg));
  }

  /** Resolves once `n` replies in total have arrived. */
  async waitFor(n: number, timeoutMs = 4000): Promise<Buffer[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < n) {
      if (Date.now() > deadline) throw new Error(`tcp: ${this.replies.length}/${n} replies`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.replies.slice(0, n);
  }

  close(): void {
    this.sock.destroy();
  }
}

export async function tcpExchange(port: number, msg: Buffer, from?: string): Promise<Buffer> {
  const c = await TcpClient.connect(port, from);
  try {
    c.send(msg);
    return (await c.waitFor(1))[0]!;
  } finally {
    c.close();
  }
}

/** One query over UDP or TCP; `from` picks the client's source address on loopback. */
export function exchange(proto: 'udp' | 'tcp', port: number, msg: Buffer, from?: string): Promise<Buffer> {
  return proto === 'udp' ? udpExchange(port, msg, 4000, from) : tcpExchange(port, msg, from);
}

export type Decoded = ReturnType<typeof Packet.parse>;

export function decode(buf: Buffer): Decoded {
  return Packet.parse(buf);
}

export function rcodeOf(buf: Buffer): number {
  return buf[3]! & 0x0f;
}

/** The EDNS option list of the reply's OPT record, if any. */
export function optOf(d: Decoded): { udpPayloadSize?: number; rdata?: { code?: number; ednsCode?: number; infoCode?: number; extraText?: string }[] } | undefined {
  return d.additionals.find((r: { type: number }) => r.type === 41) as never;
}

/** Offset just past the question of a well-formed message (12 + name + type + class). */
export function questionEnd(msg: Buffer): number {
  let off = 12;
  while (msg[off]! !== 0) off += msg[off]! + 1;
  return off + 5;
}

/** Bytes of an A record's RDATA. */
/** EDNS options (RFC 6891 §6.1.2) as OPT RDATA: each its code, its length and its data. */
export function ednsOptions(options: [number, Buffer][]): Buffer {
  return Buffer.concat(options.map(([code, data]) => {
    const o = Buffer.alloc(4 + data.length);
    o.writeUInt16BE(code, 0);
    o.writeUInt16BE(data.length, 2);
    data.copy(o, 4);
    return o;
  }));
}

export function ipv4(addr: string): Buffer {
  return Buffer.from(addr.split('.').map(Number));
}

/** One resource record, class IN: `owner` is wire bytes (a name, or a pointer such as c00c). */
export function rr(owner: Buffer, type: number, ttl: number, rdata: Buffer, klass = 1): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(klass, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, fixed, rdata]);
}

/** A compression pointer to `offset` (RFC 1035 §4.1.4). */
export function ptr(offset: number): Buffer {
  return Buffer.from([0xc0 | (offset >> 8), offset & 0xff]);
}

/** A reply built by hand, as a lying or broken upstream would send it: the query's ID and question, then `records`. */
export function handReply(query: Buffer, records: Buffer, counts: { an?: number; ns?: number; ar?: number }, rcode = 0): Buffer {
  const head = Buffer.from(query.subarray(0, questionEnd(query)));
  head[2] = 0x80 | (head[2]! & 0x79);
  head[3] = 0x80 | rcode;
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(counts.an ?? 0, 6);
  head.writeUInt16BE(counts.ns ?? 0, 8);
  head.writeUInt16BE(counts.ar ?? 0, 10);
  return Buffer.concat([head, records]);
}
