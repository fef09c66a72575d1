// CHAOS-class queries, answered locally (never forwarded). A local answerer
// of stages/localAnswers.ts.
import { CLASS_CH, RCODE, TYPE } from '../dns/constants.js';
import { characterString, record } from '../dns/localRecord.js';
import { buildReply, errorReply } from '../dns/reply.js';
import type { PolicyHolder } from '../policy/holder.js';
import type { LocalAnswerer } from './localAnswers.js';

/** The CHAOS names servers answer about themselves (RFC 4892 §2 and BIND's version.bind). */
const CHAOS_NAMES = new Set(['version.bind', 'version.server', 'hostname.bind', 'id.server']);

/**
 * CHAOS-class queries (version.bind, hostname.bind, id.server) are about the
 * server that answers them. Forwarded, they would hand out the upstream's
 * identity; here they get REFUSED, or the `chaos` string from the config as
 * a TXT record, the way Unbound's hide-version / version do. Never forwarded.
 */
export function chaosAnswerer(policy: PolicyHolder): LocalAnswerer {
  return {
    answer(q) {
      if (q.qclass !== CLASS_CH) return undefined;
      const text = policy.current.config.chaos;
      if (text === undefined || (q.qtype !== TYPE.TXT && q.qtype !== TYPE.ANY) || !CHAOS_NAMES.has(q.qname)) {
        return { wire: errorReply(q, RCODE.REFUSED), result: 'refused' };
      }
      const body = { bytes: record(TYPE.TXT, CLASS_CH, 0, characterString(text)), an: 1, ns: 0 };
      return { wire: buildReply(q, RCODE.NOERROR, body), result: 'local' };
    },
  };
}
