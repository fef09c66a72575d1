// The query log (log.queries: none | blocked | all), as JSON lines.
// Default `blocked`: admins need to see who still reaches for TikTok; logging
// every query of every member would record far more browsing than that needs.
import { whoAsked } from '../identity/whoAsked.js';
import type { Config } from '../config/config.js';
import type { Query } from '../dns/query.js';
import { RCODE_NAME } from '../dns/constants.js';
import type { Logger } from '../log.js';
import { QTYPE_LABELS } from '../metrics/stats.js';
import type { Outcome } from '../pipeline/types.js';
import type { Observer } from '../stages/metrics.js';
import { anonymize } from './anonymize.js';
import { LineWriter, LogHealth } from './lineWriter.js';
import { isoTime, jsonString, optionalField } from './jsonLine.js';

export function typeName(qtype: number): string {
  return QTYPE_LABELS[qtype] ?? `TYPE${qtype}`;
}

export class QueryLog implements Observer {
  private settings!: Config['log'];
  private writer: LineWriter | undefined;
  /** Lines lost and the failure now, if any (a metric; the writer retries by itself). */
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
    const who = whoAsked(q, o);
    const client = this.settings.anonymizeClients ? anonymize(who) : who;
    // BADVERS (16) does not fit the header's four bits: the outcome carries it.
    // A query dropped by the rate limit (NO_REPLY) had no reply, so no rcode: logged as "none".
    const code = o.rcode ?? o.wire[3]! & 0x0f;
    const rcode = o.wire.length === 0 ? 'none' : (RCODE_NAME[code] ?? String(code));
    // {"time","client","proto","name","type","result","rcode","list"?,"rule"?,"via"?}: the order JSON.stringify gave.
    this.writer.writeLine(
      `{"time":"${isoTime(Date.now())}","client":"${client}","proto":"${q.proto}","name":${jsonString(q.qname)},"type":"${typeName(q.qtype)}",` +
        `"result":"${o.result}","rcode":"${rcode}"${optionalField('list', o.list)}${optionalField('rule', o.rule)}${optionalField('via', o.viaTarget)}}`,
    );
  }

  reopen(): Promise<void> {
    return this.writer?.reopen() ?? Promise.resolve();
  }

  close(): Promise<void> {
    return this.writer?.close() ?? Promise.resolve();
  }
}
