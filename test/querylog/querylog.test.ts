// src/querylog/: the query log (queryLog.ts, anonymize.ts) and its log targets (lineWriter.ts):
// what is logged, truncated addresses, and targets that fail and recover. (dnstap: dnstap.test.ts.)
import t from 'tap';
import { existsSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST } from '../helpers/sinkhole.js';
import { buildQuery, exchange, rcodeOf, udpExchange } from '../helpers/dns.js';
import { streamLogger } from '../../src/log.js';
import { anonymize } from '../../src/querylog/anonymize.js';
import { samples, get } from '../helpers/http.js';

const CONFIG = {
  listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
  blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
  clients: { allowFrom: ['127.0.0.0/16'] },
  exceptions: [{ id: 'EX-1', clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
};

t.test('query log: blocked by default, all when asked, addresses truncated when asked', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  for (const [mode, anonymizeClients, expected] of [
    ['blocked', false, ['www.tiktok.com|blocked|127.0.0.1']],
    ['all', true, ['www.tiktok.com|blocked|127.0.0.0', 'ok.example.test|forwarded|127.0.0.0']],
    ['none', false, []],
  ] as const) {
    const h = await startSinkhole(t, up.port, { ...CONFIG, log: { queries: mode, file: 'queries.jsonl', anonymizeClients } }, { 'tiktok.txt': TIKTOK_LIST });
    await exchange('udp', h.port, buildQuery('www.tiktok.com', T.A));
    await exchange('udp', h.port, buildQuery('ok.example.test', T.A));
    await h.running.close();
    let lines: string[] = [];
    try {
      lines = readFileSync(join(h.dir, 'queries.jsonl'), 'utf8').trim().split('\n').filter(Boolean);
    } catch {
      lines = [];
    }
    const got = lines.map((l) => JSON.parse(l) as { name: string; result: string; client: string }).map((r) => `${r.name}|${r.result}|${r.client}`);
    t.same(got, expected, `log.queries: ${mode}, anonymizeClients: ${anonymizeClients}`);
  }
  // Lines are built by hand (querylog/jsonLine.ts): a name with quotes, backslashes, control and
  // non-ASCII bytes must still come out as JSON that decodes to the same name.
  const h = await startSinkhole(t, up.port, { ...CONFIG, log: { queries: 'all', file: 'odd.jsonl' } }, { 'tiktok.txt': TIKTOK_LIST });
  const odd = 'a"b\\c\x01\xe9.example.test';
  await exchange('udp', h.port, buildQuery(odd, T.A));
  await h.running.close();
  const line = JSON.parse(readFileSync(join(h.dir, 'odd.jsonl'), 'utf8').trim()) as Record<string, unknown>;
  t.equal(line.name, odd.replace(/\\/g, '\\\\'), 'an odd name survives as JSON (with its backslash escaped, RFC 4343)');
  t.same(Object.keys(line), ['time', 'client', 'proto', 'name', 'type', 'result', 'rcode'], 'the fields, in order');
  t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'time is ISO 8601 UTC');
  t.equal(anonymize('10.20.1.17'), '10.20.1.0', 'IPv4 → /24');
  t.equal(anonymize('2001:db8:1234:5678:9abc::1'), '2001:db8:1234:5600::', 'IPv6 → /56');
});

t.test('log targets that fail recover by themselves; lines lost are counted; a failing audit trail is loud', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const lines: string[] = [];
  const log = streamLogger((l) => lines.push(l));
  const config = { ...CONFIG, log: { queries: 'all', file: 'q.jsonl', audit: 'logs/audit.jsonl' } };
  const h = await startSinkhole(t, up.port, config, { 'tiktok.txt': TIKTOK_LIST }, { log });
  const metric = async (name: string): Promise<number> => samples((await get(h, '/metrics')).body).get(name) ?? NaN;
  const until = async (what: string, ok: () => Promise<boolean> | boolean, query = true): Promise<void> => {
    const deadline = Date.now() + 8000;
    for (let i = 0; !(await ok()); i++) {
      if (Date.now() > deadline) throw new Error(`never: ${what}`);
      if (query) await exchange('udp', h.port, buildQuery(`q${i}.example.test`, T.A));
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const qlog = join(h.dir, 'q.jsonl');
  const linesIn = (f: string): number => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0);
  /** Audit lines of exceptions used (the trail also records the exception records themselves). */
  const usesIn = (f: string): number => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter((l) => l.includes('"event":"use"')).length : 0);

  // A full disk: the query log's path leads to /dev/full, where every write fails with ENOSPC.
  symlinkSync('/dev/full', qlog);
  await until('the query log fails', async () => (await metric('sinkhole_log_failing{log="queries"}')) === 1);
  t.ok((await metric('sinkhole_log_dropped_lines_total{log="queries"}')) >= 1, 'dropped lines are counted');
  t.ok(lines.some((l) => /error SH_LOG_WRITE cannot write the query log.*error=ENOSPC/.test(l)), 'and the failure is logged once');
  t.equal(rcodeOf(await udpExchange(h.port, buildQuery('still.example.test', T.A))), 0, 'DNS keeps answering');
  // Room again: the path is a plain file now. The writer retries by itself, with no SIGHUP.
  rmSync(qlog);
  writeFileSync(qlog, '');
  await until('the query log is written again', () => linesIn(qlog) > 0);
  t.equal(await metric('sinkhole_log_failing{log="queries"}'), 0, 'no longer failing');
  t.ok(lines.some((l) => /info queries log is written again/.test(l)), 'the recovery is logged');

  // A deleted folder: the audit trail's folder is removed under it.
  const excepted = (): Promise<Buffer> => exchange('udp', h.port, buildQuery('www.tiktok.com', T.A), '127.0.0.7');
  await excepted();
  const audit = join(h.dir, 'logs', 'audit.jsonl');
  await until('the audit line is written', () => usesIn(audit) === 1, false);
  rmSync(join(h.dir, 'logs'), { recursive: true });
  await excepted();
  await until('the audit folder is recreated and written', async () => {
    await excepted();
    return usesIn(audit) > 0;
  }, false);
  t.ok((await metric('sinkhole_log_dropped_lines_total{log="audit"}')) >= 1, 'audit lines written into the deleted file are counted as lost');
  t.ok(lines.some((l) => /error SH_LOG_WRITE audit log file was deleted; reopening it/.test(l)), 'and logged');

  // The audit trail failing is loud: a metric, the /readyz body, the log.
  rmSync(audit);
  symlinkSync('/dev/full', audit);
  await until('the audit trail fails', async () => {
    await excepted();
    return (await metric('sinkhole_log_failing{log="audit"}')) === 1;
  }, false);
  const ready = await get(h, '/readyz');
  t.equal(ready.status, 200, '/readyz stays 200: DNS is still answered');
  t.match(ready.body, /^ready, degraded: audit log failing: ENOSPC since \S+ \(.*audit\.jsonl\); \d+ lines dropped\n$/, 'and its body says the audit trail is failing');
  t.ok(lines.some((l) => /error SH_LOG_WRITE cannot write the audit trail; exceptions used are NOT being recorded/.test(l)), 'logged as an error');
});
