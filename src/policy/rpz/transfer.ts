// Zone transfer in: one AXFR (RFC 5936) or IXFR (RFC 1995) over TCP, with a deadline for the whole
// exchange. IXFR carries our serial; the primary answers with one SOA when we are current, with the
// whole zone (as AXFR; RFC 1995 §4 lets it), or with the differences. The result is records as
// master-file lines (wireRecords.ts); feed.ts applies them.
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { encodeName } from './actions.js';
import { decodeTransferMessage, type WireRecord } from './wireRecords.js';

const AXFR = 252;
const IXFR = 251;
const SOA = 6;
const IN = 1;
/** A transferred zone larger than this is refused (a policy zone of 1M names is ~60 MB of lines). */
const MAX_BYTES = 512 * 1024 * 1024;

export type TransferOutcome =
  | { kind: 'current'; serial: number }
  | { kind: 'full'; soa: WireRecord; records: string[]; skipped: number }
  | { kind: 'incremental'; soa: WireRecord; deltas: { removed: string[]; added: string[] }[]; skipped: number };

export interface TransferRequest {
  host: string;
  port: number;
  /** The zone's name, absolute or not ("threat-feed.rpz.example."). */
  zone: string;
  /** Our serial, for IXFR; AXFR without it. */
  serial?: number;
  timeoutMs: number;
  /** Signs the request (TSIG, RFC 8945), when configured. */
  sign?: (query: Buffer) => Buffer;
  /** Checks each response message's signature; returns an error text when it does not verify. */
  verify?: (message: Buffer, index: number) => string | undefined;
  /** After the last message: an error text when the transfer did not end signed. */
  end?: () => string | undefined;
}

export class TransferError extends Error {}

/** Whether serial a is newer than b, in RFC 1982 serial-number arithmetic (32 bits). */
export function serialNewer(a: number, b: number): boolean {
  const d = (a - b) >>> 0;
  return d !== 0 && d < 0x80000000;
}

/** The AXFR or IXFR query (RFC 1995 §3: the IXFR query carries our SOA in the authority section). */
export function transferQuery(zone: string, serial: number | undefined, id: number): Buffer {
  const name = encodeName(zone.endsWith('.') ? zone.slice(0, -1) : zone);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(1, 4);
  const question = Buffer.concat([name, Buffer.from([0, serial === undefined ? AXFR : IXFR, 0, IN])]);
  if (serial === undefined) return Buffer.concat([header, question]);
  header.writeUInt16BE(1, 8);
  // SOA with root names and our serial; the other fields are not read (RFC 1995 §3).
  const rdata = Buffer.alloc(22);
  rdata.writeUInt32BE(serial >>> 0, 2);
  const soa = Buffer.concat([Buffer.from([0xc0, 12, 0, SOA, 0, IN, 0, 0, 0, 0, 0, 22]), rdata]);
  return Buffer.concat([header, question, soa]);
}

/** Accumulates the records of a transfer and says when it is complete (RFC 5936 §2.2, RFC 1995 §4). */
export class TransferAssembler {
  private first: WireRecord | undefined;
  private readonly records: WireRecord[] = [];
  private done: TransferOutcome | undefined;
  skipped = 0;

  constructor(private readonly ourSerial: number | undefined) {}

  get outcome(): TransferOutcome | undefined {
    return this.done;
  }

  /** Adds one message's records; returns the outcome once the last record has come. */
  add(answers: readonly WireRecord[], skipped: number): TransferOutcome | undefined {
    this.skipped += skipped;
    for (const r of answers) {
      if (this.done) throw new TransferError('records after the end of the transfer');
      if (!this.first) {
        if (r.type !== SOA) throw new TransferError('the transfer does not start with the SOA');
        this.first = r;
        continue;
      }
      this.records.push(r);
      this.done = this.complete();
    }
    return this.done;
  }

  /** The response ended after a message: an IXFR answer of the one SOA means we are current. */
  endOfMessage(): TransferOutcome | undefined {
    // RFC 1995 §2: the server answers with its one SOA when our serial is equal to or newer than its own.
    if (!this.done && this.first && this.records.length === 0 && this.ourSerial !== undefined && !serialNewer(this.first.serial!, this.ourSerial)) {
      this.done = { kind: 'current', serial: this.ourSerial };
    }
    return this.done;
  }

  private complete(): TransferOutcome | undefined {
    const first = this.first!;
    const last = this.records.at(-1)!;
    const second = this.records[0]!;
    // AXFR, or an IXFR answered with the whole zone: it ends with the first SOA again.
    if (second.type !== SOA || this.ourSerial === undefined) {
      if (last.type !== SOA) return undefined;
      if (last.serial !== first.serial) throw new TransferError(`the closing SOA's serial ${last.serial} is not the opening ${first.serial}`);
      return { kind: 'full', soa: first, records: this.records.slice(0, -1).filter((r) => r.type !== SOA).map((r) => r.line), skipped: this.skipped };
    }
    // Incremental: (old SOA, deletions, new SOA, additions)*, then the newest SOA again.
    if (last.type !== SOA || last.serial !== first.serial) return undefined;
    const deltas: { removed: string[]; added: string[] }[] = [];
    let i = 0;
    const rs = this.records;
    while (i < rs.length - 1) {
      // A delta opens with an SOA (the serial it starts from), then the removed records, an SOA, the added ones.
      if (rs[i]!.type !== SOA) throw new TransferError('an IXFR difference does not start with an SOA');
      const removed: string[] = [];
      for (i++; i < rs.length && rs[i]!.type !== SOA; i++) removed.push(rs[i]!.line);
      if (i >= rs.length - 1) return undefined; // the newest SOA seen is the end of the deletions: more to come
      const added: string[] = [];
      for (i++; i < rs.length && rs[i]!.type !== SOA; i++) added.push(rs[i]!.line);
      deltas.push({ removed, added });
      if (i === rs.length - 1) break;
    }
    return { kind: 'incremental', soa: first, deltas, skipped: this.skipped };
  }
}

/** One transfer from the primary: resolves with what it sent, rejects with TransferError (refused, deadline, malformed). */
export function transfer(req: TransferRequest): Promise<TransferOutcome> {
  const id = randomInt(0, 0x10000);
  let query = transferQuery(req.zone, req.serial, id);
  if (req.sign) query = req.sign(query);
  const asm = new TransferAssembler(req.serial);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: req.host, port: req.port });
    let buffered: Buffer = Buffer.alloc(0);
    let total = 0;
    let messages = 0;
    const fail = (why: string): void => {
      sock.destroy();
      reject(new TransferError(why));
    };
    const timer = setTimeout(() => fail(`no complete transfer within ${req.timeoutMs} ms`), req.timeoutMs);
    const finish = (o: TransferOutcome): void => {
      clearTimeout(timer);
      sock.end();
      resolve(o);
    };
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length, 0);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on('data', (d: Buffer) => {
      total += d.length;
      if (total > MAX_BYTES) return fail(`the transfer passed ${MAX_BYTES} bytes`);
      buffered = buffered.length ? Buffer.concat([buffered, d]) : d;
      try {
        while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
          const msg = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
          buffered = buffered.subarray(2 + msg.length);
          const m = decodeTransferMessage(msg);
          if (!m) return fail('a malformed message');
          if (m.id !== id) return fail(`a message with ID ${m.id}, not ${id}`);
          if (m.rcode !== 0) return fail(`the primary answered rcode ${m.rcode}${m.rcode === 5 ? ' (REFUSED)' : m.rcode === 9 ? ' (NOTAUTH: it did not accept our TSIG)' : ''}`);
          const problem = req.verify?.(msg, messages);
          messages++;
          if (problem) return fail(problem);
          const o = asm.add(m.answers, m.skipped) ?? asm.endOfMessage();
          if (o) {
            const unsignedEnd = req.end?.();
            return unsignedEnd ? fail(unsignedEnd) : finish(o);
          }
        }
      } catch (e) {
        return fail(e instanceof TransferError ? e.message : String(e));
      }
    });
    sock.on('error', (e) => fail(e.message));
    sock.on('close', () => {
      clearTimeout(timer);
      if (!asm.outcome) reject(new TransferError('the primary closed the connection before the transfer ended'));
    });
  });
}
