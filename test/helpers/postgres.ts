// A real PostgreSQL (Debian's postgresql 15) for the report-store tests,
// started by the test itself in a temporary folder, listening on 127.0.0.1
// only, on a port the kernel picked, with fsync off. initdb refuses to run
// as root, so as root (CI) the server runs as the `postgres` user.
import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const BIN = '/usr/lib/postgresql/15/bin';
const exec = promisify(execFile);

export interface Postgres {
  url: string;
  port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface TapLike {
  teardown(fn: () => unknown): void;
}

/** What the PostgreSQL tests need (for helpers/requires.ts skipUnless): the server's binaries. */
export const POSTGRES_NEEDS = { [join(BIN, 'initdb')]: 'postgresql-15', [join(BIN, 'pg_ctl')]: 'postgresql-15' };


export async function startPostgres(t: TapLike): Promise<Postgres> {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-pg-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { stdout } = await exec('id', ['-u', 'postgres']);
    const { stdout: gid } = await exec('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const run = (cmd: string, args: string[]): Promise<{ stdout: string }> =>
    asRoot ? exec('runuser', ['-u', 'postgres', '--', join(BIN, cmd), ...args], { cwd: dir }) : exec(join(BIN, cmd), args, { cwd: dir });
  const data = join(dir, 'data');
  await run('initdb', ['-D', data, '-A', 'trust', '-U', 'sinkhole', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const pg: Postgres = {
    url: `postgres://sinkhole@127.0.0.1:${port}/postgres`,
    port,
    start: async () => {
      const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
      await run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-o', opts, '-w', '-t', '30', 'start']);
    },
    stop: async () => {
      await run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']);
    },
  };
  await pg.start();
  t.teardown(async () => {
    await pg.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  return pg;
}
