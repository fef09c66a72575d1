// src/state/ (lastGood.ts, snapshot.ts).
// Start from the last good policy (issue 9): every compiled policy's inputs
// are snapshotted under state.dir; a start-up whose files do not compile
// serves the snapshot (degraded) instead of exiting; a state dir that cannot
// be written never stops DNS.
import t from 'tap';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { start, type Running } from '../../src/app.js';
import { streamLogger } from '../../src/log.js';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST, type Harness } from '../helpers/sinkhole.js';
import { buildQuery, rcodeOf, udpExchange } from '../helpers/dns.js';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli.js');
const EXCEPTIONS = 'exceptions:\n  - id: EX-1\n    clients: [127.0.0.7]\n    allow: [tiktok]\n    reason: r\n    approvedBy: a\n    expires: 2999-01-01\n';
const CONFIG = {
  listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
  blocking: { lists: { tiktok: ['lists/tiktok.txt'] }, enforce: ['tiktok'] },
  exceptions: 'exceptions.yaml',
};
const FILES = { 'lists/tiktok.txt': TIKTOK_LIST, 'exceptions.yaml': EXCEPTIONS };
/** TIKTOK_LIST has five lines: a sixth that is not a rule is an error at line 6, column 1. */
const BROKEN_LIST = `${TIKTOK_LIST}this is not a rule\n`;

interface Snapshot {
  folder: string;
  manifest: { generation: number; config: string; files: { path: string; stored: string; role: string }[] };
}

function snapshot(stateDir: string): Snapshot {
  const folder = join(stateDir, readFileSync(join(stateDir, 'current'), 'utf8').trim());
  return { folder, manifest: JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8')) as Snapshot['manifest'] };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function http(r: Running, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${r.http!.port}${path}`);
  return { status: res.status, body: await res.text() };
}

function capture(): { lines: string[]; log: ReturnType<typeof streamLogger> } {
  const lines: string[] = [];
  return { lines, log: streamLogger((l) => lines.push(l)) };
}

t.test('every good compile is snapshotted: each input byte for byte under its real path, atomically; an unchanged reload keeps it', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, FILES);
  await h.running.state.idle();
  const stateDir = join(h.dir, '.sinkhole-state');
  const first = snapshot(stateDir);
  t.same(
    first.manifest.files.map((f) => `${f.role} ${f.path}`).sort(),
    [`config ${h.configFile}`, `exceptions ${join(h.dir, 'exceptions.yaml')}`, `list ${join(h.dir, 'lists/tiktok.txt')}`],
    'the config, the list and the exceptions, by their real paths (state.dir defaults to .sinkhole-state beside the config)',
  );
  for (const f of first.manifest.files) t.same(readFileSync(join(first.folder, f.stored)), readFileSync(f.path), `${f.role}: the same bytes`);
  t.same(readdirSync(stateDir).sort(), ['current', first.folder.split('/').pop()], 'nothing half-written left beside it');

  t.same(await h.running.reloader.reload('config'), []);
  await h.running.state.idle();
  t.equal(snapshot(stateDir).folder, first.folder, 'a reload that changed nothing keeps the snapshot');

  h.write('lists/tiktok.txt', `${TIKTOK_LIST}newtiktok.test\n`);
  t.same(await h.running.reloader.reload('list'), []);
  await h.running.state.idle();
  const second = snapshot(stateDir);
  t.not(second.folder, first.folder, 'a reload that compiled new inputs writes a new snapshot');
  t.equal(second.manifest.generation, 3);
  const list = second.manifest.files.find((f) => f.role === 'list')!;
  t.match(readFileSync(join(second.folder, list.stored), 'utf8'), /newtiktok\.test/, 'with the new list');
  t.same(readdirSync(stateDir).sort(), ['current', second.folder.split('/').pop()], 'and the old one is gone');

  h.write('lists/tiktok.txt', BROKEN_LIST);
  t.equal((await h.running.reloader.reload('list')).length, 1, 'a reload that fails');
  await h.running.state.idle();
  t.equal(snapshot(stateDir).folder, second.folder, 'is never snapshotted');
});

t.test('a start-up whose files do not compile serves the last good policy: the log, /readyz, the gauge and validate say so; a fix on disk reloads', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h: Harness = await startSinkhole(t, up.port, CONFIG, FILES);
  await h.running.state.idle();
  await h.running.close();
  const stateDir = join(h.dir, '.sinkhole-state');
  const saved = snapshot(stateDir).folder;
  h.write('lists/tiktok.txt', BROKEN_LIST);

  const { lines, log } = capture();
  const r = await start({ configFile: h.configFile, log, watch: true });
  t.teardown(() => r.close());
  const port = r.dns[0]!.udp.port;
  t.ok(lines.some((l) => /error SH_LIST_SYNTAX the files on disk do not compile; serving the last good policy saved \S+: \S+lists\/tiktok\.txt:6:1: /.test(l)), 'every file:line:col is logged');
  t.ok(lines.some((l) => / warn SH_POLICY_DEGRADED /.test(l)), 'and the degraded state, with a code');
  t.equal(rcodeOf(await udpExchange(port, buildQuery('www.tiktok.com', T.A))), 3, 'DNS is served, and the last good list is enforced');
  t.ok(r.policy.current.files.includes(join(h.dir, 'lists/tiktok.txt')), 'the generation names the real files (and watches them)');
  const ready = await http(r, '/readyz');
  t.equal(ready.status, 200, '/readyz stays 200: DNS is served');
  t.match(ready.body, /^ready, degraded: serving the last good policy saved .* because the files on disk do not compile:\n\s+\S+lists\/tiktok\.txt:6:1: /);
  t.match((await http(r, '/metrics')).body, /\nsinkhole_policy_degraded 1\n/, 'sinkhole_policy_degraded 1');
  t.match((await http(r, '/metrics')).body, /\nsinkhole_policy_files_ok 0\n/, 'sinkhole_policy_files_ok 0');

  const validate = spawn(process.execPath, [CLI, 'validate', '--config', h.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  validate.stdout.on('data', (c) => (out += c));
  validate.stderr.on('data', (c) => (err += c));
  const [code] = (await once(validate, 'exit')) as [number];
  t.equal(code, 1, 'validate: exit 1, the files are still wrong');
  t.match(out, /lists\/tiktok\.txt:6:1: expected one rule per line/, 'with the problem');
  t.match(err, /^SH_POLICY_DEGRADED serve would start from the last good policy saved \S+ \(generation 1, 3 files in /, 'and what a start-up does about it');

  await r.state.idle();
  t.equal(snapshot(stateDir).folder, saved, 'starting from the snapshot does not replace it');

  h.write('lists/tiktok.txt', `${TIKTOK_LIST}fixed.test\n`);
  await until(() => r.policy.current.number === 2, 'the watcher to reload the fixed list');
  t.equal(r.policy.current.degraded, undefined, 'a good reload ends the degraded state');
  t.equal((await http(r, '/readyz')).body, 'ready\n');
  t.match((await http(r, '/metrics')).body, /\nsinkhole_policy_degraded 0\n/, 'the gauge goes back to 0');
  t.match((await http(r, '/metrics')).body, /\nsinkhole_policy_files_ok 1\n/, 'and the files are ok');
  t.equal(rcodeOf(await udpExchange(port, buildQuery('www.fixed.test', T.A))), 3, 'the fixed list is in force');
  await r.state.idle();
  t.not(snapshot(stateDir).folder, saved, 'and it is the new last good policy');
});

t.test('a reload rejected while running: /readyz names it and sinkhole_policy_files_ok is 0 until the fix; the policy in force stays', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, FILES);
  t.equal((await http(h.running, '/readyz')).body, 'ready\n');
  t.match((await http(h.running, '/metrics')).body, /\nsinkhole_policy_files_ok 1\n/);
  h.write('lists/tiktok.txt', BROKEN_LIST);
  const problems = await h.running.reloader.reload('list');
  t.match(problems.join('\n'), /tiktok\.txt:6:1/, 'the reload is rejected');
  const ready = await http(h.running, '/readyz');
  t.equal(ready.status, 200, 'still 200: DNS is served by generation 1');
  t.match(ready.body, /^ready, degraded: last reload rejected, generation 1 stays in force until the files on disk compile:\n\s+\S+lists\/tiktok\.txt:6:1: expected one rule per line/);
  const metrics = (await http(h.running, '/metrics')).body;
  t.match(metrics, /\nsinkhole_policy_files_ok 0\n/, 'sinkhole_policy_files_ok 0');
  t.match(metrics, /\nsinkhole_policy_degraded 0\n/, 'not degraded: the policy in force is the one its files described until the edit');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('www.tiktok.com', T.A))), 3, 'the last good list is still enforced');
  // What is in force, asked while the bad file is on disk: check and exceptions answer from the
  // last good policy (the one the server keeps serving), say so first, and name the problems.
  await h.running.state.idle();
  const run = async (args: string[]): Promise<{ code: number; out: string; err: string }> => {
    const child = spawn(process.execPath, [CLI, ...args, '--config', h.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const [code] = (await once(child, 'exit')) as [number];
    return { code, out, err };
  };
  const check = await run(['check', 'www.tiktok.com', '--client', '127.0.0.9']);
  t.equal(check.code, 1, 'check answers (blocked: exit 1), not exit 2');
  const [first, second, ...rest] = check.out.split('\n');
  t.match(first, /^note: the files on disk do not compile; answering from the last good policy \(generation 1, saved \S+ in \S+\), which a running sinkhole keeps serving:$/, 'its first line says where the answer comes from');
  t.match(second, /^  SH_LIST_SYNTAX \S*lists\/tiktok\.txt:6:1: expected one rule per line/, 'and names the problem on disk');
  t.match(rest.join('\n'), /^blocked: www\.tiktok\.com A from 127\.0\.0\.9/m, 'then the answer');
  const json = await run(['check', 'www.tiktok.com', '--client', '127.0.0.7', '--json']);
  t.match(JSON.parse(json.out), { decision: 'excepted', policy: 'last-good' }, '--json: one object, saying which policy answered');
  t.match(json.err, /^note: the files on disk do not compile/, 'the note on stderr');
  const ex = await run(['exceptions']);
  t.equal(ex.code, 0);
  t.match(ex.out, /^note: the files on disk do not compile[^\n]*\n  SH_LIST_SYNTAX [^\n]*\nEX-1  active/, 'exceptions: the note, the problem, then the records in force');

  h.write('lists/tiktok.txt', TIKTOK_LIST);
  t.same(await h.running.reloader.reload('list'), [], 'the fix reloads');
  t.equal((await http(h.running, '/readyz')).body, 'ready\n', '/readyz is plain ready again');
  t.match((await http(h.running, '/metrics')).body, /\nsinkhole_policy_files_ok 1\n/);
});

t.test('exit 2 only when there was never a good policy; a damaged snapshot is not used; an unbindable address still exits 1', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, FILES);
  await h.running.close();
  // No snapshot: the first install.
  const fresh = mkdtempSync(join(tmpdir(), 'sinkhole-fresh-'));
  t.teardown(() => rmSync(fresh, { recursive: true, force: true }));
  mkdirSync(join(fresh, 'lists'));
  writeFileSync(join(fresh, 'sinkhole.yaml'), 'listen:\n  dns: ["127.0.0.1:0"]\nblocking:\n  lists:\n    tiktok: [lists/tiktok.txt]\n  enforce: [tiktok]\n');
  writeFileSync(join(fresh, 'lists/tiktok.txt'), BROKEN_LIST);
  const serve = spawn(process.execPath, [CLI, 'serve', '--config', join(fresh, 'sinkhole.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  serve.stderr.on('data', (c) => (err += c));
  const [code] = (await once(serve, 'exit')) as [number];
  t.equal(code, 2, 'never a good policy: exit 2');
  t.match(err, /^SH_LIST_SYNTAX \S+tiktok\.txt:6:1: expected one rule per line/, 'naming the problem');

  // A snapshot whose copy was damaged on disk is not trusted.
  await h.running.state.idle();
  const snap = snapshot(join(h.dir, '.sinkhole-state'));
  const list = snap.manifest.files.find((f) => f.role === 'list')!;
  writeFileSync(join(snap.folder, list.stored), `${TIKTOK_LIST}# edited\n`);
  h.write('lists/tiktok.txt', BROKEN_LIST);
  const { lines, log } = capture();
  await t.rejects(start({ configFile: h.configFile, log, watch: false }), { name: 'PolicyError' }, 'a damaged snapshot: the start-up fails as before');
  t.ok(lines.some((l) => /warn SH_STATE_INVALID .*SHA-256 mismatch/.test(l)), 'saying why the snapshot was not used');

  // A good snapshot, and a listen address another process holds: exit 1, as before.
  h.write('lists/tiktok.txt', TIKTOK_LIST);
  const busy = dgram.createSocket('udp4');
  busy.bind(0, '127.0.0.1');
  await once(busy, 'listening');
  t.teardown(() => busy.close());
  h.write('sinkhole.yaml', `listen:\n  dns: ["127.0.0.1:${busy.address().port}"]\nblocking:\n  lists:\n    tiktok: [lists/tiktok.txt]\n  enforce: [tiktok]\nexceptions: exceptions.yaml\n`);
  const good = spawn(process.execPath, [CLI, 'validate', '--config', h.configFile]);
  t.equal(((await once(good, 'exit')) as [number])[0], 0, 'valid');
  const saver = await start({ configFile: h.configFile, log: capture().log, watch: false }).catch((e: Error) => e);
  t.match(saver, { code: 'SH_LISTEN' }, 'in process: the port is busy');
  await until(() => readFileSync(join(h.dir, '.sinkhole-state', 'current'), 'utf8').trim() !== snap.folder.split('/').pop(), 'the snapshot of that compile');
  h.write('lists/tiktok.txt', BROKEN_LIST);
  const bind = spawn(process.execPath, [CLI, 'serve', '--config', h.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let bindErr = '';
  bind.stderr.on('data', (c) => (bindErr += c));
  const [bindCode] = (await once(bind, 'exit')) as [number];
  t.equal(bindCode, 1, 'degraded start-up, unbindable address: exit 1');
  t.match(bindErr, /SH_POLICY_DEGRADED/, 'it did fall back to the snapshot');
  t.match(bindErr, /SH_LISTEN cannot listen for DNS over UDP on 127\.0\.0\.1:\d+: EADDRINUSE/, 'and then could not bind');
});

t.test('a snapshot belongs to its config file: a mistyped --config exits 2, and a second config in the folder never starts from the first one\'s policy', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, FILES);
  await h.running.state.idle();
  await h.running.close();
  t.ok(readFileSync(join(h.dir, '.sinkhole-state', 'current'), 'utf8'), 'the folder has a last good policy (of sinkhole.yaml)');
  const serve = async (config: string): Promise<{ code: number; err: string }> => {
    const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => (err += c));
    const [code] = (await once(child, 'exit')) as [number];
    return { code, err };
  };
  const typo = await serve(join(h.dir, 'nope.yaml'));
  t.equal(typo.code, 2, 'a config file that does not exist: exit 2, not a degraded start');
  t.match(typo.err, /^SH_CONFIG_READ \S*nope\.yaml:1:1: cannot read: ENOENT/);
  t.notMatch(typo.err, /SH_POLICY_DEGRADED/, 'the snapshot of sinkhole.yaml was not served');
  const v = spawn(process.execPath, [CLI, 'validate', '--config', join(h.dir, 'nope.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let vErr = '';
  v.stderr.on('data', (c) => (vErr += c));
  await once(v, 'exit');
  t.match(vErr, /SH_STATE_NONE \S*nope\.yaml does not exist: serve would exit 2/, 'validate says what serve would do');

  // other.yaml: another config in the same folder (same default state.dir), broken.
  h.write('other.yaml', 'listen:\n  dns: ["127.0.0.1:0"]\nblocking:\n  lists:\n    tiktok: [lists/tiktok.txt]\n  enforce: [tiktok]\nbogus: 1\n');
  const other = await serve(join(h.dir, 'other.yaml'));
  t.equal(other.code, 2, 'a broken config whose folder holds only another config\'s snapshot: exit 2');
  t.match(other.err, /SH_CONFIG_INVALID \S*other\.yaml:7:1: bogus: unknown key/);
  t.notMatch(other.err, /SH_POLICY_DEGRADED/, 'not started from sinkhole.yaml\'s policy');
});

t.test('a writable state dir: no start-up warning, and the write probe leaves nothing behind', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const { lines, log } = capture();
  const h = await startSinkhole(t, up.port, CONFIG, FILES, { log });
  await h.running.state.idle();
  t.notOk(lines.some((l) => /SH_STATE_WRITE/.test(l)), 'no SH_STATE_WRITE');
  t.same(readdirSync(join(h.dir, '.sinkhole-state')).filter((f) => f.startsWith('.tmp-')), [], 'no probe file left');
});

t.test('a state dir that cannot be written never stops DNS: a warning with a code, and a counter', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const { lines, log } = capture();
  // state.dir under a regular file: every write fails (as on a read-only or full disk).
  const h = await startSinkhole(t, up.port, { ...CONFIG, state: { dir: 'not-a-folder/state' } }, { ...FILES, 'not-a-folder': 'x' }, { log });
  await h.running.state.idle();
  t.equal(h.running.stats.stateWriteFailures, 1, 'counted');
  t.ok(lines.some((l) => / warn SH_STATE_WRITE cannot save the last good policy .*error=ENOTDIR/.test(l)), 'a warning with a code and the reason');
  // Said once at start as well, in words a deployment can act on (issue 18 item 4: a read-only mount).
  t.equal(lines.filter((l) => / warn SH_STATE_WRITE state\.dir cannot be written: .*no last good policy.*dir=\S*not-a-folder\/state.*error=ENOTDIR/.test(l)).length, 1, 'serve warns at start that state.dir is not writable');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('www.tiktok.com', T.A))), 3, 'blocking works');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('ok.example.test', T.A))), 0, 'forwarding works');
  h.write('lists/tiktok.txt', `${TIKTOK_LIST}more.test\n`);
  t.same(await h.running.reloader.reload('list'), [], 'reloads still apply');
  await h.running.state.idle();
  t.equal(h.running.stats.stateWriteFailures, 2);
  t.match(await h.running.registry.metrics(), /\nsinkhole_state_write_failures_total 2\n/, 'sinkhole_state_write_failures_total');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('www.more.test', T.A))), 3, 'the reloaded list is in force');
});
