// What every command prints: file paths relative to where it runs, and one line per problem, its
// SH_* code first (docs/errors.md).
import { relative } from 'node:path';
import { PolicyError, SinkholeError, formatProblem, type Problem } from '../errors.js';

export function shortPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel.startsWith('..') ? file : rel;
}

/** One error line: its code first, then where and what (docs/errors.md). */
export function problemLine(p: Problem): string {
  return `${p.code} ${formatProblem({ ...p, file: shortPath(p.file) })}`;
}

/** Every error line starts with its SH_* code (docs/errors.md); no stack traces. */
export function reportError(e: unknown): number {
  if (e instanceof PolicyError) {
    for (const p of e.problems) process.stderr.write(`${problemLine(p)}\n`);
    return 2;
  }
  if (e instanceof SinkholeError) {
    process.stderr.write(`${e.code} ${e.message}\n`);
    return e.code === 'SH_LISTEN' ? 1 : 2;
  }
  process.stderr.write(`SH_INTERNAL unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
  return 2;
}
