// listen.httpToken: the bearer token is kept in a file (mode 0600, outside
// the config), so the config can be shared and reviewed without it.
import { readFileSync } from 'node:fs';
import { SinkholeError } from '../errors.js';

export function readHttpToken(file: string): string {
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
