// A Frame Streams writer (the transport of dnstap): the bidirectional
// handshake on a unix socket or TCP, then data frames written in batches.
// Spec: github.com/farsightsec/fstrm, fstrm/control.h ("Frame Streams Control
// Frames") and the dnstap.info "Frame Streams" notes:
//   writer → READY(content type)   reader → ACCEPT(content type)
//   writer → START(content type)   writer → data frames ...
//   writer → STOP                  reader → FINISH
// A data frame is a 32-bit big-endian length and that many bytes; a control
// frame is an escape (length 0), its own 32-bit length, a 32-bit type and
// fields (type 1 = content type: 32-bit length, then the string).
//
// It never blocks or slows DNS: frames wait in a bounded queue (full = dropped
// and counted), one write per event-loop turn carries every frame queued in
// that turn, and a collector that goes away is reconnected with backoff while
// the queue keeps the newest-permitted frames (the oldest are kept: what is
// queued is sent in order, what does not fit is dropped).
import net from 'node:net';
import type { Logger } from '../log.js';

export const CONTROL_ACCEPT = 0x01;
export const CONTROL_START = 0x02;
export const CONTROL_STOP = 0x03;
export const CONTROL_READY = 0x04;
export const CONTROL_FINISH = 0x05;
const FIELD_CONTENT_TYPE = 0x01;
/** fstrm's FSTRM_CONTROL_FRAME_LENGTH_MAX: a longer control frame is a broken peer. */
const CONTROL_MAX = 512;

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
/** A collector that takes the connection but never ACCEPTs is given up on, and tried again later. */
const HANDSHAKE_MS = 5000;
/** How long close() waits for FINISH after STOP. */
const FINISH_MS = 1000;
/** Frames are packed into chunks of this size (a bigger frame gets a chunk of its own). */
const CHUNK = 64 << 10;
/** Bytes that may wait at once, whatever the frame count: a frame can hold two 64 KiB DNS messages. */
const MAX_QUEUED_BYTES = 32 << 20;

export type FstrmTarget = { socket: string } | { tcp: { host: string; port: number } };

/** What the writer has done: exported as sinkhole_dnstap_* (summed over query threads). */
export interface FstrmHealth {
  sent: number;
  dropped: number;
  connected: boolean;
}

/** A control frame with one content-type field (READY, ACCEPT, START) or none (STOP, FINISH). */
export function controlFrame(type: number, contentType?: string): Buffer {
  const ct = contentType === undefined ? undefined : Buffer.from(contentType);
  const len = 4 + (ct ? 8 + ct.length : 0);
  const b = Buffer.alloc(8 + len);
  b.writeUInt32BE(0, 0); // escape
  b.writeUInt32BE(len, 4);
  b.writeUInt32BE(type, 8);
  if (ct) {
    b.writeUInt32BE(FIELD_CONTENT_TYPE, 12);
    b.writeUInt32BE(ct.length, 16);
    ct.copy(b, 20);
  }
  return b;
}

/** Reads control frames off the reader's side of the connection; undefined until a whole one is in. */
class ControlReader {
  private buf: Buffer = Buffer.alloc(0);

  /** The next control frame's type and content types, or undefined (need more bytes); throws on garbage. */
  push(chunk: Buffer): { type: number; contentTypes: string[] } | undefined {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (this.buf.length < 8) return undefined;
    if (this.buf.readUInt32BE(0) !== 0) throw new Error('expected a control frame from the collector');
    const len = this.buf.readUInt32BE(4);
    if (len < 4 || len > CONTROL_MAX) throw new Error(`control frame of ${len} bytes`);
    if (this.buf.length < 8 + len) return undefined;
    const type = this.buf.readUInt32BE(8);
    const contentTypes: string[] = [];
    for (let off = 12; off + 8 <= 8 + len; ) {
      const field = this.buf.readUInt32BE(off);
      const flen = this.buf.readUInt32BE(off + 4);
      if (off + 8 + flen > 8 + len) throw new Error('control field overruns its frame');
      if (field === FIELD_CONTENT_TYPE) contentTypes.push(this.buf.toString('latin1', off + 8, off + 8 + flen));
      off += 8 + flen;
    }
    this.buf = this.buf.subarray(8 + len);
    return { type, contentTypes };
  }
}

export class FrameStreamWriter {
  readonly health: FstrmHealth = { sent: 0, dropped: 0, connected: false };
  /** Frames queued since the last write, packed into chunks; `used` bytes of the last chunk are filled. */
  private chunks: Buffer[] = [];
  private used = 0;
  private queued = 0;
  private queuedBytes = 0;
  private scheduled = false;
  private sock: net.Socket | undefined;
  /** Open: START sent, frames may be written. */
  private open = false;
  /** The socket's buffer is over its high-water mark: wait for 'drain' before the next batch. */
  private blocked = false;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Whether the current outage was logged (one line per outage, one when it ends). */
  private failing = false;
  private readonly ready: Buffer;
  private readonly start: Buffer;
  private readonly flushNow = (): void => this.flush();

  constructor(
    readonly target: FstrmTarget,
    private readonly contentType: string,
    /** Frames that may wait (unsent) at once; past this, new ones are dropped and counted. */
    private readonly maxQueued: number,
    private readonly log: Logger,
  ) {
    this.ready = controlFrame(CONTROL_READY, contentType);
    this.start = controlFrame(CONTROL_START, contentType);
    this.connect();
  }

  get label(): string {
    return 'socket' in this.target ? this.target.socket : `${this.target.tcp.host}:${this.target.tcp.port}`;
  }

  /**
   * Room for one frame of `len` payload bytes: returns the buffer and offset to write the payload at
   * (the length prefix is written here), or -1 when the queue is full (the frame is counted as dropped).
   * The caller must fill exactly `len` bytes at `frameBuf[offset...]` before the next call.
   */
  reserve(len: number): number {
    if (this.closed || this.queued >= this.maxQueued || this.queuedBytes + len > MAX_QUEUED_BYTES) {
      this.health.dropped++;
      return -1;
    }
    let chunk = this.chunks[this.chunks.length - 1];
    if (!chunk || this.used + 4 + len > chunk.length) {
      chunk = Buffer.allocUnsafe(Math.max(CHUNK, 4 + len));
      if (this.chunks.length) this.chunks[this.chunks.length - 1] = this.chunks[this.chunks.length - 1]!.subarray(0, this.used);
      this.chunks.push(chunk);
      this.used = 0;
    }
    chunk.writeUInt32BE(len, this.used);
    const at = this.used + 4;
    this.used = at + len;
    this.queued++;
    this.queuedBytes += 4 + len;
    this.frameBuf = chunk;
    if (!this.scheduled && this.open && !this.blocked) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
    return at;
  }

  /** The chunk the last reserve() handed out. */
  frameBuf: Buffer = Buffer.alloc(0);

  /** One write for everything queued in this turn (a writev when it spans chunks). */
  private flush(): void {
    this.scheduled = false;
    const sock = this.sock;
    if (!sock || !this.open || this.blocked || this.queued === 0) return;
    const chunks = this.chunks;
    chunks[chunks.length - 1] = chunks[chunks.length - 1]!.subarray(0, this.used);
    const n = this.queued;
    this.chunks = [];
    this.used = 0;
    this.queued = 0;
    this.queuedBytes = 0;
    if (chunks.length > 1) sock.cork();
    let more = true;
    for (const c of chunks) more = sock.write(c);
    if (chunks.length > 1) sock.uncork();
    this.health.sent += n;
    if (!more) this.blocked = true;
  }

  private connect(): void {
    this.retryTimer = undefined;
    if (this.closed) return;
    const sock = 'socket' in this.target ? net.createConnection({ path: this.target.socket }) : net.createConnection({ host: this.target.tcp.host, port: this.target.tcp.port });
    this.sock = sock;
    const reader = new ControlReader();
    const handshake = setTimeout(() => sock.destroy(new Error('no ACCEPT from the collector')), HANDSHAKE_MS);
    handshake.unref();
    sock.setNoDelay?.(true);
    sock.on('connect', () => sock.write(this.ready));
    sock.on('data', (chunk: Buffer) => {
      let frame;
      try {
        frame = reader.push(chunk);
      } catch (e) {
        sock.destroy(e as Error);
        return;
      }
      if (!frame) return;
      if (this.open) {
        // The reader sends nothing between ACCEPT and FINISH but FINISH (close() listens for it).
        sock.emit('fstrm-control', frame.type);
        return;
      }
      clearTimeout(handshake);
      if (frame.type !== CONTROL_ACCEPT || !frame.contentTypes.includes(this.contentType)) {
        sock.destroy(new Error(`collector did not accept ${this.contentType}`));
        return;
      }
      sock.write(this.start);
      this.open = true;
      this.health.connected = true;
      this.retryMs = RETRY_MIN_MS;
      this.log.info(this.failing ? 'dnstap collector reachable again; stream open' : 'dnstap stream open', { target: this.label });
      this.failing = false;
      this.flush();
    });
    sock.on('drain', () => {
      this.blocked = false;
      this.flush();
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!this.failing && !this.closed) {
        this.failing = true;
        this.log.warn('SH_DNSTAP', 'dnstap collector unreachable; messages wait in a bounded queue, then are dropped', { target: this.label, error: e.code ?? e.message });
      }
    });
    sock.on('close', () => {
      clearTimeout(handshake);
      if (this.sock !== sock) return;
      this.sock = undefined;
      this.open = false;
      this.blocked = false;
      this.health.connected = false;
      if (this.closed) return;
      if (!this.failing) {
        this.failing = true;
        this.log.warn('SH_DNSTAP', 'dnstap collector closed the connection; reconnecting', { target: this.label });
      }
      this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
      this.retryTimer.unref();
      this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    });
  }

  /** Sends what is queued, STOP, and waits (briefly) for FINISH, as fstrm's writer does on close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    const sock = this.sock;
    if (!sock) return;
    if (!this.open) {
      sock.destroy();
      return;
    }
    this.blocked = false;
    this.flush();
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        sock.destroy();
        resolve();
      };
      const timer = setTimeout(done, FINISH_MS);
      sock.on('fstrm-control', (type: number) => type === CONTROL_FINISH && done());
      sock.once('close', done);
      sock.write(controlFrame(CONTROL_STOP));
    });
  }
}
