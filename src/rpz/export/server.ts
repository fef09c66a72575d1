// The listener secondaries transfer the exported zone from (listen.rpz): TCP
// for AXFR and IXFR (RFC 5936 §4.2: zone transfers use TCP), and UDP on the
// same port for the SOA probes a secondary sends before it transfers (Unbound
// and BIND both ask the serial over UDP first). It answers for its one zone
// only and is no resolver: anything else is REFUSED.
//
// Who may transfer: an address inside `allow` (else REFUSED), and, when a TSIG
// key is configured, only with a request signed by it (RFC 8945; unsigned:
// REFUSED, a bad signature: NOTAUTH with the TSIG error, §5.2). At most
// `maxTransfers` transfers run at once; each connection is closed at its
// deadline whatever it is doing, so a secondary that stops reading cannot
// hold a transfer slot.
import { bindOnce, listenOnce } from '../../net/listen.js';
import type { ErrorCode } from '../../errors.js';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { FrameReader, frame } from '../../dns/framing.js';
import { normalizeAddress, parseAddress, type CidrSet } from '../../net/cidr.js';
import { RCODE_NOTAUTH, sign, splitTsig, TSIG_ERROR, TSIG_ERROR_NAME, unsignedError, verify, type TsigKey } from '../../dns/tsig.js';
import type { Logger } from '../../log.js';
import type { ZoneJournal } from './journal.js';
import { OPCODE_QUERY, readRequest } from './request.js';
import { axfrRecords, ixfrRecords, planIxfr } from './transfer.js';
import { message, nsRecord, pack, soaRecord, TYPE_AXFR, TYPE_IXFR, TYPE_NS, TYPE_SOA, type ZoneShape } from './wire.js';

const RCODE = { NOERROR: 0, FORMERR: 1, NOTIMP: 4, REFUSED: 5 } as const;
const CLASS_IN = 1;
const CLASS_ANY = 255;
/** A connection that sends nothing for this long is closed (RFC 7766 §6.2.3 suggests seconds). */
const IDLE_MS = 10_000;
/** Refusals logged per minute at most: a flood of them is counted in full but logged in part. */
const REFUSAL_LOG_PER_MINUTE = 20;

export const TRANSFER_KINDS = ['axfr', 'ixfr', 'soa', 'other'] as const;
export type TransferKind = (typeof TRANSFER_KINDS)[number];
export const TRANSFER_RESULTS = ['ok', 'refused', 'notauth', 'busy', 'failed'] as const;
export type TransferResult = (typeof TRANSFER_RESULTS)[number];

export interface ServerSettings {
  host: string;
  port: number;
  allow: CidrSet;
  key?: TsigKey;
  maxTransfers: number;
  deadlineMs: number;
}

/** What the server serves: read at the start of each request, so a transfer keeps the version it began with. */
export interface ServedZone {
  shape: ZoneShape;
  journal: ZoneJournal;
}

interface Reply {
  messages: Iterable<Buffer>;
  transfer?: 'axfr' | 'ixfr';
}

function kindOf(qtype: number): TransferKind {
  return qtype === TYPE_AXFR ? 'axfr' : qtype === TYPE_IXFR ? 'ixfr' : qtype === TYPE_SOA ? 'soa' : 'other';
}

/** Signs each message of one reply in turn (RFC 8945 §5.3.1): the first over the request's MAC, each later one over the previous MAC. */
class Signer {
  private prior: Buffer | undefined;
  constructor(
    private readonly key: TsigKey,
    private readonly requestMac: Buffer,
  ) {}

  sign(msg: Buffer): Buffer {
    const { wire, mac } = this.prior ? sign(msg, this.key, { priorMac: this.prior }) : sign(msg, this.key, { requestMac: this.requestMac });
    this.prior = mac;
    return wire;
  }
}

export class RpzExportServer {
  private tcp: net.Server | undefined;
  private udp: dgram.Socket | undefined;
  private readonly sockets = new Set<net.Socket>();
  private active = 0;
  private refusalsLogged = 0;
  private refusalWindow = 0;
  /** `${kind}|${result}` → requests (metrics). */
  readonly counts = new Map<string, number>();

  constructor(
    private readonly settings: ServerSettings,
    private readonly zone: () => ServedZone,
    private readonly log: Logger,
  ) {}

  /** Binds TCP, then UDP on the same port (with port 0, the kernel's choice for TCP; retried if UDP has it taken). */
  async start(): Promise<net.AddressInfo> {
    for (let attempt = 0; ; attempt++) {
      const tcp = net.createServer((sock) => this.onConnection(sock));
      const { port } = await listenOnce(tcp, { port: this.settings.port, host: this.settings.host });
      const udp = dgram.createSocket({ type: net.isIPv6(this.settings.host) ? 'udp6' : 'udp4' });
      try {
        await bindOnce(udp, port, this.settings.host);
      } catch (e) {
        await new Promise<void>((r) => tcp.close(() => r()));
        if (this.settings.port !== 0 || attempt >= 20) throw e;
        continue;
      }
      tcp.on('error', (e) => this.log.warn('SH_RPZ_EXPORT_TRANSFER', 'RPZ export TCP listener error', { error: e.message }));
      udp.on('error', (e) => this.log.warn('SH_RPZ_EXPORT_TRANSFER', 'RPZ export UDP socket error', { error: e.message }));
      udp.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
      this.tcp = tcp;
      this.udp = udp;
      return tcp.address() as net.AddressInfo;
    }
  }

  /** Transfers running now. */
  get transfers(): number {
    return this.active;
  }

  private count(kind: TransferKind, result: TransferResult): void {
    const k = `${kind}|${result}`;
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }

  private refusalLine(code: ErrorCode, message: string, fields: Record<string, unknown>): void {
    const minute = Math.floor(Date.now() / 60_000);
    if (minute !== this.refusalWindow) {
      this.refusalWindow = minute;
      this.refusalsLogged = 0;
    }
    if (++this.refusalsLogged <= REFUSAL_LOG_PER_MINUTE) this.log.warn(code, message, fields);
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const client = normalizeAddress(rinfo.address);
    // Over UDP every answer is one small message (see answer: no transfer is served over UDP).
    for (const reply of this.answer(msg, client, false)?.messages ?? []) this.udp?.send(reply, rinfo.port, rinfo.address);
  }

  private onConnection(sock: net.Socket): void {
    const client = normalizeAddress(sock.remoteAddress ?? '');
    // Connections are capped too, not only transfers: idle ones cost a descriptor each.
    if (this.sockets.size >= this.settings.maxTransfers * 2 + 8) {
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(IDLE_MS, () => sock.destroy());
    let transferring = false;
    const deadline = setTimeout(() => {
      if (transferring) {
        this.log.warn('SH_RPZ_EXPORT_TRANSFER', 'RPZ transfer cut off at its deadline (listen.rpz.transferTimeout)', { client, deadlineMs: this.settings.deadlineMs });
      }
      sock.destroy();
    }, this.settings.deadlineMs);
    deadline.unref();
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      clearTimeout(deadline);
      this.sockets.delete(sock);
    });
    // One request at a time per connection: a secondary sends one transfer request and reads it through.
    let chain = Promise.resolve();
    const reader = new FrameReader((frameBytes) => {
      const copy = Buffer.from(frameBytes);
      chain = chain.then(async () => {
        if (sock.destroyed) return;
        const reply = this.answer(copy, client, true);
        if (!reply) return;
        const kind = reply.transfer;
        if (kind) {
          transferring = true;
          this.active++;
        }
        try {
          for (const m of reply.messages) {
            if (sock.destroyed) throw new Error('the connection closed');
            if (!sock.write(frame(m))) await Promise.race([once(sock, 'drain'), once(sock, 'close')]);
          }
          if (sock.destroyed) throw new Error('the connection closed');
          if (kind) this.count(kind, 'ok');
        } catch (e) {
          if (kind) {
            this.count(kind, 'failed');
            this.log.warn('SH_RPZ_EXPORT_TRANSFER', 'RPZ transfer did not complete', { client, type: kind, error: (e as Error).message });
          }
        } finally {
          if (kind) {
            transferring = false;
            this.active--;
          }
        }
      });
    });
    sock.on('data', (chunk: Buffer) => reader.push(chunk));
  }

  /** The reply to one request, message by message; `transfer` when it is a transfer (it takes a slot, and is counted when sent). */
  private answer(buf: Buffer, client: string, tcp: boolean): Reply | undefined {
    const q = readRequest(buf);
    if (!q) return undefined;
    const kind = kindOf(q.qtype);
    if (q.malformed) {
      return { messages: [message(q, RCODE.FORMERR, [], [], false)] };
    }
    const addr = parseAddress(client);
    if (!addr || !this.settings.allow.contains(addr)) {
      this.count(kind, 'refused');
      if (kind === 'axfr' || kind === 'ixfr') this.refusalLine('SH_RPZ_EXPORT_REFUSED', 'RPZ transfer refused: the client is outside listen.rpz.allow', { client, type: kind });
      return { messages: [message(q, RCODE.REFUSED, [], [], false)] };
    }
    // TSIG (RFC 8945 §5.2): checked before anything about the zone is said.
    let signer: Signer | undefined;
    const split = splitTsig(buf);
    if (split === 'malformed') {
      this.count(kind, 'notauth');
      return { messages: [message(q, RCODE.FORMERR, [], [], false)] };
    }
    if (split) {
      const v = this.settings.key
        ? verify(split, [this.settings.key])
        : ({ ok: false, error: TSIG_ERROR.BADKEY, reason: 'listen.rpz has no tsig key', tsig: split.tsig } as const);
      if (!v.ok) {
        this.count(kind, 'notauth');
        this.refusalLine('SH_RPZ_EXPORT_TSIG', 'RPZ request with a TSIG that does not verify: NOTAUTH', {
          client, type: kind, key: split.tsig.keyName, tsigError: TSIG_ERROR_NAME[v.error] ?? v.error, reason: v.reason,
        });
        const reply = message(q, RCODE_NOTAUTH, [], [], false);
        // BADTIME is signed, with the server's time in Other Data (§5.2.3); BADKEY/BADSIG/BADTRUNC are not (§5.2).
        if (v.error === TSIG_ERROR.BADTIME && this.settings.key) {
          const now = Math.floor(Date.now() / 1000);
          const other = Buffer.alloc(6);
          other.writeUIntBE(now, 0, 6);
          return { messages: [sign(reply, this.settings.key, { requestMac: split.tsig.mac, error: v.error, otherData: other, now }).wire] };
        }
        return { messages: [unsignedError(reply, split.tsig.keyName, split.tsig.algorithm, v.error)] };
      }
      signer = new Signer(v.key, v.mac);
    } else if (this.settings.key && (kind === 'axfr' || kind === 'ixfr')) {
      this.count(kind, 'refused');
      this.refusalLine('SH_RPZ_EXPORT_REFUSED', 'RPZ transfer refused: listen.rpz.tsig is set and the request is not signed', { client, type: kind });
      return { messages: [message(q, RCODE.REFUSED, [], [], false)] };
    }
    const out = (m: Buffer): Buffer => (signer ? signer.sign(m) : m);
    const { shape, journal } = this.zone();
    if (q.opcode !== OPCODE_QUERY) {
      return { messages: [out(message(q, RCODE.NOTIMP, [], [], false))] };
    }
    if (q.qname !== shape.origin || (q.qclass !== CLASS_IN && q.qclass !== CLASS_ANY)) {
      // Not our zone: an authoritative server refuses (RFC 8906 §3.1.3 "not authoritative").
      this.count(kind, 'refused');
      return { messages: [out(message(q, RCODE.REFUSED, [], [], false))] };
    }
    const version = journal.current;
    if (kind === 'soa') {
      this.count(kind, 'ok');
      return { messages: [out(message(q, RCODE.NOERROR, [soaRecord(shape, version.serial)]))] };
    }
    if (q.qtype === TYPE_NS) {
      this.count(kind, 'ok');
      return { messages: [out(message(q, RCODE.NOERROR, [nsRecord(shape)]))] };
    }
    if (kind === 'other') {
      // NODATA at the apex: the SOA in the authority section (RFC 2308 §2.2).
      this.count(kind, 'ok');
      return { messages: [out(message(q, RCODE.NOERROR, [], [soaRecord(shape, version.serial)]))] };
    }
    if (!tcp) {
      // Over UDP: an IXFR gets the current SOA alone, which tells the client to come back over TCP when
      // it is behind (RFC 1995 §2); AXFR is TCP-only (RFC 5936 §4.2).
      this.count(kind, 'ok');
      if (kind === 'ixfr') return { messages: [out(message(q, RCODE.NOERROR, [soaRecord(shape, version.serial)]))] };
      return { messages: [out(message(q, RCODE.FORMERR, [], [], false))] };
    }
    if (kind === 'ixfr' && q.clientSerial === undefined) {
      // RFC 1995 §3: an IXFR carries the client's SOA in the authority section.
      return { messages: [out(message(q, RCODE.FORMERR, [], [], false))] };
    }
    if (this.active >= this.settings.maxTransfers) {
      this.count(kind, 'busy');
      this.refusalLine('SH_RPZ_EXPORT_REFUSED', 'RPZ transfer refused: listen.rpz.maxTransfers are running', { client, type: kind, running: this.active });
      return { messages: [out(message(q, RCODE.REFUSED, [], [], false))] };
    }
    let records: Iterable<Buffer>;
    if (kind === 'ixfr') {
      const plan = planIxfr(journal, q.clientSerial!);
      if (plan.kind === 'current') {
        this.count(kind, 'ok');
        return { messages: [out(message(q, RCODE.NOERROR, [soaRecord(shape, version.serial)]))] };
      }
      records = plan.kind === 'incremental' ? ixfrRecords(shape, version, q.clientSerial!, plan) : axfrRecords(shape, version);
      this.log.info('RPZ transfer', { code: 'SH_RPZ_EXPORT', client, type: plan.kind === 'incremental' ? 'ixfr' : 'ixfr-as-axfr', from: q.clientSerial, serial: version.serial });
    } else {
      records = axfrRecords(shape, version);
      this.log.info('RPZ transfer', { code: 'SH_RPZ_EXPORT', client, type: 'axfr', serial: version.serial, records: version.names.length + 2 });
    }
    // Lazily, a message at a time as the socket drains; each signed in turn, in order.
    return { messages: (function* () {
      for (const m of pack(q, records)) yield out(m);
    })(), transfer: kind };
  }

  /** Stops listening and closes every connection (a transfer in progress is cut; the secondary retries). */
  async close(): Promise<void> {
    const tcp = this.tcp;
    this.tcp = undefined;
    for (const s of this.sockets) s.destroy();
    this.udp?.close();
    this.udp = undefined;
    if (tcp) await new Promise<void>((r) => tcp.close(() => r()));
  }
}
