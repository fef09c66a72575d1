// The recover stage, first in the chain (pipeline/chain.ts). Anything below may throw; a throw becomes SERVFAIL and a counter,
// and never reaches the socket loop (a rejected promise would even kill the
// process on Node 20, PACKAGES.md §1.5).
import { RCODE } from '../dns/constants.js';
import { errorReply } from '../dns/reply.js';
import type { Query } from '../dns/query.js';
import type { Logger } from '../log.js';
import type { Stats } from '../metrics/stats.js';
import { isPromise, type Handler, type Outcome, type Stage } from '../pipeline/types.js';

export class RecoverStage implements Stage {
  readonly name = 'recover';

  constructor(
    private readonly stats: Stats,
    private readonly log: Logger,
  ) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    try {
      const r = next(q);
      return isPromise(r) ? r.catch((e: unknown) => this.fail(q, e)) : r;
    } catch (e) {
      return this.fail(q, e);
    }
  }

  private fail(q: Query, e: unknown): Outcome {
    this.stats.internalErrors++;
    // Recover sits above the metrics stage, so the SERVFAIL it sends is counted here.
    this.stats.countResponse('servfail', RCODE.SERVFAIL);
    this.log.error('SH_INTERNAL', 'query failed inside the pipeline; answered SERVFAIL', { qname: q.qname, qtype: q.qtype, error: String(e) });
    return { wire: errorReply(q, RCODE.SERVFAIL), result: 'servfail' };
  }
}
