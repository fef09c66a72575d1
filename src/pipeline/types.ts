// The request path: stages run outermost first; each returns an Outcome or
// calls next(). A stage never writes to a socket: the transport writes the
// one reply. Blocked and cached answers are decided synchronously (a plain
// Outcome); only forwarding returns a Promise (docs/design.md §2).
import type { ScannedReply } from '../dns/message.js';
import type { Query } from '../dns/query.js';

/** Metrics-safe reason for a reply: a fixed set, used as the `result` label. */
export type Result =
  | 'blocked' | 'excepted' | 'cached' | 'forwarded' | 'refused' | 'formerr' | 'notimp' | 'servfail' | 'stale' | 'ratelimited' | 'local'
  | 'badvers';

/**
 * `local`: answered by sinkhole itself (stages/localAnswers.ts), never forwarded or cached.
 * `badvers`: an EDNS version other than 0 (RFC 6891 §6.1.3), whose rcode is 16.
 */
export const RESULTS: readonly Result[] = ['blocked', 'excepted', 'cached', 'forwarded', 'refused', 'formerr', 'notimp', 'servfail', 'stale', 'ratelimited', 'local', 'badvers'];

export interface Outcome {
  /** The reply, with the client's ID; the transport only truncates it when it is too big for UDP. */
  wire: Buffer;
  result: Result;
  /** The full rcode when it does not fit the header's four bits (BADVERS = 16 lives partly in OPT, RFC 6891 §6.1.3). */
  rcode?: number;
  /** For blocked/excepted: the list that matched. */
  list?: string;
  /** For blocked/excepted: the matched rule as written, e.g. "tiktok.com". */
  rule?: string;
  /** For excepted: the exception id. */
  exception?: string;
  /** For answers from upstream (cached or not): names the answer points at (CNAME, HTTPS targets). */
  targets?: readonly string[];
  /** Set when a blocked or excepted verdict came from a CNAME/HTTPS target, not the qname itself. */
  viaTarget?: string;
  /**
   * For a SERVFAIL no upstream caused (upstreams.maxInflight, a query that could not be sent): the
   * cache must not remember it for the name, or one client's query would fail it for everyone.
   */
  local?: boolean;
  /** For a fresh upstream reply: what the cache needs to store it. */
  scan?: ScannedReply;
  /** The client was over clients.rateLimit: what was done (dryrun: nothing, only counted; drop: no reply, wire is NO_REPLY). */
  limited?: 'truncate' | 'refuse' | 'drop' | 'dryrun';
  /** Set when a trusted relay's ECS/MAC option named the client (stages/relay.ts): who the logs and report record. */
  relayed?: { client: string; mac: string | undefined };
}

/** An Outcome's wire when nothing is sent back (a rate-limited UDP query dropped by `slip`); transports send nothing. */
export const NO_REPLY: Buffer = Buffer.alloc(0);

export type Handler = (q: Query) => Outcome | Promise<Outcome>;

export interface Stage {
  /** Short name for logs and the composition table in app.ts. */
  readonly name: string;
  handle(q: Query, next: Handler): Outcome | Promise<Outcome>;
}

/**
 * Links the stages once at start-up: each stage gets its successor as a
 * prebuilt function, so a query allocates no closure per stage.
 */
export function compose(stages: readonly Stage[], terminal: Handler): Handler {
  let next = terminal;
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i]!;
    const inner = next;
    next = (q) => stage.handle(q, inner);
  }
  return next;
}

export function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown }).then === 'function';
}
