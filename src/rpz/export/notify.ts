// NOTIFY (RFC 1996): after each new serial, every secondary in listen.rpz.notify
// is told the zone changed, so that it asks for the SOA and transfers within
// seconds instead of at its next refresh. Over UDP, one message per secondary,
// resent with back-off until the secondary answers (§3.6: "the master will
// periodically resend … until a response is received"), signed with the TSIG
// key when there is one (RFC 8945, as BIND's `also-notify { … key … }` expects).
// A newer serial replaces a NOTIFY still being retried for an older one.
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { Endpoint } from '../../config/config.js';
import { sign, splitTsig, verify, type TsigKey } from '../../dns/tsig.js';
import type { Logger } from '../../log.js';
import { OPCODE_NOTIFY } from './request.js';
import { message, soaRecord, type ZoneShape } from './wire.js';

/** Waits before each resend: 1 + 2 + 4 + 8 + 16 s, then the NOTIFY is given up (and logged). */
export const NOTIFY_BACKOFF_MS = [1000, 2000, 4000, 8000, 16000];

function questionOf(origin: string): Buffer {
  const parts: Buffer[] = [];
  for (const l of origin.split('.').filter(Boolean)) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0, 0, 6, 0, 1])); // root, QTYPE SOA, QCLASS IN (§3.7)
  return Buffer.concat(parts);
}

export interface NotifyCounts {
  /** NOTIFYs a secondary answered. */
  ok: number;
  /** NOTIFYs given up after every resend, or refused by the secondary. */
  failed: number;
}

export class Notifier {
  readonly counts: NotifyCounts = { ok: 0, failed: 0 };
  /** target → the round in flight for it; a new serial aborts the old round. */
  private readonly rounds = new Map<string, AbortController>();
  private closed = false;

  constructor(
    private readonly targets: readonly Endpoint[],
    private readonly key: TsigKey | undefined,
    private readonly log: Logger,
    private readonly backoffMs: readonly number[] = NOTIFY_BACKOFF_MS,
  ) {}

  /** Tells every secondary of `serial`; resolves when each has answered or been given up. */
  notify(shape: ZoneShape, serial: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return Promise.all(this.targets.map((t) => this.one(t, shape, serial))).then(() => undefined);
  }

  private async one(target: Endpoint, shape: ZoneShape, serial: number): Promise<void> {
    const id = `${target.host}:${target.port}`;
    this.rounds.get(id)?.abort();
    const round = new AbortController();
    this.rounds.set(id, round);
    const result = await this.exchange(target, shape, serial, round.signal);
    if (this.rounds.get(id) === round) this.rounds.delete(id);
    if (result === 'superseded') return;
    if (result === 'ok') {
      this.counts.ok++;
      this.log.info('RPZ NOTIFY answered', { code: 'SH_RPZ_EXPORT', secondary: id, zone: shape.origin, serial });
      return;
    }
    this.counts.failed++;
    this.log.warn('SH_RPZ_EXPORT_NOTIFY', 'RPZ NOTIFY not answered; the secondary will see the new serial at its next SOA refresh', {
      secondary: id, zone: shape.origin, serial, reason: result,
    });
  }

  /** Sends and resends one NOTIFY until a matching answer: 'ok', 'superseded', or why it failed. */
  private exchange(target: Endpoint, shape: ZoneShape, serial: number, signal: AbortSignal): Promise<string> {
    const qid = randomInt(0, 0x10000);
    // The question names the zone with QTYPE SOA, and the answer section may carry the new SOA as a hint (§3.7).
    const asked = { id: qid, opcode: OPCODE_NOTIFY, rd: false, question: questionOf(shape.origin) };
    const unsigned = message(asked, 0, [soaRecord(shape, serial)]);
    // A NOTIFY is a request: QR clear (message() writes replies), AA set (§3.7).
    unsigned[2] = (OPCODE_NOTIFY << 3) | 0x04;
    return new Promise((resolve) => {
      const sock = dgram.createSocket(isIPv6(target.host) ? 'udp6' : 'udp4');
      let attempt = 0;
      let timer: NodeJS.Timeout | undefined;
      /** The MAC of every send: an answer may be to any of them. */
      const macs: Buffer[] = [];
      const finish = (r: string): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        sock.close();
        resolve(r);
      };
      const onAbort = (): void => finish('superseded');
      signal.addEventListener('abort', onAbort);
      sock.on('error', () => {}); // ICMP unreachable and the like: the resend schedule covers it
      sock.on('message', (reply) => {
        if (reply.length < 12 || reply.readUInt16BE(0) !== qid || (reply[2]! & 0x80) === 0 || ((reply[2]! >> 3) & 0x0f) !== OPCODE_NOTIFY) return;
        if (this.key) {
          // A signed NOTIFY's answer must be signed by the same key, over our MAC (RFC 8945 §5.3); one that
          // is not is ignored, as a forgery would be, and the resends go on.
          const split = splitTsig(reply);
          if (!split || split === 'malformed') return;
          if (!macs.some((requestMac) => verify(split, [this.key!], { requestMac }).ok)) return;
        }
        const rcode = reply[3]! & 0x0f;
        finish(rcode === 0 ? 'ok' : `the secondary answered rcode ${rcode}`);
      });
      const send = (): void => {
        if (this.closed) return finish('shutting down');
        // Each resend is signed afresh: its time must be within the fudge when it arrives.
        let wire = unsigned;
        if (this.key) {
          const signed = sign(unsigned, this.key);
          wire = signed.wire;
          macs.push(signed.mac);
        }
        sock.send(wire, target.port, target.host);
        const wait = this.backoffMs[attempt++];
        timer = wait === undefined ? undefined : setTimeout(send, wait);
        if (wait === undefined) timer = setTimeout(() => finish(`no answer after ${attempt} tries`), this.backoffMs.at(-1) ?? 1000);
      };
      send();
    });
  }

  close(): void {
    this.closed = true;
    for (const r of this.rounds.values()) r.abort();
    this.rounds.clear();
  }
}
