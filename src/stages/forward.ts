// The forward handler, the end of the chain (pipeline/chain.ts): sends the query upstream and checks what comes
// back. Raw bytes go up and come back; the reply is only scanned, never
// re-encoded (docs/design.md §2 "Forward raw bytes").
import { RCODE } from '../dns/constants.js';
import { errorReply } from '../dns/reply.js';
import type { Query } from '../dns/query.js';
import type { Outcome } from '../pipeline/types.js';
import type { Accepted, Failed, Forwarder } from '../upstream/forwarder.js';
import type { CacheLimits } from '../cache/replyCache.js';
import { clampTtls } from '../cache/ttlLimits.js';

export function forwardHandler(forwarder: () => Forwarder, limits: () => CacheLimits): (q: Query) => Promise<Outcome> {
  // forwardThen, not `await forward()`: the outcome is made in the exchange's own step (issue 22).
  return (q) => forwarder().forwardThen(q, (reply) => outcomeOf(q, reply, limits));
}

function outcomeOf(q: Query, reply: Accepted | Failed, limits: () => CacheLimits): Outcome {
  // The forwarder has checked the whole reply (scanReply) before accepting it.
  // Every upstream failed, timed out, or sent something unreadable: SERVFAIL (RFC 1035 §4.1.1).
  // Or the query never left this host: SERVFAIL too, but the cache must not remember that one.
  if (!reply.wire) return { wire: errorReply(q, RCODE.SERVFAIL), result: 'servfail', ...(reply.local ? { local: true } : {}) };
  // TTLs are capped on the way out, fresh as well as cached.
  clampTtls(reply.wire, reply.scan, limits());
  return { wire: reply.wire, result: 'forwarded', targets: reply.scan.targets, scan: reply.scan };
}
