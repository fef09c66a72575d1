// Config and CLI: strict keys with file:line:col, durations, validate's exit
// codes, and `serve` failing fast with one line (the built CLI, as admins run it).
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { loadConfig } from '../src/config/config.js';
import { parseDuration } from '../src/config/duration.js';
import { ERROR_CODES, PolicyError } from '../src/errors.js';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { buildQuery, decode, udpExchange } from './helpers/dns.js';

const CLI = join(import.meta.dirname, '..', 'dist', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'sinkhole-config-'));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function problems(text: string): string[] {
  const f = file('c.yaml', text);
  try {
    loadConfig(f);
    return [];
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    return e.problems.map((p) => `${p.line}:${p.col}: ${p.message}`);
  }
}

t.test('durations', async (t) => {
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('2s'), 2000);
  t.equal(parseDuration('10m'), 600_000);
  t.equal(parseDuration('1h'), 3_600_000);
  t.equal(parseDuration('1d'), 86_400_000);
  t.equal(parseDuration(3), 3000, 'a bare number is seconds');
  t.equal(parseDuration('soon'), undefined);
  t.equal(parseDuration('-1s'), undefined);
});

t.test('config errors name line:col, the key path and what was expected', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['unknown top-level key', 'listen:\n  dns: ["127.0.0.1:1053"]\nblocklists: {}\n', /^3:1: blocklists: unknown key; expected one of listen, upstreams/],
    ['unknown nested key', 'cache:\n  maxEntries: 10\n  maxTTL: 1h\n', /^3:3: cache\.maxTTL: unknown key; expected one of maxEntries, minTtl, maxTtl, maxNegativeTtl/],
    ['bad duration', 'upstreams:\n  servers: ["127.0.0.1"]\n  timeout: soon\n', /^3:12: upstreams\.timeout: expected a duration like 500ms/],
    ['wrong type', 'cache:\n  maxEntries: lots\n', /^2:15: cache\.maxEntries: expected a whole number from 0 to 100000000, got "lots"/],
    ['bad enum', 'upstreams:\n  servers: ["127.0.0.1"]\n  strategy: fastest\n', /^3:13: upstreams\.strategy: expected one of failover, random, race, got "fastest"/],
    ['bad listen address', 'listen:\n  dns: ["localhost:53"]\n', /^2:9: listen\.dns: expected "address:port"/],
    ['bad upstream', 'upstreams:\n  servers: ["dns.example:53"]\n', /^2:13: upstreams\.servers: expected an IP address/],
    ['bad CIDR', 'clients:\n  allowFrom: ["10.0.0.0/33"]\n', /^2:15: clients\.allowFrom: prefix length must be 0 to 32/],
    ['unknown enforced list', 'blocking:\n  enforce: [tiktok]\n', /^2:13: blocking\.enforce: unknown list "tiktok"/],
    ['YAML syntax', 'listen:\n  dns: ["127.0.0.1:1053"\n', /^\d+:\d+: /],
    ['duplicate key', 'cache:\n  maxEntries: 1\n  maxEntries: 2\n', /^3:3: Map keys must be unique/],
    ['bad response', 'blocking:\n  response: blackhole\n', /^2:13: blocking\.response: expected one of nxdomain, nodata, null-ip, refused/],
    ['empty file', '', /^1:1: the config is empty/],
    ['CIDR with host bits', 'clients:\n  allowFrom: ["10.20.1.17/16"]\n', /^2:15: clients\.allowFrom: "10\.20\.1\.17\/16" has host bits set below \/16/],
  ];
  for (const [what, text, expected] of cases) {
    const got = problems(text);
    t.match(got[0] ?? '(no error)', expected, what);
  }
  t.equal(problems('upstreams:\n  servers: ["127.0.0.1", "tcp://[::1]:5353"]\n').length, 0, 'valid upstream forms');
  const f = file('v6.yaml', 'upstreams:\n  servers: ["[2001:DB8:0:0::53]:53"]\n');
  t.equal(loadConfig(f).upstreams.servers[0]?.host, '2001:db8::53', 'IPv6 upstreams are stored canonical, as replies report them');
});

t.test('every error code is documented in the README', async (t) => {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  for (const code of Object.keys(ERROR_CODES)) t.match(readme, code, `${code} is in the README`);
});

t.test('sinkhole validate: exit 0 when valid, 1 with file:line:col lines', async (t) => {
  const good = file('good.yaml', 'listen:\n  dns: ["127.0.0.1:1053"]\nupstreams:\n  servers: ["127.0.0.1:53"]\n');
  const ok = spawnSync(process.execPath, [CLI, 'validate', '--config', good], { encoding: 'utf8' });
  t.equal(ok.status, 0, 'valid config: exit 0');
  t.match(ok.stdout, /ok/);
  const bad = file('bad.yaml', 'listen:\n  dns: ["127.0.0.1:1053"]\n  colour: blue\nupstreams:\n  servers: ["127.0.0.1:53"]\n  timeout: forever\n');
  const r = spawnSync(process.execPath, [CLI, 'validate', '--config', bad], { encoding: 'utf8' });
  t.equal(r.status, 1, 'invalid config: exit 1');
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 2, 'one line per problem');
  t.match(lines[0], /bad\.yaml:3:3: listen\.colour: unknown key/);
  t.match(lines[1], /bad\.yaml:6:12: upstreams\.timeout: expected a duration/);
  t.notMatch(r.stdout + r.stderr, /\n\s+at /, 'no stack trace');
  const bundled = spawnSync(process.execPath, [CLI, 'validate', '--config', join(import.meta.dirname, '..', 'sinkhole.yaml')], { encoding: 'utf8' });
  t.equal(bundled.status, 0, 'the bundled sinkhole.yaml validates');
});

t.test('sinkhole serve: a startup error is one line and a non-zero exit', async (t) => {
  const bad = file('serve-bad.yaml', 'listen:\n  dns: ["127.0.0.1:1053"]\ncache: 5\n');
  const r = spawnSync(process.execPath, [CLI, 'serve', '--config', bad], { encoding: 'utf8', timeout: 10_000 });
  t.not(r.status, 0, 'bad config: non-zero exit');
  t.match(r.stderr, /^sinkhole: .*serve-bad\.yaml:3:8: cache: expected a mapping/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');

  const busy = dgram.createSocket('udp4');
  busy.bind(0, '127.0.0.1');
  await once(busy, 'listening');
  t.teardown(() => busy.close());
  const inUse = file('serve-busy.yaml', `listen:\n  dns: ["127.0.0.1:${busy.address().port}"]\nupstreams:\n  servers: ["127.0.0.1:9"]\n`);
  const r2 = spawnSync(process.execPath, [CLI, 'serve', '--config', inUse], { encoding: 'utf8', timeout: 10_000 });
  t.equal(r2.status, 1, 'port in use: exit 1');
  t.match(r2.stderr, /^sinkhole: cannot listen for DNS over UDP on 127\.0\.0\.1:\d+: EADDRINUSE \(another process has this port\)\n$/);

  const usage = spawnSync(process.execPath, [CLI, 'frobnicate'], { encoding: 'utf8' });
  t.equal(usage.status, 2, 'unknown command: exit 2');
  t.match(usage.stderr, /unknown command "frobnicate"/);
});

t.test('sinkhole serve: answers, then drains on SIGTERM and exits 0', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  up.on('slow.example.test', { delayMs: 400 });
  // Find a free port for the child (it cannot report port 0 back before it listens).
  const probe = dgram.createSocket('udp4');
  probe.bind(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = probe.address().port;
  await new Promise<void>((r) => probe.close(() => r()));
  const cfg = file('serve.yaml', `listen:\n  dns: ["127.0.0.1:${port}"]\nupstreams:\n  servers: ["127.0.0.1:${up.port}"]\nlog:\n  queries: none\n`);
  const child = spawn(process.execPath, [CLI, 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  await new Promise<void>((resolve) => {
    const check = (): void => void (stderr.includes('serving') ? resolve() : setTimeout(check, 20));
    check();
  });
  t.equal(decode(await udpExchange(port, buildQuery('www.example.test', T.A))).answers[0]?.address, '192.0.2.10', 'serves');
  child.kill('SIGHUP');
  await new Promise<void>((resolve) => {
    const check = (): void => void (stderr.includes('policy reloaded kind=config generation=2') ? resolve() : setTimeout(check, 20));
    check();
  });
  t.pass('SIGHUP reloaded the policy');
  const inflight = udpExchange(port, buildQuery('slow.example.test', T.A));
  await new Promise<void>((r) => {
    const wait = (): void => void (up.count('slow.example.test') ? r() : setTimeout(wait, 5));
    wait();
  });
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number];
  t.equal(code, 0, 'exit 0 after SIGTERM');
  t.match(stderr, /stopping/);
  t.equal(decode(await inflight).answers[0]?.address, '192.0.2.10', 'the query in flight at SIGTERM was still answered');
});

t.test('every duration and number has a documented range, checked at file:line:col', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['blocking.ttl past 32 bits', 'blocking:\n  ttl: 4294967296\n', /^2:8: blocking\.ttl: must be at most 1d, got 4294967296/],
    ['upstreams.timeout past what a timer can hold', 'upstreams:\n  servers: ["127.0.0.1"]\n  timeout: 30d\n', /^3:12: upstreams\.timeout: must be at most 1m, got "30d"/],
    ['listen.tcpIdleTimeout', 'listen:\n  tcpIdleTimeout: 30d\n', /^2:19: listen\.tcpIdleTimeout: must be at most 1h, got "30d"/],
    ['cache.maxTtl', 'cache:\n  maxTtl: 400d\n', /^2:11: cache\.maxTtl: must be at most 7d/],
    ['cache.minTtl', 'cache:\n  minTtl: 2h\n', /^2:11: cache\.minTtl: must be at most 1h/],
    ['cache.maxNegativeTtl', 'cache:\n  maxNegativeTtl: 2d\n', /^2:19: cache\.maxNegativeTtl: must be at most 1d/],
    ['report.window', 'report:\n  window: 1000d\n', /^2:11: report\.window: must be at most 90d/],
    ['a negative number', 'cache:\n  maxEntries: -1\n', /^2:15: cache\.maxEntries: expected a whole number from 0 to/],
    ['a fraction', 'listen:\n  tcpMaxConnections: 1.5\n', /^2:22: listen\.tcpMaxConnections: expected a whole number from 1 to/],
    ['a huge bare number of seconds', 'blocking:\n  ttl: 1e300\n', /^2:8: blocking\.ttl: must be at most 1d/],
  ];
  for (const [what, text, expected] of cases) t.match(problems(text)[0] ?? '(no error)', expected, what);
  const bad = file('range.yaml', 'blocking:\n  ttl: 4294967296\n');
  const r = spawnSync(process.execPath, [CLI, 'validate', '--config', bad], { encoding: 'utf8' });
  t.equal(r.status, 1, 'validate: exit 1 (a problem in the file), not 2 (an unexpected error)');
  t.match(r.stdout, /range\.yaml:2:8: blocking\.ttl: must be at most 1d/);
  t.notMatch(r.stdout + r.stderr, /unexpected error/);
});

t.test('validate: every line reaches a slow reader through a pipe', async (t) => {
  // 2000 unknown keys: 2000 problems, about 150 kB, far more than a pipe holds.
  const cfg = file('many.yaml', Array.from({ length: 2000 }, (_, i) => `unknown${i}: 1\n`).join(''));
  const child = spawn(process.execPath, [CLI, 'validate', '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
  const closed = once(child, 'close');
  child.stdout.pause();
  // Read nothing until the child has filled the pipe and is ready to exit.
  await new Promise((r) => setTimeout(r, 400));
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stdout.resume();
  // 'close' comes after the process exited and its stdout ended.
  const [code] = (await closed) as [number];
  t.equal(code, 1, 'exit 1');
  t.equal(out.trim().split('\n').length, 2000, 'all 2000 lines arrived');
});

t.test('start-up errors: one clear line per real problem, no cascade', async (t) => {
  const cases: [string, string, string, RegExp][] = [
    ['a YAML syntax error', 'syntax.yaml', 'listen:\n  dns: ["127.0.0.1:1053"\nupstreams:\n  servers: [x\n', /syntax\.yaml:\d+:\d+: /],
    ['a missing list file', 'nolist.yaml', 'blocking:\n  lists:\n    tiktok: [missing.txt]\n  enforce: [tiktok]\n', /nolist\.yaml:3:5: blocking\.lists\.tiktok: cannot read .*missing\.txt: ENOENT/],
    ['a missing config file', 'absent.yaml', '', /absent\.yaml:1:1: cannot read: ENOENT/],
  ];
  for (const [what, name, text, expected] of cases) {
    const path = name === 'absent.yaml' ? join(dir, name) : file(name, text);
    for (const command of ['validate', 'serve']) {
      const r = spawnSync(process.execPath, [CLI, command, '--config', path], { encoding: 'utf8', timeout: 10_000 });
      const lines = (r.stdout + r.stderr).trim().split('\n');
      t.equal(lines.length, 1, `${command}, ${what}: one line (${JSON.stringify(lines)})`);
      t.match(lines[0], expected, `${command}, ${what}: names the real problem`);
      t.not(r.status, 0, `${command}, ${what}: non-zero exit`);
    }
  }
});

t.test('a hostile YAML file fails fast, with file:line:col', async (t) => {
  const keys = file('keys.yaml', Array.from({ length: 50_000 }, (_, i) => `k${i}: 1\n`).join('') + 'k7: 2\n');
  let started = Date.now();
  const got = problems(readFileSync(keys, 'utf8'));
  t.ok(Date.now() - started < 5000, `50,000 top-level keys: done in ${Date.now() - started} ms`);
  t.match(got.at(-1), /^50001:1: Map keys must be unique; "k7" is also on line 8/, 'the duplicate is still found, and where');
  t.equal(got.length, 1, 'one problem: the duplicate (a syntax error, so the keys are not judged one by one)');
  const unknown = problems(Array.from({ length: 50_000 }, (_, i) => `k${i}: 1\n`).join(''));
  t.equal(unknown.length, 50_000, 'without the duplicate: each unknown key is a problem');
  t.match(unknown[0], /^1:1: k0: unknown key/);

  started = Date.now();
  const nested = problems('a: ' + '['.repeat(3000) + ']'.repeat(3000) + '\n');
  t.ok(Date.now() - started < 2000, `3,000 levels of nesting: done in ${Date.now() - started} ms`);
  t.same(nested.length, 1, 'one problem');
  t.match(nested[0], /^1:\d+: nested deeper than 32 levels/);
  const block = problems(Array.from({ length: 100 }, (_, i) => `${' '.repeat(i)}a${i}:\n`).join('') + `${' '.repeat(100)}x\n`);
  t.match(block[0], /^\d+:\d+: nested deeper than 32 levels/, 'block nesting too');

  const huge = problems(`# ${'x'.repeat(3 << 20)}\n`);
  t.match(huge[0], /^1:1: the file is 3145731 bytes; sinkhole reads YAML files of at most 2097152 bytes/);
});
