// RFC 1035 §4.2.2 / RFC 7766 §8: over TCP each message is preceded by its
// two-byte length. Frames may be split across reads or several may arrive in
// one read (pipelining), so bytes are buffered until a whole frame is there.
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) break;
      this.onFrame(buf.subarray(2, 2 + len));
      buf = buf.subarray(2 + len);
    }
    // Copy the remainder so the socket's chunk is not retained behind it.
    this.pending = buf.length ? Buffer.from(buf) : Buffer.alloc(0);
  }

  get buffered(): number {
    return this.pending.length;
  }
}

export function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  message.copy(out, 2);
  return out;
}
