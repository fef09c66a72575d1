// JSON lines to a file or stdout, off the query path: lines are batched and
// written once per event-loop turn. If the disk falls behind, at most
// MAX_BACKLOG bytes wait in memory and newer lines are dropped and counted,
// so a slow disk can never stall or exhaust the resolver.
//
// A target that fails recovers by itself (issue 8: after ENOSPC, or with
// its folder deleted, lines used to vanish silently until a SIGHUP):
// - a write that fails (ENOSPC, EIO...) drops and counts its lines, closes
//   the file and retries with backoff, from RETRY_MIN_MS up to RETRY_MAX_MS;
// - every CHECK_MS the path is compared with the open file: a file deleted
//   under us (its folder removed) is counted as lost and reopened, its folder
//   recreated; one moved away (logrotate) is simply reopened;
// - the failure and the dropped lines are public (LogHealth): a metric, the
//   log, and for the audit trail the /readyz body.
import { mkdir, open, stat, statfs, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';

const MAX_BACKLOG = 8 << 20;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
/** How often an open file is checked against its path (deleted folder, rotation). */
const CHECK_MS = 1000;

/** What one log (queries, audit) has lost, and whether its target fails now. Outlives writers: a reload may change the target. */
export class LogHealth {
  dropped = 0;
  failure: { code: string; since: number; target: string } | undefined;

  constructor(readonly name: 'queries' | 'audit') {}
}

export class LineWriter {
  private batch: string[] = [];
  private batchBytes = 0;
  private scheduled = false;
  /** A write, an open or a check is running: one at a time. */
  private busy: Promise<void> | undefined;
  private file: FileHandle | undefined;
  /** Lines written to the open file since it was last checked against its path. */
  private unchecked = 0;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private warnedBacklog = false;

  constructor(
    readonly target: string,
    private readonly health: LogHealth,
    private readonly log: Logger,
  ) {
    if (target === '-') {
      // A closed pipe (EPIPE) must not end the process; its lines are counted as dropped.
      process.stdout.on('error', this.stdoutError);
    }
  }

  write(record: object): void {
    this.writeLine(JSON.stringify(record));
  }

  /** A line already formatted as JSON (see jsonLine.ts), without its newline. */
  writeLine(json: string): void {
    const line = `${json}\n`;
    const backlog = this.batchBytes + (this.target === '-' ? process.stdout.writableLength : 0);
    if (this.closed || backlog + line.length > MAX_BACKLOG) {
      if (!this.warnedBacklog && !this.health.failure) {
        this.warnedBacklog = true;
        this.log.warn('SH_LOG_BACKLOG', 'log target is too slow; dropping lines', { log: this.health.name, target: this.target });
      }
      this.drop(1);
      return;
    }
    this.batch.push(line);
    this.batchBytes += line.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes what is batched (no-op while a write runs or the target is failing: they pick it up). */
  flush(): void {
    this.scheduled = false;
    if (!this.batch.length) return;
    if (this.target === '-') {
      process.stdout.write(this.take().join(''));
      return;
    }
    if (this.busy || this.retryTimer) return;
    this.run(() => this.writeBatches());
  }

  private run(job: () => Promise<void>): void {
    const p = job().finally(() => {
      if (this.busy === p) this.busy = undefined;
      // Lines that came while this ran.
      if (this.batch.length && !this.retryTimer && !this.closed) this.flush();
    });
    this.busy = p;
  }

  private take(): string[] {
    const lines = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    return lines;
  }

  private async writeBatches(): Promise<void> {
    while (this.batch.length) {
      const lines = this.take();
      const buf = Buffer.from(lines.join(''));
      let written = 0;
      try {
        this.file ??= await this.openFile();
        while (written < buf.length) written += (await this.file.write(buf, written)).bytesWritten;
      } catch (e) {
        // What did not reach the file is lost: count the lines that were not written whole.
        this.drop(countLines(buf, written));
        return this.failed(e);
      }
      this.unchecked += lines.length;
      this.recovered();
    }
  }

  private async openFile(): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      fh = await open(this.target, 'a');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // The folder was deleted: recreate it, as a daemon that owns its log path does.
      await mkdir(dirname(this.target), { recursive: true, mode: 0o750 });
      fh = await open(this.target, 'a');
    }
    this.unchecked = 0;
    this.checkTimer ??= setInterval(() => this.checkSoon(), CHECK_MS).unref();
    return fh;
  }

  private checkSoon(): void {
    if (!this.busy && this.file && !this.closed) this.run(() => this.check());
  }

  /** Whether the open file is still the one at the path: a deleted one (rm -r of its folder) swallows every line. */
  private async check(): Promise<void> {
    const fh = this.file;
    if (!fh) return;
    const [mine, atPath] = await Promise.all([fh.stat(), stat(this.target).catch(() => undefined)]);
    if (atPath && atPath.ino === mine.ino && atPath.dev === mine.dev) {
      this.unchecked = 0;
      return;
    }
    this.file = undefined;
    await fh.close().catch(() => {});
    if (mine.nlink === 0) {
      // Deleted: whatever went into it since the last check is gone.
      this.drop(this.unchecked);
      this.log.error('SH_LOG_WRITE', `${this.health.name} log file was deleted; reopening it`, { log: this.health.name, target: this.target, lost: this.unchecked });
    }
    this.unchecked = 0;
  }

  private failed(e: unknown): void {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    const f = this.file;
    this.file = undefined;
    void f?.close().catch(() => {});
    if (this.health.failure?.code !== code) {
      const message = this.health.name === 'audit'
        ? 'cannot write the audit trail; exceptions used are NOT being recorded; retrying'
        : 'cannot write the query log; lines are dropped and counted; retrying';
      this.log.error('SH_LOG_WRITE', message, { log: this.health.name, target: this.target, error: code });
      this.health.failure = { code, since: Date.now(), target: this.target };
    }
    if (this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.run(() => (this.batch.length ? this.writeBatches() : this.probe()));
    }, this.retryMs).unref();
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
  }

  /** A retry with no line to write: the target recovered once it opens and its disk has room. */
  private async probe(): Promise<void> {
    try {
      this.file ??= await this.openFile();
      const fs = await statfs(dirname(this.target));
      if (fs.bavail === 0) throw Object.assign(new Error('no space left'), { code: 'ENOSPC' });
      this.recovered();
    } catch (e) {
      this.failed(e);
    }
  }

  private recovered(): void {
    this.retryMs = RETRY_MIN_MS;
    this.warnedBacklog = false;
    const f = this.health.failure;
    if (!f) return;
    this.health.failure = undefined;
    this.log.info(`${this.health.name} log is written again`, { log: this.health.name, target: this.target, failedFor: `${Math.round((Date.now() - f.since) / 1000)}s`, dropped: this.health.dropped });
  }

  private drop(lines: number): void {
    this.health.dropped += lines;
  }

  private readonly stdoutError = (e: NodeJS.ErrnoException): void => {
    if (this.health.failure?.code !== e.code) this.log.error('SH_LOG_WRITE', `cannot write the ${this.health.name} log to stdout`, { log: this.health.name, error: e.code ?? e.message });
    this.health.failure = { code: e.code ?? 'EIO', since: Date.now(), target: '-' };
    this.closed = true;
  };

  /** After logrotate has moved the file away: finish the old file and open the path afresh on the next line (SIGHUP). */
  async reopen(): Promise<void> {
    this.flush();
    await this.busy;
    const f = this.file;
    this.file = undefined;
    await f?.close().catch(() => {});
    this.retryMs = RETRY_MIN_MS;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.flush();
    }
  }

  async close(): Promise<void> {
    this.flush();
    await this.busy;
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.checkTimer);
    if (this.batch.length) this.drop(this.take().length);
    if (this.target === '-') process.stdout.off('error', this.stdoutError);
    const f = this.file;
    this.file = undefined;
    await f?.close().catch(() => {});
  }
}

/** Lines in buf from `from` on that were not written whole (each line ends with \n). */
function countLines(buf: Buffer, from: number): number {
  let n = 0;
  // A line cut in the middle is lost too: start counting at the line that `from` falls in.
  for (let i = Math.max(0, from); i < buf.length; i++) if (buf[i] === 0x0a) n++;
  return n;
}
