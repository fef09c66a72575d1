// workers: N — several query threads on the same addresses (SO_REUSEPORT): queries spread over
// them, one /metrics and one report for all, a reload reaches every thread, and a thread that
// dies under load is restarted while the others keep answering.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST, type Harness } from './helpers/sinkhole.js';
import { buildQuery, rcodeOf, udpExchange } from './helpers/dns.js';
import { loadConfig } from '../src/config/config.js';
import { PolicyError } from '../src/errors.js';

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
