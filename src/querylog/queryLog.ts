// The query log (log.queries: none | blocked | all), as JSON lines.
// Default `blocked`: admins need to see who still reaches for TikTok; logging
// every query of every member would record far more browsing than that needs.
import type { Config } from '../config/config.js';
import type { Query } from '../dns/query.js';
import { RCODE_NAME } from '../dns/constants.js';
import type { Logger } from '../log.js';
import { QTYPE_LABELS } from '../metrics/stats.js';
import type { Outcome } from '../pipeline/types.js';
import type { Observer } from '../stages/metrics.js';
import { anonymize } from './anonymize.js';
import { LineWriter, LogHealth } from './lineWriter.js';

export function typeName(qtype: number): string {
  return QTYPE_LABELS[qtype] ?? `TYPE${qtype}`;
}

export class QueryLog implements Observer {
  private settings!: Config['log'];
  private writer: LineWriter | undefined;
  readonly health = new LogHealth('queries');

  constructor(settings: Config['log'], private readonly log: Logger) {
    this.configure(settings);
  }

  configure(settings: Config['log']): void {
    const target = settings.file ?? '-';
    if (settings.queries === 'none' || this.writer?.target !== target) {
      void this.writer?.close();
      this.writer = settings.queries === 'none' ? undefined : new LineWriter(target, this.health, this.log);
    }
    this.settings = settings;
  }

  observe(q: Query, o: Outcome): void {
    if (!this.writer || (this.settings.queries === 'blocked' && o.result !== 'blocked')) return;
    this.writer.write({
      time: new Date().toISOString(),
      client: this.settings.anonymizeClients ? anonymize(q.client) : q.client,
      proto: q.proto,
      name: q.qname,
      type: typeName(q.qtype),
      result: o.result,
      rcode: RCODE_NAME[o.rcode ?? (o.wire[3]! & 0x0f)] ?? String(o.rcode ?? (o.wire[3]! & 0x0f)),
      list: o.list,
      rule: o.rule,
      via: o.viaTarget,
    });
  }

  reopen(): Promise<void> {
    return this.writer?.reopen() ?? Promise.resolve();
  }

  close(): Promise<void> {
    return this.writer?.close() ?? Promise.resolve();
  }
}
