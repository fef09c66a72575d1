// The localAnswers stage, right after the rate limit (pipeline/chain.ts): queries sinkhole answers itself. They are
// never forwarded or cached, and no blocklist applies to them (docs/design.md §2
// "local answers"). One small table of answerers, asked in order; each owns
// a few names or types and says no to everything else with a comparison or
// two, so the stage costs next to nothing on the hot path.
//   - DDR, `_dns.resolver.arpa` (RFC 9462): stages/ddr.ts
//   - CHAOS class (version.bind, hostname.bind, id.server): stages/chaos.ts
//   - ANY (RFC 8482, HINFO "RFC8482"): stages/anyAnswer.ts; a blocked name still gets the sinkhole
import type { Query } from '../dns/query.js';
import type { Handler, Outcome, Stage } from '../pipeline/types.js';

export interface LocalAnswerer {
  /** The reply for a query this answerer owns; undefined for any other. */
  answer(q: Query): Outcome | undefined;
}

export class LocalAnswersStage implements Stage {
  readonly name = 'localAnswers';

  constructor(private readonly answerers: readonly LocalAnswerer[]) {}

  handle(q: Query, next: Handler): Outcome | Promise<Outcome> {
    for (let i = 0; i < this.answerers.length; i++) {
      const o = this.answerers[i]!.answer(q);
      if (o) return o;
    }
    return next(q);
  }
}
