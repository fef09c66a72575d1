// listen.tls: the certificate and key files, read and checked as a pair. Here,
// below transport/, so that `validate` can say a pair is wrong (config.ts) with
// the same check the DoT/DoH listeners make when they load it
// (transport/tlsFiles.ts, at start-up and on SIGHUP).
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

