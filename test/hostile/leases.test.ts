// A large lease change under queries (issue 23 item 6), against `sinkhole
// serve` (a child process): a csv lease file grows to 200,000 rows and
// shrinks back to one while a bystander asks every 10 ms from another
// address. The identity thread parses off the query threads; what the query
// threads do with the change must not stall DNS either. And a device whose
// lease never changed keeps its exception by MAC throughout.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { describeProbe, p99Bound, percentile, probeProcess, startChild, yieldCpu } from './harness.js';

/** The bound for the bystander while the table changes (see p99Bound for a machine busy with other work). */
const P99_LIMIT_MS = 50;
const ROWS = 200_000;
const MAC = '02:00:00:00:00:01';
/** The excepted device's row, first in every version of the file: its lease never changes. */
const DEVICE = `127.0.0.21,${MAC},phone\n`;

function bigFile(): string {
  const rows: string[] = [DEVICE];
  for (let i = 1; i < ROWS; i++) {
    const mac = `02:01:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}:00`;
    rows.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255},${mac},host${i}\n`);
  }
  return rows.join('');
}

t.test('a 200,000-row lease file written and shrunk back: the bystander p99 stays low, the device keeps its exception', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const child = await startChild(
    t,
    {
      upstreams: { servers: [`127.0.0.1:${up.port}`], timeout: '1s' },
      blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
      clients: { allowFrom: ['127.0.0.0/8'] },
      identity: { leases: [{ format: 'csv', file: 'leases.csv' }] },
      exceptions: [{ id: 'EX-MAC', clients: [`mac:${MAC}`], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
    },
    { 'tiktok.txt': 'tiktok.com\n', 'leases.csv': DEVICE },
  );
  const devices = (): Promise<number> => child.metric('sinkhole_identity_devices');
  const until = async (what: string, check: () => Promise<boolean>, ms: number): Promise<number> => {
    const started = Date.now();
    while (!(await check())) {
      if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return Date.now() - started;
  };
  const quiet = await probeProcess(child.port, 'probe.example.test', T.A, 10, 1000, '127.0.0.2');
  const big = bigFile();
  const rss0 = child.rss();
  const WINDOW_MS = 12_000;
  const bystander = probeProcess(child.port, 'probe.example.test', T.A, 10, WINDOW_MS, '127.0.0.2');
  const device = probeProcess(child.port, 'www.tiktok.com', T.A, 10, WINDOW_MS, '127.0.0.21');
  yieldCpu();
  const started = Date.now();
  await new Promise((r) => setTimeout(r, 300));
  writeFileSync(join(child.dir, 'leases.csv'), big);
  const grew = await until('200,000 devices', async () => (await devices()) === ROWS, 8000);
  const rss1 = child.rss();
  writeFileSync(join(child.dir, 'leases.csv'), DEVICE);
  const shrank = await until('back to one device', async () => (await devices()) === 1, 8000);
  const cycle = Date.now() - started;
  const [b, d] = await Promise.all([bystander, device]);
  t.comment(`quiet: ${describeProbe(quiet)}`);
  t.comment(`bystander during the change: ${describeProbe(b)}`);
  t.comment(`the excepted device: ${describeProbe(d)}, rcodes ${JSON.stringify(d.rcodes)}`);
  t.comment(`grown in ${grew} ms, shrunk in ${shrank} ms; RSS ${(rss0 / 2 ** 20).toFixed(0)} → ${(rss1 / 2 ** 20).toFixed(0)} MiB`);
  t.ok(cycle < WINDOW_MS, `the whole change (${cycle} ms) fell inside the probes' ${WINDOW_MS} ms`);
  const { bound, why } = p99Bound(quiet, P99_LIMIT_MS);
  t.ok(percentile(b.latencies, 99) < bound, `bystander p99 ${percentile(b.latencies, 99).toFixed(2)} ms < ${why}`);
  t.equal(b.lost, 0, 'no bystander query lost');
  t.equal(d.lost, 0, 'no device query lost');
  t.same(d.rcodes, { 0: d.latencies.length }, 'the device whose lease never changed was excepted (NOERROR) on every query');
  t.ok(child.alive(), 'still running');
});
