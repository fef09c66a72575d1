// Stage 3b, right after validate: questions sinkhole answers itself. They
// never reach the cache or an upstream (DESIGN.md §2 "local answers"). The
// stage is a small table of answerers, tried in order; each one either
// answers or says nothing, and the query goes on when none answered.
import { CLASS_ANY, CLASS_CH, CLASS_IN, RCODE, TYPE } from '../dns/constants.js';
import { buildReply, errorReply } from '../dns/reply.js';
import type { Query } from '../dns/query.js';
import type { PolicyHolder } from '../policy/holder.js';
import type { Handler, Outcome, Stage } from '../pipeline/types.js';

export interface LocalAnswerer {
  /** Short name, for the table in app.ts. */
  readonly name: string;
  /** The answer, or undefined when this answerer has nothing to say about the query (the common case: one compare). */
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

/** One record whose owner is the question name (a pointer to offset 12, RFC 1035 §4.1.4). */
function record(type: number, klass: number, ttl: number, rdata: Buffer): Buffer {
  const b = Buffer.alloc(12 + rdata.length);
  b.writeUInt16BE(0xc00c, 0);
  b.writeUInt16BE(type, 2);
  b.writeUInt16BE(klass, 4);
  b.writeUInt32BE(ttl, 6);
  b.writeUInt16BE(rdata.length, 10);
  rdata.copy(b, 12);
  return b;
}

/** RFC 1035 §3.3: a character-string is one length byte and up to 255 bytes. */
function characterString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

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
    name: 'any (RFC 8482)',
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
    name: 'chaos',
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
