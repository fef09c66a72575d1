// listen.httpToken: the bearer token is kept in a file (mode 0600, outside
// the config), so the config can be shared and reviewed without it. Under
// systemd the file is handed over as a credential (credential:NAME), since the
// unit's dynamic user cannot read a root-only file itself.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SinkholeError } from '../errors.js';
import { CREDENTIAL_PREFIX } from '../config/values.js';

/** The file a listen.httpToken value names: itself, or for credential:NAME the credential's file. */
export function httpTokenFile(value: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!value.startsWith(CREDENTIAL_PREFIX)) return value;
  const name = value.slice(CREDENTIAL_PREFIX.length);
  const dir = env.CREDENTIALS_DIRECTORY;
  if (!dir) {
    throw new SinkholeError(
      'SH_HTTP_TOKEN',
      `listen.httpToken: ${value} needs $CREDENTIALS_DIRECTORY, which systemd sets for a unit with LoadCredential=${name}:PATH; ` +
        `it is unset (outside the unit, set it to the folder holding ${name})`,
    );
  }
  return join(dir, name);
}

export function readHttpToken(value: string, env: NodeJS.ProcessEnv = process.env): string {
  const file = httpTokenFile(value, env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new SinkholeError('SH_HTTP_TOKEN', `listen.httpToken: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const token = text.trim();
  // A short token is guessable; an empty one would be no token at all.
  if (token.length < 16 || /\s/.test(token)) {
    throw new SinkholeError('SH_HTTP_TOKEN', `listen.httpToken: ${file} must hold one token of at least 16 characters and no spaces`);
  }
  return token;
}
