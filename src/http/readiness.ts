// /readyz's body while sinkhole answers but something is degraded: the policy in force came from the
// last good snapshot, or the last reload was rejected. Each note names the problems at file:line:col.
import type { Generation } from '../policy/generation.js';

/** A reload whose files did not compile: the generation in force stays, and /readyz says why (issue 18). */
export function rejectedNote(problems: readonly string[], generation: number): string | undefined {
  if (!problems.length) return undefined;
  const shown = problems.slice(0, 10).map((p) => `  ${p}`);
  const more = problems.length > 10 ? [`  … and ${problems.length - 10} more`] : [];
  return `last reload rejected, generation ${generation} stays in force until the files on disk compile:\n${[...shown, ...more].join('\n')}`;
}

/** /readyz's note while the policy in force came from the last good snapshot. */
export function degradedNote(g: Generation): string | undefined {
  if (!g.degraded) return undefined;
  return `serving the last good policy saved ${g.degraded.snapshotTakenAt} because the files on disk do not compile:\n${g.degraded.problems.map((p) => `  ${p}`).join('\n')}`;
}
