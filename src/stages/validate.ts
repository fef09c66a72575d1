// The validate stage (pipeline/chain.ts). Malformed or unsupported queries, and clients outside
// clients.allowFrom, are answered here, before any policy or upstream work.
import { RCODE, TYPE } from '../dns/constants.js';
import { bareErrorReply, errorReply } from '../dns/reply.js';
import { OPCODE_NOTIFY, type Query } from '../dns/query.js';
import type { PolicyHolder } from '../policy/holder.js';
import { RpzFeeds } from '../policy/rpz/feed.js';
import type { Handler, Outcome, Stage } from '../pipeline/types.js';

/**
 * What a query type in the question calls for, before anything else looks at it:
 * 0 (go on), or the rcode to answer with. Indexed by qtype, filled once.
 */
const QTYPE_VERDICT = new Uint8Array(65536);
// RFC 6895 §3.1: type 0 is reserved and OPT is a pseudo-record (RFC 6891 §6.1.1):
// neither can be asked for, so the question itself is malformed.
QTYPE_VERDICT[0] = RCODE.FORMERR;
QTYPE_VERDICT[TYPE.OPT] = RCODE.FORMERR;
// RFC 6895 §3.1: 128-255 are meta-types and QTYPEs. A forwarder has nothing to ask
// upstream for TKEY, TSIG, MAILA, MAILB or the unassigned ones: NOTIMP, as Unbound refuses
// them too. ANY (255) is answered locally (RFC 8482, stages/localAnswers.ts).
for (let qtype = 128; qtype < TYPE.ANY; qtype++) QTYPE_VERDICT[qtype] = RCODE.NOTIMP;
// Zone transfers are between servers and authorities, not through a forwarder: a multi-message
// AXFR stream could not be relayed as one reply anyway (RFC 5936 §2.2). Unbound refuses them too.
QTYPE_VERDICT[TYPE.AXFR] = RCODE.REFUSED;
QTYPE_VERDICT[TYPE.IXFR] = RCODE.REFUSED;

export class ValidateStage implements Stage {
  readonly name = 'validate';

  constructor(
    private readonly policy: PolicyHolder,
    /** A NOTIFY this stage accepted: the main thread's RPZ feeds check the zone (policy/rpz/feed.ts). */
    private readonly onNotify: (zone: string, from: string) => void = () => {},
  ) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    // A well-formed NOTIFY is decoded with NOTIMP (dns/query.ts): only an RPZ primary's is taken.
    if (q.opcode === OPCODE_NOTIFY && q.problem === RCODE.NOTIMP) return this.notify(q);
    if (q.problem) return problemReply(q);
    // No open resolver: an open one is an amplification weapon (RFC 5358).
    if (!this.policy.current.clients.view(q.client).allowed) return { wire: errorReply(q, RCODE.REFUSED), result: 'refused' };
    const verdict = QTYPE_VERDICT[q.qtype]!;
    if (verdict === RCODE.REFUSED) return { wire: errorReply(q, RCODE.REFUSED), result: 'refused' };
    if (verdict === RCODE.NOTIMP) return { wire: bareErrorReply(q, RCODE.NOTIMP), result: 'notimp' };
    if (verdict === RCODE.FORMERR) return { wire: bareErrorReply(q, RCODE.FORMERR), result: 'formerr' };
    return next(q);
  }

  /**
   * A NOTIFY (RFC 1996 §3.7) for an RPZ zone pulled from the address it came from (signed by its key,
   * when tsig: is set): answered NOERROR with AA (signed in turn), and the zone is checked at once. From anyone else, or for another zone: REFUSED, and
   * nothing happens (the check it would start is itself a TCP exchange with the configured primary).
   */
  private notify(q: Query): Outcome {
    const taken = q.qtype === TYPE.SOA && RpzFeeds.accepts(this.policy.current.config.blocking.rpz, q.qname, q.client, q.buf);
    if (!taken) return { wire: bareErrorReply(q, RCODE.REFUSED), result: 'refused' };
    this.onNotify(q.qname, q.client);
    const wire = bareErrorReply(q, RCODE.NOERROR);
    wire[2] = wire[2]! | FLAG_AA;
    return { wire: taken.sign ? taken.sign(wire) : wire, result: 'local' };
  }
}

const FLAG_AA = 0x04;

function problemReply(q: Query): Outcome {
  // BADVERS is the one reply here that needs its OPT (the upper rcode bits live there).
  if (q.problem === RCODE.BADVERS) return { wire: errorReply(q, RCODE.BADVERS), result: 'badvers', rcode: RCODE.BADVERS };
  if (q.problem === RCODE.NOTIMP) return { wire: bareErrorReply(q, RCODE.NOTIMP), result: 'notimp' };
  return { wire: bareErrorReply(q, RCODE.FORMERR), result: 'formerr' };
}
