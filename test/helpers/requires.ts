// Tests that run real software nobody here wrote (unbound, dnsdist, PostgreSQL,
// a browser) say what they need. On a bare machine (Node and npm only) a
// program that no npm package can bring is missing, and its test is skipped
// with a reason naming the Debian package that brings it; the skip is never
// silent. CI installs every peer and sets SINKHOLE_REQUIRE_PEERS=1, under which
// a missing program fails the test instead: CI never passes with a peer absent.
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Whether `program` is an executable on PATH (or an absolute path that exists). */
export function onPath(program: string): boolean {
  if (program.startsWith('/')) return existsSync(program);
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, program), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

export const peersRequired = (): boolean => process.env.SINKHOLE_REQUIRE_PEERS === '1';

/**
 * tap's `skip` option for a test that needs these programs: false when all are
 * there (or when SINKHOLE_REQUIRE_PEERS=1, so the test runs and fails on the
 * missing one), else the reason, e.g. "unbound not installed: apt-get install unbound".
 * `needs` maps a program (name or absolute path) to the Debian package that brings it.
 */
export function skipUnless(needs: Record<string, string>): string | false {
  const missing = Object.entries(needs).filter(([program]) => !onPath(program));
  if (missing.length === 0 || peersRequired()) return false;
  const programs = missing.map(([p]) => p.split('/').pop()).join(', ');
  const packages = [...new Set(missing.map(([, pkg]) => pkg))].join(' ');
  return `${programs} not installed: apt-get install ${packages}`;
}
