// Issue 20: blocked queries from 1,000 distinct devices, with compliance events off and on, in one
// sitting. Each device asks for www.tiktok.com THRESHOLD+5 times at a steady total rate, while a
// bystander on another address asks a forwarded name every 10 ms; prints the bystander's p50/p99 and
// the events a UDP syslog receiver got (each device must be announced exactly once).
//   node bench/events-flood.mjs            # RATE=2000 queries/s, DEVICES=1000
// Loopback only: sinkhole (dist/cli.js), its fake upstream and the receiver are on 127.0.0.0/8.
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const DEVICES = Number(process.env.DEVICES ?? 1000);
const RATE = Number(process.env.RATE ?? 2000);
const THRESHOLD = 20;
const PER_DEVICE = THRESHOLD + 5;
const root = join(import.meta.dirname, '..');

function question(name, id) {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h[2] = 1;
  h.writeUInt16BE(1, 4);
  return Buffer.concat([h, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

/** A fake upstream: every A is 192.0.2.10. */
async function upstream() {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => {
    let i = 12;
    while (m[i]) i += m[i] + 1;
    const h = Buffer.from(m.subarray(0, 12));
    h[2] = 0x81;
    h[3] = 0x80;
    h.writeUInt16BE(1, 6);
    s.send(Buffer.concat([h, m.subarray(12, i + 5), Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 10])]), r.port, r.address);
  });
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  return s;
}

async function sitting(events) {
  const up = await upstream();
  const syslog = dgram.createSocket('udp4');
  const got = [];
  syslog.on('message', (m) => got.push(m.toString()));
  await new Promise((r) => syslog.bind(0, '127.0.0.1', r));
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-events-flood-'));
  writeFileSync(join(dir, 'tiktok.txt'), 'tiktok.com\n');
  writeFileSync(join(dir, 'sinkhole.yaml'), [
    'listen: { dns: ["127.0.0.1:0"] }',
    `upstreams: { servers: ["127.0.0.1:${up.address().port}"] }`,
    'blocking: { lists: { tiktok: [tiktok.txt] }, enforce: [tiktok] }',
    'clients: { allowFrom: ["127.0.0.0/8"], rateLimit: { qps: 100000, burst: 100000 } }',
    ...(events ? ['events:', `  threshold: ${THRESHOLD}`, '  window: 10m', '  cooldown: 1h', `  syslog: [{ address: "udp://127.0.0.1:${syslog.address().port}" }]`] : []),
    '',
  ].join('\n'));
  const child = spawn(join(root, 'bin', 'sinkhole'), ['serve', '--config', join(dir, 'sinkhole.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const port = await new Promise((resolve, reject) => {
    const check = () => {
      const m = /listening for DNS udp=127\.0\.0\.1:(\d+)/.exec(out);
      if (m && /info serving /.test(out)) resolve(Number(m[1]));
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    child.once('exit', () => reject(new Error(out)));
  });

  // The bystander: one forwarded query every 10 ms from 127.0.9.9.
  const probe = dgram.createSocket('udp4');
  await new Promise((r) => probe.bind(0, '127.0.9.9', r));
  const sent = new Map();
  const lat = [];
  let pid = 0;
  probe.on('message', (m) => {
    const t0 = sent.get(m.readUInt16BE(0));
    if (t0 !== undefined) lat.push(performance.now() - t0);
  });
  const probeTimer = setInterval(() => {
    pid = (pid + 1) & 0xffff;
    sent.set(pid, performance.now());
    probe.send(question(`probe${pid % 50}.example.org`, pid), port, '127.0.0.1');
  }, 10);

  // The flood: DEVICES sockets, each on its own 127.0.x.y, round robin at RATE queries/s.
  const socks = [];
  for (let i = 0; i < DEVICES; i++) {
    const s = dgram.createSocket('udp4');
    s.on('message', () => {});
    await new Promise((r) => s.bind(0, `127.0.${10 + Math.floor(i / 250)}.${1 + (i % 250)}`, r));
    socks.push(s);
  }
  const total = DEVICES * PER_DEVICE;
  const started = performance.now();
  for (let n = 0; n < total; n++) {
    socks[n % DEVICES].send(question('www.tiktok.com', n & 0xffff), port, '127.0.0.1');
    if (n % 100 === 99) {
      const due = started + ((n + 1) / RATE) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }
  const floodMs = performance.now() - started;
  await new Promise((r) => setTimeout(r, 2000));
  clearInterval(probeTimer);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  for (const s of [...socks, probe, syslog, up]) s.close();
  lat.sort((a, b) => a - b);
  const pct = (p) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]?.toFixed(2);
  const devices = new Set(got.map((l) => /src=(\S+)/.exec(l)?.[1]));
  return { events, queries: total, floodMs: Math.round(floodMs), probes: lat.length, p50: pct(50), p99: pct(99), max: lat.at(-1)?.toFixed(2), received: got.length, devicesAnnounced: devices.size };
}

for (const events of (process.env.SITTINGS ?? "off,on,off,on").split(",").map((s) => s === "on")) console.log(JSON.stringify(await sitting(events)));
