// RFC 1035 §4.2.2 / RFC 7766 §8: over TCP each message is preceded by its
// two-byte length. Frames may be split across reads or several may arrive in
// one read (pipelining), so bytes are buffered until a whole frame is there.
export class FrameReader {
  /** Received bytes not yet framed; joined only once a whole frame is there, so a dripped frame costs no quadratic copying. */
  private chunks: Buffer[] = [];
  private total = 0;
  private paused = false;
  /** Frames completed so far: the TCP listener watches it to tell slow senders from stalled ones. */
  frames = 0;

  /** `onFrame` returns false to pause: the rest stays buffered until resume(). */
  constructor(private readonly onFrame: (frame: Buffer) => boolean | void) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.total += chunk.length;
    this.drain();
  }

  resume(): void {
    this.paused = false;
    this.drain();
  }

  private drain(): void {
    while (!this.paused && this.total >= 2) {
      const head = this.chunks[0]!.length >= 2 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
      const need = 2 + head.readUInt16BE(0);
      if (this.total < need) return;
      const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
      const rest = buf.subarray(need);
      // Copy the remainder so one long-lived chunk is not retained behind it.
      this.chunks = rest.length ? [Buffer.from(rest)] : [];
      this.total = rest.length;
      this.frames++;
      if (this.onFrame(buf.subarray(2, need)) === false) this.paused = true;
    }
  }

  get buffered(): number {
    return this.total;
  }
}

export function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  message.copy(out, 2);
  return out;
}
