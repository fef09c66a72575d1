import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The URL of a worker thread's entry module next to `base` (an import.meta.url).
 * - In dist/ (production): the compiled `.js` beside it.
 * - In src/ (the tests run the TypeScript source): the compiled twin in dist/ when dist/ is newer
 *   than every source file, because a thread that loads the TypeScript loader takes seconds to
 *   start on this machine where the compiled one takes tens of milliseconds (`npm test` builds
 *   first); otherwise the `.ts` itself (a worker inherits the parent's loader flags, so it can run
 *   the source, only slower).
 */
export function workerUrl(name: string, base: string): URL {
  const js = new URL(`./${name}.js`, base);
  if (existsSync(fileURLToPath(js))) return js;
  const ts = fileURLToPath(new URL(`./${name}.ts`, base));
  const m = /^(.*)\/src\/([^]*)\.ts$/.exec(ts);
  if (m) {
    const twin = `${m[1]}/dist/${m[2]}.js`;
    if (existsSync(twin) && statSync(twin).mtimeMs >= newestSource(`${m[1]}/src`)) return pathToFileURL(twin);
  }
  return pathToFileURL(ts);
}

const newest = new Map<string, number>();

/** The newest modification time of any file under `dir` (once per process). */
function newestSource(dir: string): number {
  let t = newest.get(dir);
  if (t === undefined) {
    t = 0;
    for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (e.isFile()) t = Math.max(t, statSync(join(e.parentPath, e.name)).mtimeMs);
    }
    newest.set(dir, t);
  }
  return t;
}
