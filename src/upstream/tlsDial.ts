// Opening a verified TLS connection to an encrypted upstream (RFC 7858 §4.2,
// RFC 8310 §5 "Strict Privacy"): SNI and certificate verification against the
// authentication name, optional SPKI pins, a bounded handshake, and session
// resumption only where it cannot skip a check.
import { createHash, X509Certificate } from 'node:crypto';
import tls, { type PeerCertificate, type DetailedPeerCertificate } from 'node:tls';
import { isIP } from 'node:net';
import { UpstreamError } from './exchange.js';

export interface TlsTrust {
  /** CA certificates (PEM) that may vouch for an upstream. */
  ca: string | string[];
  /** Base64 SHA-256 digests of SubjectPublicKeyInfo (RFC 7469 §2.4); empty = no pinning. */
  pins: readonly string[];
}

export interface DialTarget {
  /** IP address to connect to: upstreams never need DNS to be reached. */
  host: string;
  port: number;
  /** The name the certificate must carry, sent as SNI; undefined = the certificate must name the IP. */
  authName?: string;
  alpn: string[];
}

/** The last session ticket of a good connection, offered on the next one (RFC 8446 §2.2). */
export interface SessionStore {
  session?: Buffer;
}

let systemCa: string[] | undefined;

/**
 * The operating system's trust store (Debian: /etc/ssl/certs), as the issue
 * asks; Node's bundled Mozilla list when the system has none (a slim container).
 */
export function systemTrust(): string[] {
  if (!systemCa) {
    const sys = tls.getCACertificates('system');
    systemCa = sys.length ? [...sys] : [...tls.getCACertificates('bundled')];
  }
  return systemCa;
}

/** RFC 7469 §2.4: base64(SHA-256(SubjectPublicKeyInfo DER)). Node's `cert.pubkey` is the bare key, not the SPKI. */
export function spkiPin(cert: PeerCertificate): string {
  const spki = new X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

/** True when a certificate of the chain the server presented has a pinned key (RFC 7469 §2.6). */
function chainMatches(leaf: DetailedPeerCertificate, pins: readonly string[]): boolean {
  const seen = new Set<DetailedPeerCertificate>();
  for (let c: DetailedPeerCertificate | undefined = leaf; c?.raw && !seen.has(c); c = c.issuerCertificate) {
    seen.add(c);
    if (pins.includes(spkiPin(c))) return true;
  }
  return false;
}

/**
 * Connects and completes a verified handshake within `timeoutMs`, or rejects
 * with an UpstreamError. Nothing may be written before this resolves: a
 * query sent to a server that then fails its pin would already be disclosed.
 *
 * Node skips checkServerIdentity on a resumed session, and a resumed TLS 1.3
 * session carries no peer certificate to pin against. So with pins, no
 * session is offered or stored, and the pin is checked here, on the
 * 'secureConnect' of every connection: a resumed one fails closed.
 */
export function dialTls(target: DialTarget, trust: TlsTrust, timeoutMs: number, sessions?: SessionStore): Promise<tls.TLSSocket> {
  const pinned = trust.pins.length > 0;
  const verifyAs = target.authName ?? target.host;
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: target.host,
      port: target.port,
      // RFC 6066 §3: SNI carries a host name, never an address.
      servername: target.authName && !isIP(target.authName) ? target.authName : undefined,
      ca: trust.ca,
      rejectUnauthorized: true,
      ALPNProtocols: target.alpn,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(verifyAs, cert),
      session: pinned ? undefined : sessions?.session,
    });
    sock.setNoDelay(true);
    let done = false;
    let verified = false;
    // A TLS 1.3 ticket may be read in the same flight as the handshake, before 'secureConnect':
    // listen from the start, and keep tickets only from a connection that passed every check.
    let ticket: Buffer | undefined;
    if (sessions && !pinned) {
      sock.on('session', (s: Buffer) => {
        if (verified) sessions.session = s;
        else ticket = s;
      });
    }
    const fail = (message: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      reject(new UpstreamError('error', message));
    };
    const where = `${target.host}:${target.port}${target.authName ? `#${target.authName}` : ''}`;
    const timer = setTimeout(() => fail(`TLS handshake with ${where} took over ${timeoutMs}ms`), timeoutMs);
    timer.unref();
    sock.once('secureConnect', () => {
      if (pinned) {
        if (sock.isSessionReused()) return fail(`TLS session with ${where} was resumed; a pinned upstream needs a full handshake`);
        if (!chainMatches(sock.getPeerCertificate(true), trust.pins)) return fail(`no certificate of ${where} matches upstreams.tls.pins`);
      }
      if (done) return;
      done = true;
      verified = true;
      if (sessions && ticket) sessions.session = ticket;
      clearTimeout(timer);
      sock.off('error', onError);
      sock.off('close', onClose);
      sock.on('error', () => {}); // until the caller's own listeners take over
      resolve(sock);
    });
    const onError = (e: Error): void => fail(`TLS with ${where}: ${e.message}`);
    const onClose = (): void => fail(`${where} closed the connection during the TLS handshake`);
    sock.once('error', onError);
    sock.once('close', onClose);
  });
}
