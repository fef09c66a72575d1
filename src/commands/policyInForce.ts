// The policy `check` and `exceptions` answer from: the files on disk when they compile, else the last
// good policy a running sinkhole keeps serving, with a note that says so.
import { existsSync } from 'node:fs';
import { PolicyError } from '../errors.js';
import { buildGeneration, hydrate, type Generation } from '../policy/generation.js';
import { lastGood } from '../state/lastGood.js';
import { shortPath, problemLine } from './output.js';

/**
 * The policy a running sinkhole enforces for this config: its files when they compile, else the
 * last good policy it saved (a running server keeps serving it until they compile). `note` then
 * says so, with the problems of the files on disk, so that an admin can still ask what is in force
 * while an edit is broken (issue 18).
 */
export function policyInForce(configFile: string): { g: Generation; note?: string[] } {
  try {
    return { g: buildGeneration(configFile, 1) };
  } catch (e) {
    if (!(e instanceof PolicyError) || !existsSync(configFile)) throw e;
    const fallback = lastGood(configFile);
    if (fallback.kind !== 'snapshot') throw e;
    const m = fallback.manifest;
    const note = [
      `note: the files on disk do not compile; answering from the last good policy (generation ${m.generation}, saved ${m.takenAt} in ${shortPath(fallback.dir)}), which a running sinkhole keeps serving:`,
      ...e.problems.map((p) => `  ${problemLine(p)}`),
    ];
    return { g: hydrate(fallback.data, m.generation), note };
  }
}

/** The note goes first: on stdout before the answer, or on stderr when stdout is JSON. */
export function printNote(note: string[] | undefined, json: boolean): void {
  if (note) (json ? process.stderr : process.stdout).write(`${note.join('\n')}\n`);
}
