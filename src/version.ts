import { readFileSync } from 'node:fs';

/** The package version, for `sinkhole --version` and the sinkhole_build_info metric. */
export const VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();
