// Starts sinkhole in this process on 127.0.0.1 port 0 with a config written
// to a temporary folder, against a fake upstream. Tears everything down with the test.
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Resolver } from 'node:dns/promises';
import { stringify } from 'yaml';
import { start, type Running } from '../../src/app.js';
import { silentLogger, type Logger } from '../../src/log.js';
import type { Clock } from '../../src/clock.js';

export interface Harness {
  running: Running;
  port: number;
  dir: string;
  configFile: string;
  /** c-ares (Node's dns.Resolver), a client nobody here wrote, pointed at sinkhole. */
  resolver: Resolver;
  write(file: string, text: string): void;
}

export class FakeClock implements Clock {
  constructor(public ms = Date.UTC(2026, 10, 28, 12, 0, 0)) {}
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

interface TapLike {
  teardown(fn: () => unknown): void;
}

/** `config` is merged over a minimal default; `files` are written beside it (lists, exceptions). */
export async function startSinkhole(
  t: TapLike,
  upstreamPort: number,
  config: Record<string, unknown> = {},
  files: Record<string, string> = {},
  opts: { clock?: Clock; log?: Logger; watch?: boolean; httpCacheMs?: number } = {},
): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-test-'));
  const write = (file: string, text: string): void => {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), text);
  };
  const base: Record<string, unknown> = {
    listen: { dns: ['127.0.0.1:0'] },
    upstreams: { servers: [`127.0.0.1:${upstreamPort}`], timeout: '1s' },
    // The audit trail to a file in the test's folder, not the test runner's stdout.
    log: { queries: 'none', audit: 'audit.jsonl' },
  };
  const merged = { ...base, ...config };
  for (const [f, text] of Object.entries(files)) write(f, text);
  const configFile = join(dir, 'sinkhole.yaml');
  writeFileSync(configFile, stringify(merged));
  // /metrics is rendered afresh for every request unless a test asks for the production cache (1 s).
  const running = await start({ configFile, log: opts.log ?? silentLogger, clock: opts.clock, watch: opts.watch ?? false, httpCacheMs: opts.httpCacheMs ?? 0 });
  const port = running.dns[0]!.udp.port;
  const resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  t.teardown(async () => {
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { running, port, dir, configFile, resolver, write };
}

export const TIKTOK_LIST = '# test list\ntiktok.com\n||tiktokv.com^\n0.0.0.0 tiktokcdn.com\n*.wild.example\n';
