// The audit trail of exceptions: one JSON line for every query that an
// exception let through and that would otherwise have been blocked (event
// "use"), the record that shows an exception was used as approved; and the
// lines about the records themselves (grant, renew, revoke...), written
// through record().
import { whoAsked } from '../identity/whoAsked.js';
import type { Query } from '../dns/query.js';
import type { Logger } from '../log.js';
import type { Outcome } from '../pipeline/types.js';
import type { Observer } from '../stages/metrics.js';
import { LineWriter, LogHealth } from './lineWriter.js';
import { typeName } from './queryLog.js';

export class AuditLog implements Observer {
  private writer: LineWriter | undefined;
  /** Lines lost and the failure now, if any: the audit trail failing must be loud (metrics, /readyz, the log). */
  readonly health = new LogHealth('audit');

  constructor(target: string | undefined, private readonly log: Logger) {
    this.configure(target);
  }

  /** `target`: a file, or '-' / unset for stdout. */
  configure(target = '-'): void {
    if (this.writer?.target === target) return;
    void this.writer?.close();
    this.writer = new LineWriter(target, this.health, this.log);
  }

  observe(q: Query, o: Outcome): void {
    if (o.result !== 'excepted') return;
    this.writer!.write({
      time: new Date().toISOString(),
      event: 'use',
      client: whoAsked(q, o),
      name: q.qname,
      type: typeName(q.qtype),
      exception: o.exception,
      list: o.list,
      rule: o.rule,
      via: o.viaTarget,
    });
  }

  /** A line about the exception records themselves (grant, renew, revoke...: exceptionAudit.ts). */
  record(line: object): void {
    this.writer!.write(line);
  }

  reopen(): Promise<void> {
    return this.writer?.reopen() ?? Promise.resolve();
  }

  close(): Promise<void> {
    return this.writer?.close() ?? Promise.resolve();
  }
}
