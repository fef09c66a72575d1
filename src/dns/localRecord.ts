// Records that sinkhole writes itself for its local answers (ANY, CHAOS, the sinkhole answer):
// owned by the question name, through a pointer to it.

/** One record whose owner is the question name (a pointer to offset 12, RFC 1035 §4.1.4). */
export function record(type: number, klass: number, ttl: number, rdata: Buffer): Buffer {
  const b = Buffer.alloc(12 + rdata.length);
  b.writeUInt16BE(0xc00c, 0);
  b.writeUInt16BE(type, 2);
  b.writeUInt16BE(klass, 4);
  b.writeUInt32BE(ttl, 6);
  b.writeUInt16BE(rdata.length, 10);
  rdata.copy(b, 12);
  return b;
}

/** RFC 1035 §3.3: a character-string is one length byte and up to 255 bytes. */
export function characterString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

