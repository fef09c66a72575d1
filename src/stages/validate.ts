// Stage 3. Malformed or unsupported queries, and clients outside
// clients.allowFrom, are answered here, before any policy or upstream work.
import { RCODE } from '../dns/constants.js';
import { errorReply } from '../dns/reply.js';
import type { Query } from '../dns/query.js';
import type { PolicyHolder } from '../policy/holder.js';
import type { Handler, Outcome, Result, Stage } from '../pipeline/types.js';

const AXFR = 252;
const IXFR = 251;

const RESULT_OF: Record<number, Result> = { [RCODE.FORMERR]: 'formerr', [RCODE.NOTIMP]: 'notimp', [RCODE.BADVERS]: 'formerr' };

export class ValidateStage implements Stage {
  readonly name = 'validate';

  constructor(private readonly policy: PolicyHolder) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    if (q.problem) return { wire: errorReply(q, q.problem), result: RESULT_OF[q.problem] ?? 'formerr' };
    // No open resolver: an open one is an amplification weapon (RFC 5358).
    if (!this.policy.current.clients.view(q.client).allowed) return { wire: errorReply(q, RCODE.REFUSED), result: 'refused' };
    // Zone transfers are between servers and authorities, not through a forwarder: a multi-message
    // AXFR stream could not be relayed as one reply anyway (RFC 5936 §2.2). Unbound refuses them too.
    if (q.qtype === AXFR || q.qtype === IXFR) return { wire: errorReply(q, RCODE.REFUSED), result: 'refused' };
    return next(q);
  }
}
