// An independent dnstap decoder for tests: protobufjs (a decoder nobody here
// wrote) with the real dnstap.proto (test/fixtures/dnstap.proto, copied
// unchanged from github.com/dnstap/dnstap.pb, CC0), and a reader for Frame
// Streams files as fstrm_capture writes them (fstrm/control.h: a START control
// frame, data frames, a STOP control frame). Debian's dnstap-read (BIND 9.18)
// and dnstap CLI (golang-dnstap 0.4.0) decode the messages but print no Policy,
// so the policy field is checked with this decoder, on their input file.
import { join } from 'node:path';
import protobuf from 'protobufjs';

const root = protobuf.loadSync(join(import.meta.dirname, '..', 'fixtures', 'dnstap.proto'));
const DnstapType = root.lookupType('dnstap.Dnstap');

export interface DecodedPolicy {
  type?: string;
  rule?: string;
  action?: string;
  match?: string;
  value?: Buffer;
}

export interface DecodedMessage {
  type: string;
  socketFamily?: string;
  socketProtocol?: string;
  queryAddress?: Buffer;
  responseAddress?: Buffer;
  queryPort?: number;
  responsePort?: number;
  queryTimeSec?: number;
  queryTimeNsec?: number;
  responseTimeSec?: number;
  responseTimeNsec?: number;
  queryMessage?: Buffer;
  responseMessage?: Buffer;
  policy?: DecodedPolicy;
}

export interface Decoded {
  type: string;
  identity?: Buffer;
  version?: Buffer;
  message?: DecodedMessage;
}

/** One Dnstap protobuf; throws when a required field is missing or the bytes are not protobuf. */
export function decodeDnstap(buf: Buffer): Decoded {
  const m = DnstapType.decode(buf);
  const o = DnstapType.toObject(m, { enums: String, longs: Number, bytes: Buffer }) as Decoded;
  // Policy.rule is bytes: shown as text.
  const p = o.message?.policy as (DecodedPolicy & { rule?: unknown }) | undefined;
  if (p && Buffer.isBuffer(p.rule)) p.rule = p.rule.toString();
  return o;
}

/** The dotted/colon form of 4 or 16 address bytes. */
export function addressText(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  if (b.length === 4) return [...b].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** Control frames (type, content types) and data frames of a Frame Streams byte stream or file. */
export function splitFrames(buf: Buffer): { control: { type: number; contentTypes: string[] }[]; data: Buffer[]; rest: Buffer } {
  const control: { type: number; contentTypes: string[] }[] = [];
  const data: Buffer[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt32BE(off);
    if (len === 0) {
      if (off + 8 > buf.length) break;
      const clen = buf.readUInt32BE(off + 4);
      if (off + 8 + clen > buf.length) break;
      const contentTypes: string[] = [];
      for (let f = off + 12; f + 8 <= off + 8 + clen; ) {
        const flen = buf.readUInt32BE(f + 4);
        if (buf.readUInt32BE(f) === 1) contentTypes.push(buf.toString('latin1', f + 8, f + 8 + flen));
        f += 8 + flen;
      }
      control.push({ type: buf.readUInt32BE(off + 8), contentTypes });
      off += 8 + clen;
    } else {
      if (off + 4 + len > buf.length) break;
      data.push(buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
  }
  return { control, data, rest: buf.subarray(off) };
}
