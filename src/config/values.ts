// Values that several config sections read (config.ts and its section modules, e.g. rpzExport.ts):
// addresses, domain names, readable files and TSIG keys. Below every section, so that sections can
// use them without importing config.ts (no cycle).
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { parseSecret, type TsigKey } from '../dns/tsig.js';
import type { YamlReader, YNode } from './yamlReader.js';

export interface Endpoint {
  host: string;
  port: number;
}

/** A TSIG key (RFC 8945): its name, algorithm, and the file holding its base64 secret (as tsig-keygen prints it). */
export interface TsigConfig {
  name: string;
  algorithm: 'hmac-sha256';
  secretFile: string;
}

export function parseEndpoint(text: string): Endpoint | string {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!m || !isIP(m[1]!)) return `expected "address:port" like 127.0.0.1:1053 or [::1]:1053, got "${text}"`;
  const port = Number(m[2]);
  if (port > 65535) return `port must be 0 to 65535, got ${port}`;
  return { host: m[1]!, port };
}

export function normalizeDomain(name: string): string {
  const d = name.trim().toLowerCase().replace(/\.$/, '');
  if (d.length === 0 || d.length > 253) return '';
  for (const label of d.split('.')) if (!/^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label)) return '';
  return d;
}

/** A file that must exist and be readable now, so `validate` says so at file:line:col rather than the first delivery. */
export function readableFile(r: YamlReader, v: YNode, q: string, dir: string): string | undefined {
  const text = r.string(v, q);
  const f = text === undefined ? undefined : resolve(dir, text);
  if (f === undefined) return undefined;
  try {
    accessSync(f, fsConstants.R_OK);
    return f;
  } catch (e) {
    return r.fail(v, q, `cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** tsig: { name, algorithm: hmac-sha256, secretFile } (RFC 8945 §6: HMAC-SHA256 is the one to implement). */
export function readTsig(r: YamlReader, node: YNode, path: string, dir: string): TsigConfig | undefined {
  const k: Partial<TsigConfig> = { algorithm: 'hmac-sha256' };
  r.map(node, path, {
    name: (v, q) => {
      const n = r.string(v, q);
      const name = n === undefined ? '' : normalizeDomain(n);
      if (!name) r.fail(v, q, `expected the key's name, like feed-key, got "${n}"`);
      else k.name = name;
    },
    algorithm: (v, q) => (k.algorithm = r.oneOf(v, q, ['hmac-sha256'] as const) ?? k.algorithm),
    secretFile: (v, q) => {
      const f = readableFile(r, v, q, dir);
      if (f === undefined) return;
      const secret = parseSecret(readFileSync(f, 'utf8'));
      if (typeof secret === 'string') r.fail(v, q, `${f}: ${secret}`);
      else k.secretFile = f;
    },
  });
  if (k.name && k.secretFile) return k as TsigConfig;
  if (!r.problems.length) r.fail(node, path, 'expected { name: KEY, algorithm: hmac-sha256, secretFile: FILE }');
  return undefined;
}

export interface SourceRef {
  file: string;
  line: number;
  col: number;
}

/** A path from the config, relative to the config's folder. */
export function resolvePath(dir: string, file: string | undefined): string | undefined {
  return file === undefined ? undefined : resolve(dir, file);
}

/** A log target: a path relative to the config's folder, or - (stdout). */
export function resolveOptional(dir: string, file: string | undefined): string | undefined {
  if (file === undefined || file === '-' || file === 'stdout') return file === undefined ? undefined : '-';
  return resolve(dir, file);
}

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** A TSIG secret from its file (base64, as tsig-keygen prints it); throws naming the file when it is not one. */
export function readTsigSecret(file: string): Buffer {
  const secret = parseSecret(readFileSync(file, 'utf8'));
  if (typeof secret === 'string') throw new Error(`${file}: ${secret}`);
  return secret;
}

/** The key a TsigConfig names, its secret read from its file now. */
export function tsigKeyOf(cfg: TsigConfig): TsigKey {
  return { name: cfg.name, algorithm: cfg.algorithm, secret: readTsigSecret(cfg.secretFile) };
}

/** `credential:NAME` names $CREDENTIALS_DIRECTORY/NAME, which systemd fills from the unit's LoadCredential=NAME:PATH. */
export const CREDENTIAL_PREFIX = 'credential:';

/** Why NAME cannot be a credential name (systemd's rule: a file name), or undefined. */
export function credentialNameProblem(name: string): string | undefined {
  if (!name) return 'expected credential:NAME, the NAME of the unit\'s LoadCredential=NAME:PATH';
  if (name.includes('/') || name.includes('\0') || name === '.' || name === '..' || name.length > 255) {
    return `credential name "${name}" must be a file name (no "/"), as in LoadCredential=NAME:PATH`;
  }
  return undefined;
}

/** The lease file formats identity.leases[].format accepts (identity/leaseFormats.ts reads each). */
export const LEASE_FORMATS = ['kea-csv', 'dnsmasq', 'dhcpd', 'csv'] as const;
export type LeaseFormat = (typeof LEASE_FORMATS)[number];
