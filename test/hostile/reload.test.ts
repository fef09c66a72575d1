// Reload under load, against `sinkhole serve` (a child process): 100 edits
// of a list, some broken (a bad line, an empty file, the file gone), by file
// watch and by SIGHUP, while clients keep asking. No query may be lost, no
// blocked name ever answered, no allowed name ever blocked, and the last
// good edit must be in force at the end.
import t from 'tap';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { buildQuery, udpExchange } from '../helpers/dns.js';
import { Random, seed, startChild } from './harness.js';

/** A list big enough that each reload costs real work: 20,000 rules. */
const BASE = `tiktok.com\ntiktokv.com\n${Array.from({ length: 20_000 }, (_, i) => `filler${i}.example.invalid`).join('\n')}\n`;

t.test('100 list edits, some broken, during sustained queries', async (t) => {
  const rnd = new Random(seed(t, 'reload under load'));
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const child = await startChild(
    t,
    { upstreams: { servers: [`127.0.0.1:${up.port}`], timeout: '1s' }, blocking: { lists: { tiktok: ['lists/tiktok.txt'] }, enforce: ['tiktok'] } },
    { 'lists/tiktok.txt': BASE },
  );
  const list = join(child.dir, 'lists', 'tiktok.txt');

  let running = true;
  let answered = 0;
  const lost: string[] = [];
  const wrong: string[] = [];
  const client = async (name: string, blocked: boolean): Promise<void> => {
    for (let i = 0; running; i++) {
      try {
        const r = await udpExchange(child.port, buildQuery(name.replace('#', String(i)), T.A), 2000);
        answered++;
        if (((r[3]! & 15) === 3) !== blocked) wrong.push(`${name} ${i}: rcode ${r[3]! & 15}`);
      } catch {
        lost.push(`${name} ${i}`);
      }
    }
  };
  const clients = [
    client('www.tiktok.com', true),
    client('q#.tiktokv.com', true),
    client('allowed.example.test', false),
    client('n#.allowed.example.test', false),
  ];

  let lastGood = '';
  let broken = 0;
  for (let i = 0; i < 100; i++) {
    const kind = rnd.next();
    if (kind < 0.15) {
      writeFileSync(list, `${BASE}this is not a rule ${i}\n`);
      broken++;
    } else if (kind < 0.2) {
      writeFileSync(list, '# emptied by mistake\n');
      broken++;
    } else if (kind < 0.25) {
      rmSync(list, { force: true });
      broken++;
    } else {
      lastGood = `edit${i}.example`;
      // Half saved in place, half by rename (vim, sed -i).
      if (rnd.next() < 0.5) writeFileSync(list, `${BASE}${lastGood}\n`);
      else {
        writeFileSync(`${list}.tmp`, `${BASE}${lastGood}\n`);
        renameSync(`${list}.tmp`, list);
      }
    }
    if (rnd.next() < 0.2) child.proc.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 20 + rnd.int(60)));
  }
  // Leave the last good edit in place, and wait until it is in force.
  writeFileSync(list, `${BASE}${lastGood}\n`);
  const deadline = Date.now() + 10_000;
  while (((await udpExchange(child.port, buildQuery(lastGood, T.A)))[3]! & 15) !== 3) {
    if (Date.now() > deadline) throw new Error(`the last good edit (${lastGood}) never applied`);
    await new Promise((r) => setTimeout(r, 50));
  }
  running = false;
  await Promise.all(clients);
  const reloads = {
    ok: (await child.metric('sinkhole_reloads_total{kind="list",result="success"}')) + (await child.metric('sinkhole_reloads_total{kind="config",result="success"}')),
    failed: (await child.metric('sinkhole_reloads_total{kind="list",result="failure"}')) + (await child.metric('sinkhole_reloads_total{kind="config",result="failure"}')),
  };
  t.comment(`reload under load: 100 edits (${broken} broken) → ${reloads.ok} reloads applied, ${reloads.failed} refused; ${answered} queries answered, ${lost.length} lost, ${wrong.length} wrong`);
  t.same(wrong, [], 'no blocked name was ever answered, no allowed name ever blocked');
  t.same(lost, [], 'no query was lost');
  t.ok(answered > 200, `queries kept flowing (${answered})`);
  t.ok(reloads.ok >= 2 && reloads.ok < 100, `the edits were coalesced into ${reloads.ok} reloads`);
  t.ok(child.alive(), 'alive');
  t.equal(await child.metric('sinkhole_internal_errors_total'), 0, 'no internal error');
});
