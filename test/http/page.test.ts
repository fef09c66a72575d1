// The admin page: src/metrics/page.ts and recent.ts (moving to src/http/).
// The admin page (GET /) in a real browser: Chromium (Debian's, or the one
// @sparticuz/chromium ships) driven by playwright-core (helpers/browser.ts). Checks what an admin sees:
// the devices, the per-hour chart, exceptions by time left, the policy in
// force — and that the page asks for nothing from anywhere else.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { launchBrowser } from '../helpers/browser.js';
import { FakeUpstream, T } from '../helpers/fakeUpstream.js';
import { startSinkhole, TIKTOK_LIST } from '../helpers/sinkhole.js';
import { buildQuery, exchange } from '../helpers/dns.js';
import { countTicks, PAGE_DEVICES, renderPage, type PageData } from '../../src/http/page.js';
import { RecentTotals } from '../../src/http/recent.js';
import { hourly, reportRow } from '../../src/report/report.js';
import { mergeHealth, type UpstreamHealth } from '../../src/upstream/forwarder.js';

// A fixed zone, so the hour labels are predictable: UTC+05:30 all year (no summer time), and a half-hour
// offset, so the labels fall on :30. Set before any page is rendered (Node re-reads TZ when it is assigned).
process.env.TZ = 'Asia/Kolkata';
const IST = 5.5 * 3600_000;
const DESKTOP_PNG = '/tmp/page-desktop.png';
const PHONE_PNG = '/tmp/page-phone.png';

const MAC1 = '02:00:00:00:00:01';
const KEA_HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n';
const TOKEN = 'page-test-token-0123456789';

/** No horizontal scroll: the document is no wider than the window. */
const fits = (p: import('playwright-core').Page): Promise<boolean> =>
  p.evaluate(() => {
    const g = globalThis as unknown as { innerWidth: number; document: { documentElement: { scrollWidth: number } } };
    return g.document.documentElement.scrollWidth <= g.innerWidth;
  });

t.test('GET / in chromium: devices, hourly chart, exceptions by time left, traffic, upstreams, policy in force', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  // Listed first and always SERVFAIL: failover tries it, it fails, the other answers.
  const broken = (await FakeUpstream.start()).on('*', { rcode: 2 });
  t.teardown(() => broken.close());
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
      upstreams: { servers: [`127.0.0.1:${broken.port}`, `127.0.0.1:${up.port}`], timeout: '1s' },
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
  for (const name of ['one.example', 'two.example', 'three.example']) await exchange('udp', h.port, buildQuery(name, T.A), '127.0.0.50');

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
  t.ok(box && box.width > 300 && box.height > 100, `the chart is drawn at a readable size (${box?.width}x${box?.height})`);

  // Hours in the server's time zone, named in the header and the caption.
  t.equal(await page.textContent('#tz'), 'Asia/Kolkata', 'the header names the time zone');
  const hhmm = (ms: number): string => new Date(ms + IST).toISOString().slice(11, 16);
  const thisHour = Math.floor(Date.now() / 3600_000) * 3600_000;
  t.match(await page.locator('#hourly rect').last().textContent(), new RegExp(`^\\d+ \\w{3} ${hhmm(thisHour)} \\(this hour, so far\\): 5 blocked$`), 'a bar names its local hour and count');
  const hourLabels = await page.$$eval('#hourly text.hour', (ts) => ts.map((x) => x.textContent));
  const expected = Array.from({ length: 24 }, (_, i) => thisHour - (23 - i) * 3600_000).filter((ms) => new Date(ms + IST).getUTCHours() % 3 === 0).map(hhmm);
  t.same(hourLabels, expected, 'every third local hour is labelled, at :30 in a +05:30 zone');
  t.same(await page.$$eval('#hourly text.count', (ts) => ts.map((x) => x.textContent)), ['0', '2', '4', '6'], 'a count scale up past the tallest bar');
  t.match(await page.textContent('#hourly-caption'), /Blocked attempts per hour.*last 24 hours.*hours in Asia\/Kolkata/, 'the caption says what the bars are');

  // The last hour's traffic, from the counters, and each upstream's health.
  t.equal(await page.textContent('#recent-queries'), '8', 'queries since start (under an hour)');
  t.equal(await page.textContent('#recent-blocked'), '5');
  t.match(await page.textContent('#rates'), /since the server started: 8 queries, 5 blocked, 62\.5% of queries/);
  const ups = await page.$$eval('#upstreams tbody tr', (rows) => rows.map((r) => [r.getAttribute('data-upstream'), r.getAttribute('data-state'), ...[...r.querySelectorAll('td')].slice(2).map((td) => td.textContent)]));
  t.same(ups, [
    [`127.0.0.1:${broken.port}`, 'down', '3', 'just now', '3', '0'],
    [`127.0.0.1:${up.port}`, 'up', '0', '—', '0', '3'],
  ], 'the broken upstream is down after three failures in a row; the other answered');
  t.match(await page.textContent('#glance'), /Healthy · 2 device\(s\) still trying · 2 active exception\(s\) · upstreams: 1 of 2 up/);

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
  t.ok(await fits(page), 'nothing wider than a desktop window');
  await page.screenshot({ path: DESKTOP_PNG, fullPage: true });

  // A phone's width: the tables become cards, nothing scrolls sideways, the chart is still there.
  const phone = await launchBrowser({ authorization: `Bearer ${TOKEN}` }, { width: 390, height: 844 });
  t.teardown(() => phone.close());
  const small = phone.context.pages()[0] ?? (await phone.context.newPage());
  t.equal((await small.goto(`${origin}/`))?.status(), 200);
  t.ok(await fits(small), 'nothing overflows horizontally at 390 px');
  const pbox = await small.locator('#hourly').boundingBox();
  t.ok(pbox && pbox.width > 300 && pbox.width <= 390 && pbox.height > 80, `the chart fits the phone (${pbox?.width}x${pbox?.height})`);
  t.ok(await small.locator('#hourly').isVisible(), 'and is visible');
  t.equal(await small.locator('#devices thead').isVisible(), false, 'the table heads give way to labelled cards');
  await small.screenshot({ path: PHONE_PNG, fullPage: true });
  t.comment(`screenshots: ${DESKTOP_PNG} ${PHONE_PNG}`);

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
    now: 0, version: 'test', timeZone: 'UTC', recent: undefined, upstreams: [],
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

t.test('the chart: hour labels in the given zone, midnight names the day, a 1-2-5 count scale', (t) => {
  // 15:20 UTC is 10:20 in New York (EST, UTC-5) on 7 December.
  const now = Date.UTC(2026, 11, 7, 15, 20);
  const counts = new Map([[Date.UTC(2026, 11, 7, 15), 5], [Date.UTC(2026, 11, 7, 2), 1]]);
  const html = renderPage({
    now, version: 'test', timeZone: 'America/New_York', recent: { ms: 3_600_000, queries: 1200, blocked: 6 }, upstreams: [],
    report: { windowSeconds: 7 * 86_400, source: 'memory', instances: 1, hourly: hourly(counts, now, 7 * 86_400_000), clients: [] },
    exceptions: [], policy: { generation: 1, lists: [], degraded: [] }, identity: { devices: 0, sources: [] },
  });
  const texts = (cls: string): string[] => [...html.matchAll(new RegExp(`<text class="${cls}( minor)?"[^>]*>([^<]*)</text>`, 'g'))].map((m) => m[2]!);
  t.equal(html.match(/<rect /g)?.length, 24, 'the last 24 hours of a 7-day window');
  t.same(texts('tick hour'), ['12:00', '15:00', '18:00', '21:00', '00:00', '03:00', '06:00', '09:00'], 'every third local hour, oldest first');
  t.same([...html.matchAll(/<text class="tick hour minor"[^>]*>([^<]*)</g)].map((m) => m[1]), ['15:00', '21:00', '03:00', '09:00'], 'a phone shows every sixth');
  t.same(texts('tick'), ['7 Dec'], 'midnight names its day');
  t.same(texts('tick count'), ['0', '2', '4', '6']);
  t.match(html, /<title>7 Dec 10:00 \(this hour, so far\): 5 blocked<\/title>/);
  t.match(html, /<title>6 Dec 21:00: 1 blocked<\/title>/, '02:00 UTC is 21:00 the day before in New York');
  t.match(html, /Over the last hour: <strong id="recent-queries">1200<\/strong> queries \(20\.0\/min\), <strong id="recent-blocked">6<\/strong> blocked \(0\.1\/min\), 0\.50% of queries/);
  t.same(countTicks(0), [0, 1]);
  t.same(countTicks(4), [0, 1, 2, 3, 4]);
  t.same(countTicks(37), [0, 10, 20, 30, 40]);
  t.same(countTicks(1234), [0, 500, 1000, 1500]);
  t.end();
});

t.test('the last hour from one sample of the counters a minute', (t) => {
  const r = new RecentTotals();
  const at = (min: number): number => Date.UTC(2026, 11, 7) + min * 60_000;
  const totals = (min: number) => ({ queries: min * 10, blocked: min, upstreams: { a: { ok: min * 9, failed: min > 80 ? min - 80 : 0 } } });
  t.equal(r.since(at(0), totals(0)), undefined, 'nothing before the first sample');
  for (let m = 0; m <= 5; m++) r.record(at(m), totals(m));
  t.same(r.since(at(5), totals(5)), { ms: 5 * 60_000, queries: 50, blocked: 5, upstreams: { a: { ok: 45, failed: 0 } } }, 'under an hour: since the first sample');
  for (let m = 6; m <= 90; m++) r.record(at(m), totals(m));
  t.same(r.since(at(90), totals(90)), { ms: 3_600_000, queries: 600, blocked: 60, upstreams: { a: { ok: 540, failed: 10 } } }, 'then the last 60 minutes');
  t.equal(r.since(at(90) + 30_000, { ...totals(90), queries: 905 })?.queries, 905 - 310, 'between samples: from the oldest sample within the hour (minute 31)');
  t.end();
});

t.test('upstream health over query threads: per upstream, the worst any thread saw', (t) => {
  const up = (label: string, state: UpstreamHealth['state'], failuresInRow: number, lastFailure?: number): UpstreamHealth => ({ label, state, failuresInRow, lastFailure });
  t.same(
    mergeHealth([
      [up('a', 'up', 0), up('b', 'failing', 1, 100)],
      [up('a', 'down', 3, 50), up('b', 'up', 0, 200)],
    ]),
    [up('a', 'down', 3, 50), up('b', 'failing', 1, 200)],
  );
  t.end();
});
