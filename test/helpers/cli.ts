// Runs a Node script (usually the built CLI) as a child process and keeps what it said and how it exited.
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'cli.js');

export interface Ran {
  status: number;
  stdout: string;
  stderr: string;
}

/** `node ARGS…` on the test's own runtime; a non-zero exit is a result, not an error. */
export async function runNode(args: string[]): Promise<Ran> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, args, { encoding: 'utf8' });
    return { status: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { status: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** `sinkhole ARGS…` from dist/. */
export function runCli(args: string[]): Promise<Ran> {
  return runNode([CLI, ...args]);
}
