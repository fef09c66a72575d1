import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The URL of a worker thread's entry module next to `base` (an import.meta.url): the compiled
 * `.js` in dist/, or the `.ts` source when running from src/ under the tests' TypeScript loader
 * (a worker inherits the parent's loader flags, so it can run the source too).
 */
export function workerUrl(name: string, base: string): URL {
  const js = new URL(`./${name}.js`, base);
  return existsSync(fileURLToPath(js)) ? js : new URL(`./${name}.ts`, base);
}
