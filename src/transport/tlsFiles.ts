// The certificate and key of the DoT/DoH listeners (listen.tls). Read at
// start-up and again on SIGHUP, so a renewed certificate (certbot, an
// internal CA) is served without a restart; a bad pair is refused and the
// one in use stays.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

export interface TlsPaths {
  cert: string;
  key: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  context: tls.SecureContext;
  /** DNS names of the certificate (subjectAltName), for DDR's TargetName. */
  names: string[];
}

/** Reads and checks the pair; an error message saying what is wrong otherwise. */
export function loadTlsFiles(paths: TlsPaths): TlsMaterial | string {
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(paths.cert);
  } catch (e) {
    return `cannot read certificate ${paths.cert}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  }
  try {
    key = readFileSync(paths.key);
  } catch (e) {
    return `cannot read key ${paths.key}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    return `${paths.cert} holds no PEM certificate: ${(e as Error).message}`;
  }
  let context: tls.SecureContext;
  try {
    // Fails when the key does not belong to the certificate, or is not a key at all.
    context = tls.createSecureContext({ cert, key });
  } catch (e) {
    return `${paths.cert} and ${paths.key} are not a certificate and its key: ${(e as Error).message}`;
  }
  return { cert, key, context, names: dnsNames(x509) };
}

function dnsNames(x509: X509Certificate): string[] {
  return (x509.subjectAltName ?? '')
    .split(', ')
    .filter((n) => n.startsWith('DNS:'))
    .map((n) => n.slice(4).toLowerCase())
    .filter((n) => !n.startsWith('*.'));
}

/**
 * The pair in force, shared by every DoT and DoH server. `reload()` reads the
 * files again (SIGHUP) and gives every server the new pair; a broken pair is
 * reported and the old one keeps serving.
 */
export class Certificate {
  private readonly servers = new Set<tls.Server>();

  constructor(
    readonly paths: TlsPaths,
    public current: TlsMaterial,
  ) {}

  /** Loads the pair or throws the problem (start-up: config validation has already read it once). */
  static load(paths: TlsPaths): Certificate {
    const m = loadTlsFiles(paths);
    if (typeof m === 'string') throw new Error(m);
    return new Certificate(paths, m);
  }

  /** The server starts with the current pair and gets every reloaded one. */
  attach(server: tls.Server): void {
    this.servers.add(server);
    server.once('close', () => this.servers.delete(server));
  }

  /** Re-reads the files: the new pair applies to new connections; undefined, or why it was refused. */
  reload(): string | undefined {
    const m = loadTlsFiles(this.paths);
    if (typeof m === 'string') return m;
    this.current = m;
    for (const s of this.servers) s.setSecureContext({ cert: m.cert, key: m.key });
    return undefined;
  }
}
