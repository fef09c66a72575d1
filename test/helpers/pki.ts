// A throwaway PKI for the encrypted-DNS tests, made with the openssl CLI (not
// with the code under test): a CA, a server certificate for dns.test and
// 127.0.0.1 signed by it, a certificate for another name signed by it, and a
// self-signed impostor for the same names. Pins are computed by openssl too,
// with the recipe of RFC 7469 Appendix A.
import { execFileSync, execSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pair {
  cert: string;
  key: string;
  certPem: string;
  keyPem: string;
  /** base64 SHA-256 of the SubjectPublicKeyInfo, as openssl computes it. */
  pin: string;
}

export interface Pki {
  dir: string;
  /** CA certificate file and PEM. */
  ca: string;
  caPem: string;
  caPin: string;
  /** dns.test, 127.0.0.1 and ::1, signed by the CA. */
  server: Pair;
  /** other.test only, signed by the CA: a valid certificate for the wrong name. */
  wrongName: Pair;
  /** dns.test and 127.0.0.1, self-signed: an impostor. */
  rogue: Pair;
  close(): void;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function pin(certFile: string): string {
  return execSync(`openssl x509 -in '${certFile}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`, {
    encoding: 'utf8',
  }).trim();
}

function pair(dir: string, name: string): Pair {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8'), pin: pin(cert) };
}

function signed(dir: string, name: string, san: string): Pair {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  execFileSync('openssl', ['req', ...EC, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`), '-subj', `/CN=${name}`], { stdio: 'ignore' });
  execFileSync('openssl', ['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial',
    '-out', join(dir, `${name}.pem`), '-days', '2', '-extfile', ext], { stdio: 'ignore' });
  return pair(dir, name);
}

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-pki-'));
  execFileSync('openssl', ['req', '-x509', ...EC, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '2', '-subj', '/CN=sinkhole test CA'], {
    stdio: 'ignore',
  });
  const server = signed(dir, 'server', 'DNS:dns.test,IP:127.0.0.1,IP:::1');
  const wrongName = signed(dir, 'other', 'DNS:other.test');
  execFileSync('openssl', ['req', '-x509', ...EC, '-keyout', join(dir, 'rogue.key'), '-out', join(dir, 'rogue.pem'), '-days', '2', '-subj', '/CN=dns.test',
    '-addext', 'subjectAltName=DNS:dns.test,IP:127.0.0.1'], { stdio: 'ignore' });
  const rogue = pair(dir, 'rogue');
  const ca = join(dir, 'ca.pem');
  return {
    dir, ca, caPem: readFileSync(ca, 'utf8'), caPin: pin(ca), server, wrongName, rogue,
    close: () => rmSync(dir, { recursive: true, force: true }),
  };
}
