// The syslog sink: RFC 5424 messages with a CEF body, over
//   udp://  one message per datagram (RFC 5426); no acknowledgement, so a
//           datagram handed to the kernel counts as delivered;
//   tcp://  octet-counting framing, "LEN SP MSG" (RFC 6587 §3.4.1), which
//           needs no escaping of newlines and is what rsyslog, syslog-ng and
//           every SIEM collector accept;
//   tls://  the same framing over TLS (RFC 5425 §4.3), the server checked
//           against `ca` (and its name or IP), with an optional client
//           certificate (`cert`, `key`) for mutual authentication (§5.1).
// TCP and TLS keep one connection and reopen it when it closes. Syslog has no
// application-level acknowledgement: an event counts as delivered when the
// kernel took it; a receiver that dies with bytes in flight can lose them
// (RELP, RFC-less, would be the cure). A receiver that is down is noticed at
// connect, and the event stays in the spool.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { hostname } from 'node:os';
import tls from 'node:tls';
import type { SyslogSinkConfig } from '../config/config.js';
import { toCef } from './cef.js';
import type { ComplianceEvent } from './event.js';
import type { Sink } from './delivery.js';

/** Facility 10 (security/authorization, authpriv) and severity 4 (warning): RFC 5424 §6.2.1. */
export const SYSLOG_PRI = 10 * 8 + 4;
const CONNECT_TIMEOUT_MS = 5000;

/**
 * RFC 5424 §6: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG. The
 * timestamp is the announcement's, in UTC with milliseconds (§6.2.3); no
 * structured data ("-"); MSG is the CEF line, ASCII-safe, without a BOM
 * (MSG-ANY, §6.4), because several CEF parsers choke on one.
 */
export function rfc5424(e: ComplianceEvent, host = hostname()): string {
  const field = (s: string, max: number): string => (s.replace(/[^\x21-\x7e]/g, '').slice(0, max) || '-');
  return `<${SYSLOG_PRI}>1 ${new Date(e.at).toISOString()} ${field(host, 255)} sinkhole ${process.pid} device-trying - ${toCef(e)}`;
}

/** RFC 6587 §3.4.1 octet counting: the length is in octets of the UTF-8 message. */
export function octetCounted(msg: string): Buffer {
  const body = Buffer.from(msg, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}

export class SyslogSink implements Sink {
  readonly label: string;
  private udp: dgram.Socket | undefined;
  private stream: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private closed = false;

  constructor(private readonly cfg: SyslogSinkConfig) {
    this.label = `syslog:${cfg.address}`;
  }

  async send(e: ComplianceEvent): Promise<void> {
    if (this.closed) throw new Error('closed');
    const msg = rfc5424(e);
    if (this.cfg.transport === 'udp') return this.sendUdp(Buffer.from(msg, 'utf8'));
    const s = await this.connection();
    await new Promise<void>((resolve, reject) => {
      s.write(octetCounted(msg), (err) => (err ? reject(err) : resolve()));
    });
  }

  private sendUdp(msg: Buffer): Promise<void> {
    if (!this.udp) {
      this.udp = dgram.createSocket(net.isIPv6(this.cfg.host) ? 'udp6' : 'udp4');
      this.udp.on('error', () => {}); // an ICMP unreachable surfaces here; the next send reports its own
      this.udp.unref();
    }
    const u = this.udp;
    return new Promise((resolve, reject) => u.send(msg, this.cfg.port, this.cfg.host, (err) => (err ? reject(err) : resolve())));
  }

  private connection(): Promise<net.Socket> {
    if (this.stream && !this.stream.destroyed && this.stream.writable) return Promise.resolve(this.stream);
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private connect(): Promise<net.Socket> {
    const { host, port } = this.cfg;
    return new Promise((resolve, reject) => {
      let s: net.Socket;
      if (this.cfg.transport === 'tls') {
        s = tls.connect({
          host, port,
          // RFC 5425 §5.2: the server is identified by its certificate; a name is checked as a DNS SAN, an IP as an IP SAN.
          servername: net.isIP(host) ? undefined : host,
          ca: this.cfg.ca ? readFileSync(this.cfg.ca) : undefined,
          cert: this.cfg.cert ? readFileSync(this.cfg.cert) : undefined,
          key: this.cfg.key ? readFileSync(this.cfg.key) : undefined,
        });
      } else s = net.connect({ host, port });
      const timer = setTimeout(() => s.destroy(new Error(`connect timed out after ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      s.once('error', fail);
      s.once(this.cfg.transport === 'tls' ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.off('error', fail);
        // Later errors end this connection; the next send opens another.
        s.on('error', () => s.destroy());
        // A receiver that closes is noticed here, before the next event is written into a dead socket.
        s.on('end', () => s.destroy());
        s.on('close', () => {
          if (this.stream === s) this.stream = undefined;
        });
        // Receivers send nothing back; read anyway so a chatty one cannot fill our buffers.
        s.resume();
        s.setKeepAlive(true, 30_000);
        s.unref();
        this.stream = s;
        resolve(s);
      });
    });
  }

  close(): void {
    this.closed = true;
    this.udp?.close();
    this.stream?.end();
    this.stream?.destroy();
  }
}
