// JSON lines to a file or stdout, off the query path: lines are batched and
// written once per event-loop turn. If the disk falls behind, at most
// MAX_BACKLOG bytes wait in memory and newer lines are dropped and counted,
// so a slow disk can never stall or exhaust the resolver.
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Logger } from '../log.js';

const MAX_BACKLOG = 8 << 20;

export class LineWriter {
  private batch: string[] = [];
  private scheduled = false;
  private opened: WriteStream | NodeJS.WriteStream | undefined;
  dropped = 0;

  constructor(
    readonly target: string,
    private readonly log: Logger,
  ) {}

  /** Opened on the first line, so a log that is never written never creates its file. */
  private get stream(): WriteStream | NodeJS.WriteStream {
    if (!this.opened) {
      if (this.target === '-') {
        this.opened = process.stdout;
      } else {
        const s = createWriteStream(this.target, { flags: 'a' });
        s.on('error', (e: Error) => this.log.error('SH_LOG_WRITE', 'cannot write log', { target: this.target, error: e.message }));
        this.opened = s;
      }
    }
    return this.opened;
  }

  write(record: object): void {
    this.writeLine(JSON.stringify(record));
  }

  /** A line already formatted as JSON (see jsonLine.ts), without its newline. */
  writeLine(line: string): void {
    if (this.stream.writableLength > MAX_BACKLOG) {
      if (this.dropped++ === 0) this.log.warn('SH_LOG_BACKLOG', 'log target is too slow; dropping lines', { target: this.target });
      return;
    }
    this.batch.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (!this.batch.length) return;
    this.stream.write(this.batch.join('\n') + '\n');
    this.batch = [];
  }

  /**
   * After logrotate has moved the file away: finish the old file and open the
   * path afresh on the next line (SIGHUP does this, as for most daemons).
   */
  reopen(): Promise<void> {
    return this.close();
  }

  close(): Promise<void> {
    this.flush();
    const s = this.opened;
    this.opened = undefined;
    if (!s || s === process.stdout) return Promise.resolve();
    return new Promise((resolve) => (s as WriteStream).end(() => resolve()));
  }
}
