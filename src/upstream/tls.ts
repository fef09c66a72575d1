// DNS over TLS to an upstream (RFC 7858), written `tls://IP[:853]#name`: the
// pipelined connection pool of stream.ts over verified TLS connections
// (tlsDial.ts: SNI, certificate, pins, a bounded handshake), with EDNS padding
// (RFC 8467). The pool's sizes and re-dial rules are in stream.ts.
import { StreamUpstream, type StreamOptions } from './stream.js';
import { dialTls, type DialTarget, type SessionStore, type TlsTrust } from './tlsDial.js';
import { rateLimitedWarn, type TransportContext } from './transport.js';

export { CONNECTIONS, IDLE_MS, PIPELINE } from './stream.js';
export type DotOptions = StreamOptions;

export class DotUpstream extends StreamUpstream {
  constructor(target: DialTarget, trust: TlsTrust, ctx: TransportContext, opts: DotOptions = {}) {
    // The last session of a good connection, offered on the next (never when pinned: tlsDial.ts).
    const sessions: SessionStore = {};
    super(
      { name: 'DoT', pad: true, dial: () => dialTls(target, trust, ctx.handshakeTimeoutMs, sessions), warn: rateLimitedWarn(ctx) },
      ctx,
      opts,
    );
  }
}
