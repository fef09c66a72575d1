#!/usr/bin/env node
// sinkhole serve | validate | check | exceptions | report | health (README "Commands").
// A startup error is one clear line per problem and a non-zero exit, never a stack trace.
import { start } from './app.js';
import { COMMANDS, parseCommandLine } from './cliArgs.js';
import { SinkholeError } from './errors.js';
import { streamLogger } from './log.js';
import { policyHash } from './policy/fingerprint.js';
import { VERSION } from './version.js';
import { DOH_PATH } from './transport/doh.js';
import { reportError } from './commands/output.js';
import { validate } from './commands/validate.js';
import { check } from './commands/check.js';
import { listExceptions } from './commands/exceptions.js';
import { report } from './commands/report.js';
import { health } from './commands/health.js';

/** The LTS line sinkhole is built and measured on (package.json "node"); older lines are past end of life. */
const MIN_NODE_MAJOR = 24;

async function main(argv: string[]): Promise<number> {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < MIN_NODE_MAJOR) {
    throw new SinkholeError(
      'SH_RUNTIME',
      `Node ${process.versions.node} is too old: sinkhole needs Node ${MIN_NODE_MAJOR} or later. Run it as bin/sinkhole or npm start, which use the runtime that npm ci installed`,
    );
  }
  const parsed = parseCommandLine(argv, COMMANDS);
  if (parsed.kind === 'version') {
    process.stdout.write(`sinkhole ${VERSION}\n`);
    return 0;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(`${parsed.text}\n`);
    return 0;
  }
  const { command, values: v, positionals } = parsed;
  const config = v.config as string;
  switch (command) {
    case 'serve':
      return serve(config);
    case 'validate':
      return validate(config);
    case 'check':
      return check(positionals[0]!, { config, client: v.client as string, type: v.type as string, at: v.at as string | undefined, answer: v.answer as string | undefined, json: v.json === true });
    case 'exceptions':
      return listExceptions(config, v.json === true);
    case 'report':
      return report({ config, url: v.url as string | undefined, json: v.json === true, since: v.since as string | undefined, format: v.format as string | undefined }, argv.some((a) => a === '--config' || a === '-c' || a.startsWith('--config=')));
    default:
      return health(config, v.url as string | undefined);
  }
}

async function serve(configFile: string): Promise<number> {
  const log = streamLogger();
  // Last line of defence: every query path catches its own errors, but a rejection that escapes
  // would end the process on Node 20; log it and keep serving.
  process.on('unhandledRejection', (e) => log.error('SH_INTERNAL', 'unhandled rejection', { error: String(e) }));
  const running = await start({ configFile, log });
  const g = running.policy.current;
  const at = (a: { address: string; port: number }): string => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
  for (const d of running.dns) log.info('listening for DNS', { udp: at(d.udp), tcp: at(d.tcp) });
  for (const a of running.dot) log.info('listening for DNS over TLS', { address: at(a) });
  for (const a of running.doh) log.info('listening for DNS over HTTPS', { address: at(a), path: DOH_PATH });
  if (running.http) log.info('listening for HTTP', { address: at(running.http), paths: '/ /metrics /healthz /readyz /api/blocked-clients' });
  log.info('serving', {
    version: VERSION,
    workers: g.config.workers,
    upstreams: g.config.upstreams.servers.map((s) => s.label).join(','),
    enforce: g.config.blocking.enforce.join(','),
    rules: [...g.ruleCounts.values()].reduce((a, b) => a + b, 0),
    exceptions: g.exceptions.length,
    policy: policyHash(g),
  });
  // SIGHUP: reopen the log files (logrotate) and reload the policy.
  process.on('SIGHUP', () => {
    void running.reopenLogs();
    running.reloadTls();
    void running.reloader.reload('config');
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('stopping: answering queries in flight', { signal });
      // Bounded drain: queries in flight end within the upstream timeout.
      const limit = setTimeout(() => {
        log.warn('SH_DRAIN_TIMEOUT', 'drain took too long; exiting');
        resolve();
      }, running.policy.current.config.upstreams.timeoutMs + 1000);
      running.close().then(() => {
        clearTimeout(limit);
        log.info('stopped', { signal });
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

/**
 * Exits once stdout and stderr have handed everything to the kernel. Into a
 * pipe whose reader is slow, process.exit() right after write() cut
 * `validate` off after a pipe's worth of lines (419 of 2,000).
 */
async function exitAfterOutput(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => (s.writableLength === 0 ? resolve() : s.write('', () => resolve())))));
  process.exit(code);
}

main(process.argv.slice(2)).then(
  (code) => exitAfterOutput(code),
  (e: unknown) => exitAfterOutput(reportError(e)),
);
