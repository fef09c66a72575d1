// The admin page (GET /) in a real browser: Chromium (Debian's, or the one
// @sparticuz/chromium ships) driven by playwright-core (helpers/browser.ts). Checks what an admin sees:
// the devices, the per-hour chart, exceptions by time left, the policy in
// force — and that the page asks for nothing from anywhere else.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { launchBrowser } from './helpers/browser.js';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST } from './helpers/sinkhole.js';
import { buildQuery, exchange } from './helpers/dns.js';
import { PAGE_DEVICES, renderPage, type PageData } from '../src/metrics/page.js';
import { reportRow } from '../src/querylog/report.js';

const MAC1 = '02:00:00:00:00:01';
const KEA_HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n';
const TOKEN = 'page-test-token-0123456789';

t.test('GET / in chromium: devices, hourly chart, exceptions by time left, policy in force', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const s = Math.floor(Date.now() / 1000);
  const iso = (ms: number): string => new Date(Date.now() + ms).toISOString().replace(/\.\d+Z$/, 'Z');
  const soon = iso(3 * 3600_000);
  const tomorrow = iso(29 * 3600_000);
  const yesterday = iso(-24 * 3600_000);
  const h = await startSinkhole(
    t,
    up.port,
    {
      listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0', httpToken: 'token' },
      blocking: { lists: { tiktok: ['tiktok.txt'], bytedance: ['bytedance.txt'] }, enforce: ['tiktok'] },
      clients: { allowFrom: ['127.0.0.0/16'] },
      identity: { leases: [{ format: 'kea-csv', file: 'leases.csv' }] },
      exceptions: [
        { id: 'EX-LATER', clients: ['127.0.0.90'], allow: ['tiktok'], reason: 'inquiry <b>', approvedBy: 'Clerk', expires: '2999-01-01' },
        { id: 'EX-SOON', clients: [`mac:${MAC1}`], allow: ['tiktok'], reason: 'press', approvedBy: 'Chief Executive', expires: soon },
        { id: 'EX-GONE', clients: ['127.0.0.91'], allow: ['tiktok'], reason: 'old', approvedBy: 'Clerk', expires: '2020-01-01' },
        // Revoked yesterday with a day left to run: DNS, the CLI and /metrics say revoked, and so must the page.
        { id: 'EX-REVOKED', clients: ['127.0.0.92'], allow: ['tiktok'], reason: 'audit', approvedBy: 'Clerk', expires: tomorrow, revoked: yesterday, revokedBy: 'Compliance <Officer>' },
      ],
    },
    {
      'tiktok.txt': TIKTOK_LIST,
      'bytedance.txt': 'capcut.com\nlemon8-app.com\n',
      'leases.csv': `${KEA_HEADER}127.0.0.41,02:00:00:00:00:42,,86400,${s + 86000},1,0,0,staff-laptop,0,,0\n`,
      token: TOKEN,
    },
    { watch: true },
  );
  for (let i = 0; i < 4; i++) await exchange('udp', h.port, buildQuery('www.tiktok.com', T.A), '127.0.0.41');
  await exchange('udp', h.port, buildQuery('v16.tiktokv.com', T.A), '127.0.0.42');

  const browser = await launchBrowser({ authorization: `Bearer ${TOKEN}` });
  t.teardown(() => browser.close());
  t.comment(`browser: ${browser.which}`);
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  const origin = `http://127.0.0.1:${h.running.http!.port}`;
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  const res = await page.goto(`${origin}/`);
  t.equal(res?.status(), 200);
  t.equal(await page.title(), 'sinkhole');

  const devices = await page.$$eval('#devices tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent?.trim())));
  t.same(devices.map((r) => r.slice(0, 4)), [
    ['staff-laptop', '02:00:00:00:00:42', '127.0.0.41', '4'],
    ['—', '—', '127.0.0.42', '1'],
  ], 'the devices, most attempts first, named by hostname and MAC');
  // A first-seen column now stands before last seen.
  t.equal(devices[0]![4], 'just now', 'first seen');
  t.equal(devices[0]![5], 'just now', 'last seen');
  t.equal(devices[0]![6], 'tiktok (4)', 'top lists');
  const bars = await page.$$eval('#hourly rect', (rects) => rects.map((r) => Number(r.getAttribute('data-count'))));
  t.equal(bars.length, 24, 'one bar per hour of the 1-day window');
  t.equal(bars.at(-1), 5, 'this hour has the five attempts');
  const box = await page.locator('#hourly').boundingBox();
  t.ok(box && box.width > 100 && box.height > 20, 'the chart is drawn');

  const exceptions = await page.$$eval('#exceptions tbody tr', (rows) => rows.map((r) => [r.getAttribute('data-id'), r.querySelector('td.left')?.textContent]));
  t.same(exceptions.map((e) => e[0]), ['EX-SOON', 'EX-LATER'], 'active exceptions, expiring soonest first; the revoked and the expired one are not among them');
  t.match(exceptions[0]![1], /^(2h 59m|3h 0m)$/, 'time left');
  // Changed from "1 expired on record": the revoked and expired ones are now listed, below.
  t.match(await page.textContent('#exceptions-summary'), /^2 active, expiring soonest first; 1 revoked and 1 expired on record, below\.$/);
  const ended = await page.$$eval('#ended tbody tr', (rows) => rows.map((r) => [r.getAttribute('data-id'), r.getAttribute('data-state'), r.querySelector('td.state')?.textContent]));
  t.same(ended, [
    ['EX-REVOKED', 'revoked', `revoked ${yesterday} by Compliance <Officer>`],
    ['EX-GONE', 'expired', 'expired 2020-01-01'],
  ], 'revoked and expired, latest ended first, with who revoked and when');
  t.match(await page.locator('#exceptions').innerText(), /inquiry <b>/, 'text is escaped, not markup');

  t.equal(await page.textContent('#generation'), '1');
  t.equal(await page.textContent('#status'), 'Healthy');
  const lists = await page.$$eval('#lists tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
  t.same(lists, [['tiktok', '4', 'enforced'], ['bytedance', '2', 'not enforced']]);
  t.ok(requests.every((u) => u.startsWith(origin)), `nothing fetched from elsewhere: ${requests.join(' ')}`);
  t.equal(await page.locator('script').count(), 0, 'no script at all');
  t.match(res?.headers()['content-security-policy'], /^default-src 'none'; style-src 'unsafe-inline';.*frame-ancestors 'none'/, 'and the browser is told to load nothing else');
  t.equal(await page.locator('#hourly rect').first().evaluate((e) => (globalThis as unknown as { getComputedStyle(el: unknown): { fill: string } }).getComputedStyle(e).fill), 'rgb(170, 17, 17)', 'the inline style still applies under that policy');

  // A broken lease file degrades the page (and the last good leases stay in force).
  const swapped = once(h.running.identity, 'swap');
  writeFileSync(join(h.dir, 'leases.csv'), `${KEA_HEADER}not-an-address,zz,,1,2,1,0,0,x,0,,0\n`);
  await swapped;
  await page.reload();
  t.equal(await page.textContent('#status'), 'Degraded');
  t.match(await page.textContent('#degraded'), /leases\.csv:2:1: expected an IP address in column "address"/);

  // Without the token the page is refused.
  const bare = await fetch(`${origin}/`);
  t.equal(bare.status, 401);
});

t.test('the page lists the most active devices, not all 100,000 a report may hold', (t) => {
  const data = (n: number): PageData => ({
    now: 0, version: 'test',
    report: {
      windowSeconds: 86_400, source: 'memory', instances: 1, hourly: [],
      clients: Array.from({ length: n }, (_, i) => reportRow(`10.0.${i >> 8}.${i & 255}`, '', '', n - i, 0, 0, [['tiktok', n - i]])),
    },
    exceptions: [], policy: { generation: 1, lists: [], degraded: [] }, identity: { devices: 0, sources: [] },
  });
  const rows = (html: string): number => html.match(/<tr data-mac=/g)?.length ?? 0;
  const big = renderPage(data(5000));
  t.equal(rows(big), PAGE_DEVICES, `${PAGE_DEVICES} rows of 5,000`);
  t.match(big, /data-client="10\.0\.0\.0"/, 'the most active is among them');
  t.match(big, new RegExp(`The ${PAGE_DEVICES} most active of 5000 are shown; every device: <code>sinkhole report</code>`), 'and the page says where the rest are');
  const small = renderPage(data(3));
  t.equal(rows(small), 3, 'a short report is shown whole');
  t.notMatch(small, /most active of/, 'with no note');
  t.end();
});
