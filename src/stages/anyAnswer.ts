// ANY (RFC 8482), answered locally: one synthesised HINFO record instead of
// everything upstream knows, never forwarded. A local answerer of
// stages/localAnswers.ts.
import { CLASS_ANY, CLASS_IN, RCODE, TYPE } from '../dns/constants.js';
import { characterString, record } from '../dns/localRecord.js';
import { buildReply } from '../dns/reply.js';
import type { Query } from '../dns/query.js';
import type { Outcome } from '../pipeline/types.js';
import type { LocalAnswerer } from './localAnswers.js';

/**
 * RFC 8482 §4.2: ANY gets one synthesised HINFO record, CPU "RFC8482" and OS
 * "", instead of everything upstream knows. That closes ANY as an
 * amplifier and as a way to list a name's records through us. The record
 * never changes, so clients may keep it an hour.
 */
const HINFO_TTL = 3600;
const HINFO_RDATA = Buffer.concat([characterString('RFC8482'), characterString('')]);
const HINFO_IN = { bytes: record(TYPE.HINFO, CLASS_IN, HINFO_TTL, HINFO_RDATA), an: 1, ns: 0 };

/**
 * ANY, answered here. The policy comes first: a blocked name still gets the
 * sinkhole answer (`blocked` is the blocklist stage's own check), so ANY is
 * no way around the block either.
 */
export function anyAnswerer(blocked: (q: Query) => Outcome | undefined): LocalAnswerer {
  return {
    answer(q) {
      if (q.qtype !== TYPE.ANY) return undefined;
      const sinkholed = blocked(q);
      if (sinkholed) return sinkholed;
      // A record's class is never ANY: for QCLASS * the record is IN, the class everyone means.
      const body = q.qclass === CLASS_IN || q.qclass === CLASS_ANY ? HINFO_IN : { ...HINFO_IN, bytes: record(TYPE.HINFO, q.qclass, HINFO_TTL, HINFO_RDATA) };
      return { wire: buildReply(q, RCODE.NOERROR, body), result: 'local' };
    },
  };
}

