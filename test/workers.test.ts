// workers: N — several query threads on the same addresses (SO_REUSEPORT): queries spread over
// them, one /metrics and one report for all, a reload reaches every thread, and a thread that
// dies under load is restarted while the others keep answering.
import t from 'tap';
import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST, type Harness } from './helpers/sinkhole.js';
import { buildQuery, rcodeOf, udpExchange } from './helpers/dns.js';
import { freeDnsPort } from './helpers/ports.js';
import { loadConfig } from '../src/config/config.js';
import { PolicyError } from '../src/errors.js';
import { parseLeases } from '../src/identity/leaseFormats.js';
import { buildIdentity } from '../src/identity/sources.js';
import type { IdentityDelta } from '../src/identity/table.js';
import type { ReportRow } from '../src/report/report.js';

const KEA_HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n';

const CONFIG = {
  listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
  blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
  clients: { allowFrom: ['127.0.0.0/16'] },
  workers: 2,
};

async function metrics(h: Harness): Promise<string> {
  return (await fetch(`http://127.0.0.1:${h.running.http!.port}/metrics`)).text();
}

/** The sum of every sample of `name` (optionally only those whose labels contain `filter`). */
function sum(text: string, name: string, filter = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line[name.length] === '_' || !line.includes(filter)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Each query from its own socket (a fresh source port), so the kernel's hash spreads them over the threads. */
function spread(h: Harness, names: string[], from?: (i: number) => string): Promise<number[]> {
  return Promise.all(names.map((n, i) => udpExchange(h.port, buildQuery(n, T.A), 2000, from?.(i)).then(rcodeOf)));
}

t.test('two query threads: both answer, one /metrics and one report for all', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  t.equal(h.running.workers?.live, 1, 'one worker thread beside the main thread');
  const allowed = await spread(h, Array.from({ length: 60 }, (_, i) => `n${i}.example.test`));
  t.ok(allowed.every((r) => r === 0), '60 allowed names answered NOERROR');
  // Blocked queries from 40 different client addresses (127.0.1.x): the report must hold all 40,
  // whichever thread answered them.
  const blocked = await spread(h, Array.from({ length: 40 }, () => 'www.tiktok.com'), (i) => `127.0.1.${i + 1}`);
  t.ok(blocked.every((r) => r === 3), '40 blocked queries sinkholed');

  const text = await metrics(h);
  t.equal(sum(text, 'sinkhole_queries_total'), 100, 'sinkhole_queries_total sums both threads: 100 queries');
  t.equal(sum(text, 'sinkhole_workers'), 2, 'sinkhole_workers 2');
  const perThread = [0, 1].map((w) => sum(text, 'sinkhole_worker_queries_total', `worker="${w}"`));
  t.ok(perThread[0]! > 0 && perThread[1]! > 0, `the kernel spread the queries over both threads: ${perThread.join(' / ')}`);
  t.equal(sum(text, 'sinkhole_blocked_total'), 40, 'sinkhole_blocked_total counts the blocked queries of both threads');

  // Worker threads hand their blocked queries to the main thread's report in batches.
  const deadline = Date.now() + 5000;
  let clients = 0;
  while (Date.now() < deadline) {
    const api = (await (await fetch(`http://127.0.0.1:${h.running.http!.port}/api/blocked-clients`)).json()) as { clients: unknown[] };
    clients = api.clients.length;
    if (clients === 40) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(clients, 40, 'the compliance report lists all 40 clients, whichever thread answered them');
});

t.test('a reload reaches every query thread', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  const before = await spread(h, Array.from({ length: 40 }, () => 'www.newapp.example'));
  t.ok(before.every((r) => r === 0), 'not blocked before the edit');
  writeFileSync(join(h.dir, 'tiktok.txt'), `${TIKTOK_LIST}newapp.example\n`);
  t.same(await h.running.reloader.reload('list'), [], 'reloaded');
  const after = await spread(h, Array.from({ length: 40 }, () => 'www.newapp.example'));
  t.ok(after.every((r) => r === 3), 'blocked by every thread after the reload (40 queries from 40 source ports)');
  const text = await metrics(h);
  t.ok(sum(text, 'sinkhole_worker_queries_total', 'worker="1"') > 0, 'the worker thread took part');
  t.equal(sum(text, 'sinkhole_policy_generation'), 2, 'generation 2');
});

t.test('a query thread killed under load is restarted; the others keep answering', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  let running = true;
  let answered = 0;
  let lost = 0;
  const client = async (k: number): Promise<void> => {
    for (let i = 0; running; i++) {
      try {
        // Half blocked (answered at once), half forwarded (in flight upstream for a moment).
        await udpExchange(h.port, buildQuery(i % 2 ? 'www.tiktok.com' : `c${k}-${i}.example.test`, T.A), 1000);
        answered++;
      } catch {
        lost++;
      }
    }
  };
  const clients = Array.from({ length: 8 }, (_, k) => client(k));
  const waitFor = async (what: () => boolean, ms = 10_000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!what()) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await waitFor(() => answered > 500);
  const beforeKill = answered;
  await h.running.workers!.kill(1);
  t.equal(h.running.workers!.live, 0, 'the worker thread is gone');
  await waitFor(() => answered > beforeKill + 500);
  t.pass('the main thread kept answering while the worker thread was down');
  await waitFor(() => h.running.workers!.live === 1);
  t.equal(h.running.workers!.restarts, 1, 'restarted once');
  const afterRestart = answered;
  await waitFor(() => answered > afterRestart + 500);
  running = false;
  await Promise.all(clients);
  const text = await metrics(h);
  t.equal(sum(text, 'sinkhole_worker_restarts_total'), 1, 'sinkhole_worker_restarts_total 1');
  t.ok(sum(text, 'sinkhole_worker_queries_total', 'worker="1"') > 0, 'the restarted thread answers again');
  t.ok(sum(text, 'sinkhole_queries_total') >= answered - 1000, 'counters kept what the dead thread had counted (never go down)');
  // Only what the dead thread held at the moment of the kill can be lost: a few queries, never a stream of them.
  t.ok(lost <= 16, `${lost} of ${answered + lost} queries lost when a thread was killed`);
  t.comment(`kill under load: ${answered} answered, ${lost} lost`);
});

t.test('an exception by MAC holds on every query thread, and follows a lease change', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const h = await startSinkhole(
    t, up.port,
    {
      ...CONFIG,
      identity: { leases: [{ format: 'csv', file: 'leases.csv' }] },
      exceptions: [{ id: 'MAC-1', clients: ['mac:aa:bb:cc:dd:ee:01'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
    },
    { 'tiktok.txt': TIKTOK_LIST, 'leases.csv': '127.0.2.1,aa:bb:cc:dd:ee:01,phone\n' },
    { watch: true },
  );
  const from = (ip: string) => (): string => ip;
  const names = Array.from({ length: 40 }, () => 'www.tiktok.com');
  t.ok((await spread(h, names, from('127.0.2.1'))).every((r) => r === 0), 'the device at 127.0.2.1 is excepted on every thread (40 source ports)');
  // The device moves to 127.0.2.2: its exception goes with it, on every thread.
  writeFileSync(join(h.dir, 'leases.csv'), '127.0.2.2,aa:bb:cc:dd:ee:01,phone\n');
  // The main thread rebuilds the table when the file changes and hands it to the worker thread: wait until
  // 40 queries from 40 source ports (so both threads) all see the move.
  const deadline = Date.now() + 15_000;
  let left: number[] = [];
  while (!(left = await spread(h, names, from('127.0.2.1'))).every((r) => r === 3) && Date.now() < deadline);
  t.ok(left.every((r) => r === 3), 'the address it left is blocked again on every thread');
  t.ok((await spread(h, names, from('127.0.2.2'))).every((r) => r === 0), 'its new address is excepted on every thread');
  // A query thread that restarts is given the whole table as it is then, once; after that, the deltas.
  await h.running.workers!.kill(1);
  for (const until = Date.now() + 10_000; h.running.workers!.live < 1 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 20));
  t.equal(h.running.workers!.live, 1, 'the query thread restarted');
  t.ok((await spread(h, names, from('127.0.2.2'))).every((r) => r === 0), 'the restarted thread knows the device where it is now');
  const moved = once(h.running.identity, 'swap');
  writeFileSync(join(h.dir, 'leases.csv'), '127.0.2.3,aa:bb:cc:dd:ee:01,phone\n');
  await moved;
  t.ok((await spread(h, names, from('127.0.2.3'))).every((r) => r === 0), 'and follows its next move (a delta)');
  t.ok((await spread(h, names, from('127.0.2.2'))).every((r) => r === 3), 'on every thread');
});

t.test('lease changes never stall a query thread: rows appended to a 50k-lease Kea file while clients query', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const s = Math.floor(Date.now() / 1000);
  const MAC = 'aa:bb:cc:dd:ee:01';
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  const row = (ip: string, mac: string, host: string, start = s - 60): string => `${ip},${mac},,3600,${start + 3600},1,0,0,${host},0,,0\n`;
  const device = (i: number): [string, string] => [`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, `02:00:00:${hex(i >> 16)}:${hex((i >> 8) & 255)}:${hex(i & 255)}`];
  const N = 50_000;
  const text = KEA_HEADER + Array.from({ length: N }, (_, i) => row(...device(i), `d${i}`)).join('') + row('127.0.3.1', MAC, 'phone');
  // Self-calibrating (the machine is shared): one whole read of this file, parse and build, on this
  // machine as loaded as it is now (and again after the changes: the larger counts). The query
  // thread paid at least that on every change before.
  const rebuild = (): number => {
    const c0 = performance.now();
    t.equal(buildIdentity([parseLeases('kea-csv', 'leases.csv', text).leases], new Map(), Date.now()).table.size, N + 1);
    return performance.now() - c0;
  };
  let rebuildMs = rebuild();
  const h = await startSinkhole(
    t, up.port,
    {
      ...CONFIG,
      identity: { leases: [{ format: 'kea-csv', file: 'leases.csv' }] },
      exceptions: [{ id: 'MAC-1', clients: [`mac:${MAC}`], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
    },
    { 'tiktok.txt': TIKTOK_LIST, 'leases.csv': text },
    { watch: true },
  );
  const identity = h.running.identity;
  t.equal(identity.holder.current.size, N + 1, 'the devices are known before the first query');
  const file = join(h.dir, 'leases.csv');
  const deltas: IdentityDelta[] = [];
  let swapsWhileWriting = 0;
  let writing = true;
  let applyMs = 0;
  identity.on('swap', (d: IdentityDelta) => {
    deltas.push(d);
    applyMs = Math.max(applyMs, identity.lastApplyMs);
    if (writing) swapsWhileWriting++;
  });

  // Kea at work: 20 changes over ~2 s, each appending renewals; the 7th moves the excepted device
  // from 127.0.3.1 to 127.0.3.2; the 9th replaces the file whole (a new file renamed into place, read
  // whole in the identity thread). Written out beforehand, so the test's own work stays off the clock.
  const changes = Array.from({ length: 20 }, (_, i) => {
    let rows = '';
    for (let k = 0; k < 3; k++) rows += row(...device((i * 7919 + k * 104_729) % N), `renewed${i}`, s - 40 + i);
    if (i === 6) rows += row('127.0.3.2', MAC, 'phone', s - 40 + i) + row('127.0.3.1', 'aa:bb:cc:dd:ee:02', 'guest', s - 40 + i);
    return rows;
  });
  const REPLACE_AT = 8;
  const replacement = `${file}.new`;
  writeFileSync(replacement, text + changes.slice(0, REPLACE_AT + 1).join(''));
  const last = device((19 * 7919 + 2 * 104_729) % N)[0];

  // A client queries in a loop (each query from a fresh source port, so both query threads answer).
  let probing = true;
  let worst = 0;
  let probes = 0;
  let unanswered = 0;
  const probe = async (): Promise<void> => {
    while (probing) {
      const q0 = performance.now();
      try {
        const r = await udpExchange(h.port, buildQuery('www.tiktok.com', T.A), 2000);
        if (rcodeOf(r) !== 3) throw new Error('not blocked');
      } catch {
        unanswered++;
      }
      worst = Math.max(worst, performance.now() - q0);
      probes++;
    }
  };
  const prober = probe();

  for (let i = 0; i < changes.length; i++) {
    if (i === REPLACE_AT) renameSync(replacement, file);
    else appendFileSync(file, changes[i]!);
    await new Promise((r) => setTimeout(r, 100)); // pacing the writer, as Kea's renewals are
  }
  writing = false;
  // The last rows reach the table (event-driven, bounded): the last renewal's lease end.
  const lastEnd = (s - 40 + 19 + 3600) * 1000;
  const deadline = Date.now() + 8000;
  while (identity.holder.current.lookup(last, Date.now())?.end !== lastEnd && Date.now() < deadline) {
    await Promise.race([once(identity, 'swap'), new Promise((r) => setTimeout(r, 250))]);
  }
  probing = false;
  await prober;
  rebuildMs = Math.max(rebuildMs, rebuild());

  t.equal(identity.holder.current.lookup(last, Date.now())?.end, lastEnd, 'the appended rows took effect');
  t.equal(unanswered, 0, `every one of ${probes} queries was answered`);
  t.ok(probes > 50, `${probes} queries during the changes`);
  t.ok(worst < rebuildMs / 2, `no query waited on a lease read: the slowest took ${worst.toFixed(1)} ms; one whole read and build takes ${rebuildMs.toFixed(0)} ms`);
  t.ok(applyMs < rebuildMs / 20, `the main thread applied each change in at most ${applyMs.toFixed(2)} ms`);
  // A file that changes more often than the debounce is still read (at least once a second), not only once it is quiet.
  t.ok(swapsWhileWriting >= 1, `the file was read while it kept changing (${swapsWhileWriting} updates)`);
  const largest = Math.max(...deltas.map((d) => d.devices.length));
  t.ok(deltas.every((d) => !d.reset) && largest <= 20 * 3 + 2, `each change reached the query threads as a delta of what changed (largest: ${largest} addresses), never the ${N}-lease table`);
  t.equal(identity.holder.current.size, N + 2);
  // The exception followed the device, on every query thread (40 queries from 40 source ports).
  const names = Array.from({ length: 40 }, () => 'www.tiktok.com');
  t.ok((await spread(h, names, () => '127.0.3.2')).every((r) => r === 0), 'its new address is excepted on every thread');
  t.ok((await spread(h, names, () => '127.0.3.1')).every((r) => r === 3), 'the address it left is blocked on every thread');
  // The report names the device that held 127.0.3.1 when each query was answered, whichever thread answered
  // (a worker thread resolves it itself: its batch reaches the main thread up to 250 ms later).
  let reported: ReportRow | undefined;
  for (const until = Date.now() + 5000; (reported = (await h.running.readReport()).clients.find((c) => c.client === '127.0.3.1'))?.blocked !== 40 && Date.now() < until; ) {
    await new Promise((r) => setTimeout(r, 50));
  }
  t.match(reported, { mac: 'aa:bb:cc:dd:ee:02', hostname: 'guest', blocked: 40 }, 'the report row is the device now at the address, for all 40 queries');
  t.comment(
    `50k leases: whole read+build ${rebuildMs.toFixed(0)} ms here; the last update took ${identity.lastUpdateMs.toFixed(1)} ms in the identity thread ` +
      `and ${identity.lastApplyMs.toFixed(3)} ms to apply on the main thread; slowest query ${worst.toFixed(1)} ms of ${probes}`,
  );
});

t.test('workers: a number, or auto for one per core', async (t) => {
  const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'sinkhole-workers-'));
  const file = join(dir, 'sinkhole.yaml');
  writeFileSync(file, 'workers: auto\n');
  t.equal(loadConfig(file).workers, availableParallelism(), 'auto = availableParallelism()');
  writeFileSync(file, 'workers: 0\n');
  t.throws(() => loadConfig(file), PolicyError);
  try {
    loadConfig(file);
  } catch (e) {
    t.match((e as Error).message, /sinkhole\.yaml:1:10: workers: expected a whole number from 1 to 256, or auto/, 'a bad value names file:line:col');
  }
});

t.test('a second instance cannot join the first one\'s SO_REUSEPORT group: it fails with SH_LISTEN, and every query stays with the first', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const first = await startSinkhole(t, up.port, CONFIG, { 'tiktok.txt': TIKTOK_LIST });
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-second-'));
  // Another policy (nothing blocked) on the same address, also with two threads.
  writeFileSync(join(dir, 'empty.txt'), '# nothing\nexample.invalid\n');
  writeFileSync(
    join(dir, 'sinkhole.yaml'),
    `listen: { dns: ["127.0.0.1:${first.port}"] }\nupstreams: { servers: ["127.0.0.1:${up.port}"] }\nblocking: { lists: { other: [empty.txt] }, enforce: [other] }\nworkers: 2\n`,
  );
  const { spawnSync } = await import('node:child_process');
  const second = spawnSync(process.execPath, [join(import.meta.dirname, '..', 'dist', 'cli.js'), 'serve', '--config', join(dir, 'sinkhole.yaml')], { encoding: 'utf8', timeout: 20_000 });
  t.equal(second.status, 1, 'the second instance exits 1 (a listener cannot bind)');
  t.match(second.stderr, new RegExp(`SH_LISTEN cannot listen for DNS over UDP on 127\\.0\\.0\\.1:${first.port}: EADDRINUSE \\(another process has this port\\)`));
  const answers = await spread(first, Array.from({ length: 12 }, () => 'www.tiktok.com'));
  t.same(answers, Array(12).fill(3), 'all 12 queries for www.tiktok.com sinkholed by the first instance');
});

t.test('workers: 2 on a fixed port: the exclusive check passes when the port is free, and the server answers', async (t) => {
  const { assertAddressFree } = await import('../src/transport/exclusive.js');
  // Free for UDP and TCP a moment ago, unless something grabs it in between.
  const port = await freeDnsPort();
  // It used to wait for 'listening' after bind() had already emitted it (literalLookup answers at
  // once), and so never returned: every `workers: N` server on a fixed port hung at start.
  let settled = false;
  const check = Promise.all([assertAddressFree('udp', '127.0.0.1', port), assertAddressFree('tcp', '127.0.0.1', port)]).finally(() => (settled = true));
  await Promise.race([check, new Promise((r) => setTimeout(r, 2000))]);
  t.ok(settled, 'the check of a free address returns');
  await check;

  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-fixed-'));
  writeFileSync(join(dir, 'tiktok.txt'), TIKTOK_LIST);
  writeFileSync(
    join(dir, 'sinkhole.yaml'),
    `listen: { dns: ["127.0.0.1:${port}"] }\nupstreams: { servers: ["127.0.0.1:${up.port}"] }\nblocking: { lists: { tiktok: [tiktok.txt] }, enforce: [tiktok] }\nworkers: 2\n`,
  );
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'dist', 'cli.js'), 'serve', '--config', join(dir, 'sinkhole.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const serving = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 15_000);
    const seen = (): void => void (/info serving /.test(out) && (clearTimeout(timer), resolve(true)));
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.once('exit', () => (clearTimeout(timer), resolve(false)));
  });
  t.ok(serving, `serving with workers=2 on 127.0.0.1:${port}${serving ? '' : `: ${out}`}`);
  t.match(out, new RegExp(`listening for DNS udp=127\\.0\\.0\\.1:${port}`));
  const reply = await udpExchange(port, buildQuery('www.tiktok.com', T.A));
  t.equal(rcodeOf(reply), 3, 'www.tiktok.com sinkholed (NXDOMAIN)');
});
