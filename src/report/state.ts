// The report's state file (report.store: memory): <state.dir>/report.json,
// loaded at start, written every few seconds when the report changed and on
// a clean stop. Written atomically (a temporary file, fsync, rename), so a
// crash mid-write leaves the previous file whole. A file that does not parse
// is moved aside (report.json.bad) and logged, never silently overwritten.
import { mkdirSync, readFileSync, renameSync } from 'node:fs';
import { replaceDurably } from '../durable.js';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { ComplianceReport } from './report.js';

/** How often a changed report is written. */
export const SAVE_EVERY_MS = 5000;

export class ReportStateFile {
  readonly file: string;
  private timer: NodeJS.Timeout | undefined;
  private saved = -1;
  private writing: Promise<void> | undefined;
  /** Logged once per run of failures, not every few seconds. */
  private failing = false;

  constructor(
    dir: string,
    private readonly report: ComplianceReport,
    private readonly log: Logger,
  ) {
    this.file = join(dir, 'report.json');
  }

  /** Loads the file if there is one; returns how many devices it held. */
  load(): number {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.error('SH_REPORT_STORE', 'cannot read the report state file; starting empty', { file: this.file, error: String(e) });
      return 0;
    }
    let ok = false;
    try {
      ok = this.report.load(JSON.parse(text));
    } catch {
      ok = false;
    }
    if (!ok) {
      const aside = `${this.file}.bad`;
      try {
        mkdirSync(join(this.file, '..'), { recursive: true });
        renameSync(this.file, aside);
      } catch {
        // moving it aside is a courtesy; starting is what matters
      }
      this.log.error('SH_REPORT_STORE', 'the report state file is not a sinkhole report; moved aside, starting empty', { file: this.file, movedTo: aside });
      return 0;
    }
    this.saved = this.report.version;
    return this.report.size;
  }

  start(): void {
    this.timer = setInterval(() => void this.save(), SAVE_EVERY_MS);
    this.timer.unref();
  }

  /** Writes the report if it changed since the last write. */
  save(): Promise<void> {
    if (this.writing) return this.writing;
    const version = this.report.version;
    if (version === this.saved) return Promise.resolve();
    this.writing = this.write(JSON.stringify(this.report.toJSON()))
      .then(() => {
        this.saved = version;
        if (this.failing) this.log.info('report state file written again', { file: this.file });
        this.failing = false;
      })
      .catch((e: unknown) => {
        if (!this.failing) this.log.error('SH_REPORT_STORE', 'cannot write the report state file; will retry', { file: this.file, error: String(e) });
        this.failing = true;
      })
      .finally(() => (this.writing = undefined));
    return this.writing;
  }

  private async write(text: string): Promise<void> {
    // 0600: the report names devices.
    await replaceDurably(this.file, text, 0o600);
  }

  /** A clean stop: the last changes are written before the process exits. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.writing;
    await this.save();
  }
}
