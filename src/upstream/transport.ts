// The one interface every encrypted upstream transport implements, so the
// forwarder dispatches on spec.transport with one call and keeps its rules
// (shared deadline, health, SERVFAIL) for all of them.
import type { Logger } from '../log.js';
import type { UpstreamStats } from '../metrics/stats.js';

export interface UpstreamTransport {
  /**
   * Sends the query (as the client sent it: the transport sets its own ID
   * and padding) and resolves with the upstream's reply, or rejects with an
   * UpstreamError, within `timeoutMs`. The reply's ID is the transport's:
   * the forwarder writes the client's back.
   */
  exchange(query: Buffer, qend: number, timeoutMs: number): Promise<Buffer>;
  /** Closes idle connections now, and the others once their queries are answered. */
  close(): void;
}

/** What every encrypted transport gets from the forwarder. */
export interface TransportContext {
  /** The bound on a TCP connect + TLS handshake: upstreams.timeout. */
  handshakeTimeoutMs: number;
  stats: UpstreamStats;
  log?: Logger;
  /** The upstream as configured, for messages. */
  label: string;
}

/** Logs a connection failure at most once per interval per upstream, so a dead upstream cannot flood the log. */
export function rateLimitedWarn(ctx: TransportContext, everyMs = 30_000): (message: string) => void {
  let last = -Infinity;
  return (message) => {
    const now = Date.now();
    if (now - last < everyMs) return;
    last = now;
    ctx.log?.warn('SH_UPSTREAM_TLS', 'encrypted upstream connection failed', { upstream: ctx.label, error: message });
  };
}
