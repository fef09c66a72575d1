// Reads what a secondary asks the exported zone: the header, the one question
// and, for IXFR, the client's SOA serial from the authority section (RFC 1995
// §3). Never throws: anything unreadable is `undefined` (dropped) or FORMERR.
import { nameEnd, readName } from '../../dns/message.js';
import { TYPE_IXFR, TYPE_SOA, type Asked } from './wire.js';

export const OPCODE_QUERY = 0;
export const OPCODE_NOTIFY = 4;

export interface Request extends Asked {
  /** Lower-case, no trailing dot. */
  qname: string;
  qtype: number;
  qclass: number;
  /** IXFR only: the serial the client holds, from its SOA in the authority section; undefined when absent. */
  clientSerial: number | undefined;
  /** The message could be read only up to its header (FORMERR, echoing no question). */
  malformed: boolean;
}

/** undefined for a message that must not be answered at all: shorter than a header, or a response (QR). */
export function readRequest(buf: Buffer): Request | undefined {
  if (buf.length < 12 || (buf[2]! & 0x80) !== 0) return undefined;
  const base = { id: buf.readUInt16BE(0), opcode: (buf[2]! >> 3) & 0x0f, rd: (buf[2]! & 0x01) !== 0 };
  const bad: Request = { ...base, question: Buffer.alloc(0), qname: '', qtype: 0, qclass: 0, clientSerial: undefined, malformed: true };
  if (buf.readUInt16BE(4) !== 1) return bad;
  const qend = nameEnd(buf, 12);
  if (qend < 0 || qend + 4 > buf.length) return bad;
  const qname = readName(buf, 12) ?? '';
  const question = Buffer.from(buf.subarray(12, qend + 4));
  const qtype = buf.readUInt16BE(qend);
  const qclass = buf.readUInt16BE(qend + 2);
  let clientSerial: number | undefined;
  if (qtype === TYPE_IXFR && buf.readUInt16BE(8) >= 1) {
    // The first authority record, after the answers (none in a request, but skip them if present).
    let off = qend + 4;
    const an = buf.readUInt16BE(6);
    for (let i = 0; i <= an && off >= 0; i++) {
      const end = nameEnd(buf, off);
      if (end < 0 || end + 10 > buf.length) return { ...bad, question, qname, qtype, qclass, malformed: true };
      const rdlen = buf.readUInt16BE(end + 8);
      if (i === an) {
        if (buf.readUInt16BE(end) !== TYPE_SOA) break;
        const mname = nameEnd(buf, end + 10);
        const rname = mname < 0 ? -1 : nameEnd(buf, mname);
        if (rname < 0 || rname + 20 > end + 10 + rdlen || rname + 20 > buf.length) return { ...bad, question, qname, qtype, qclass, malformed: true };
        clientSerial = buf.readUInt32BE(rname);
      }
      off = end + 10 + rdlen;
    }
  }
  return { ...base, question, qname, qtype, qclass, clientSerial, malformed: false };
}
