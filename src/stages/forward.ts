// Stage 7, the terminal one: sends the query upstream and checks what comes
// back. Raw bytes go up and come back; the reply is only scanned, never
// re-encoded (DESIGN.md "Forward raw bytes").
import { RCODE } from '../dns/constants.js';
import { scanReply } from '../dns/message.js';
import { errorReply } from '../dns/reply.js';
import type { Query } from '../dns/query.js';
import type { Outcome } from '../pipeline/types.js';
import type { Forwarder } from '../upstream/forwarder.js';

export function forwardHandler(forwarder: () => Forwarder): (q: Query) => Promise<Outcome> {
  return async (q) => {
    const reply = await forwarder().forward(q);
    const scan = reply && scanReply(reply);
    // Every upstream failed, timed out, or sent something unreadable: SERVFAIL (RFC 1035 §4.1.1).
    if (!reply || !scan) return { wire: errorReply(q, RCODE.SERVFAIL), result: 'servfail' };
    return { wire: reply, result: 'forwarded', targets: scan.targets, scan };
  };
}
