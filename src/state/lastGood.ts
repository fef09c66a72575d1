// Start from the last good policy (issue 9). At start-up the files on disk
// are compiled as usual; when they do not compile and a snapshot of the last
// policy that did is in state.dir, that snapshot is compiled instead, under
// the files' real paths, and sinkhole serves in a "degraded" state until a
// fix on disk reloads. Only when there has never been a good policy does
// start-up fail (exit 2), as before.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { PolicyError, formatProblem, type Problem } from '../errors.js';
import type { Logger } from '../log.js';
import { compileFile, type PolicyData } from '../policy/generation.js';
import { RecordingSource } from '../config/sources.js';
import { readSnapshot, SnapshotSource, stateDirOf, type Manifest } from './snapshot.js';

export interface Starting {
  /** The policy to start with (its `degraded` is set when it came from the snapshot). */
  data: PolicyData;
  /** What it was compiled from, to snapshot; absent when it came from the snapshot. */
  inputs?: ReadonlyMap<string, Uint8Array>;
}

/** What a start-up with these files would do when they do not compile. */
export type Fallback =
  | { kind: 'snapshot'; data: PolicyData; manifest: Manifest; dir: string }
  | { kind: 'none'; reason: string }
  | { kind: 'unusable'; reason: string; problems: readonly Problem[] };

/** Compiles the last good snapshot for this config file, or says why there is none to start from. */
export function lastGood(configFile: string): Fallback {
  const dir = stateDirOf(configFile);
  const found = readSnapshot(dir);
  if ('missing' in found) return { kind: 'none', reason: found.missing };
  if ('broken' in found) return { kind: 'unusable', reason: found.broken, problems: [] };
  // A snapshot belongs to the config file it was saved from: two configs in one folder share a
  // state.dir, and a mistyped --config must never start from another file's policy (issue 18).
  const own = resolve(configFile);
  if (found.snapshot.manifest.config !== own) return { kind: 'none', reason: `the last good policy in ${dir} was saved for ${found.snapshot.manifest.config}, not ${own}` };
  try {
    const data = compileFile(configFile, new SnapshotSource(found.snapshot, configFile));
    return { kind: 'snapshot', data, manifest: found.snapshot.manifest, dir };
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    return { kind: 'unusable', reason: `the last good policy in ${dir} does not compile`, problems: e.problems };
  }
}

/**
 * The policy to start with: the files on disk, or else the last good
 * snapshot (degraded). Throws the disk's PolicyError when there is no
 * snapshot to fall back to.
 */
export function startingPolicy(configFile: string, log: Logger): Starting {
  const recording = new RecordingSource();
  let problems: readonly Problem[];
  try {
    return { data: compileFile(configFile, recording), inputs: recording.files };
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    problems = e.problems;
    // The last good policy is for files that exist and do not compile: a config file that is not
    // there at all is a mistake in the command line or the unit, and is an error (exit 2).
    if (!existsSync(configFile)) throw e;
    const fallback = lastGood(configFile);
    if (fallback.kind === 'none') throw e; // a first install with a broken config: nothing to serve
    if (fallback.kind === 'unusable') {
      log.warn('SH_STATE_INVALID', `${fallback.reason}; nothing to fall back to`, {});
      for (const p of fallback.problems) log.warn('SH_STATE_INVALID', `in the snapshot: ${formatProblem(p)}`, {});
      throw e;
    }
    const taken = fallback.manifest.takenAt;
    for (const p of problems) {
      log.error(p.code, `the files on disk do not compile; serving the last good policy saved ${taken}: ${formatProblem(p)}`, {});
    }
    log.warn('SH_POLICY_DEGRADED', 'serving the last good policy until the files on disk compile (they are watched, SIGHUP reloads)', {
      saved: taken, generation: fallback.manifest.generation, dir: fallback.dir,
    });
    const degraded = { snapshotTakenAt: taken, problems: problems.map(formatProblem) };
    return { data: { ...fallback.data, degraded } };
  }
}
