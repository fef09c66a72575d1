// DNS over TLS for clients (RFC 7858): the TCP listener (transport/tcp.ts)
// with a TLS server in place of the plain one, so DoT gets exactly its
// framing, pipelining, idle timeout and limits. Only how the server is made
// differs, and the `proto` label.
import tls from 'node:tls';
import type { StreamServerOptions } from './tcp.js';
import type { Certificate } from './tlsFiles.js';

/** A TLS handshake must finish within this (Node's default is 120 s: a cheap way to hold slots). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Node reports a handshake timeout or failure as 'tlsClientError' and leaves
 * the socket open (verified on Node 24): without this, a client that connects
 * and says nothing would hold its slot forever.
 */
export function dropFailedHandshakes(server: tls.Server): void {
  server.on('tlsClientError', (_e, sock) => sock.destroy());
}

export function dotServer(cert: Certificate, idleTimeoutMs: number): StreamServerOptions {
  return {
    proto: 'dot',
    // Slots are taken at accept, handshakes included (the TCP listener's per-client cap and eviction),
    // not by tls.Server.maxConnections, which refuses a newcomer before anything idle can give way.
    handshake: true,
    createServer: (onConnection) => {
      const server = tls.createServer(
        {
          cert: cert.current.cert,
          key: cert.current.key,
          // RFC 7858 §3.1 / IANA: "dot". A client that offers no ALPN is served too.
          ALPNProtocols: ['dot'],
          handshakeTimeout: Math.min(HANDSHAKE_TIMEOUT_MS, idleTimeoutMs),
          minVersion: 'TLSv1.2', // RFC 8310 §9 / RFC 7525
        },
        onConnection,
      );
      dropFailedHandshakes(server);
      cert.attach(server);
      return server;
    },
  };
}
