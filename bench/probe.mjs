// The well-behaved client of bench/flood.sh: one query every INTERVAL ms from its own
// loopback address, for DUR seconds; prints one TSV line: sent answered lost p50 p99 max (ms).
//   node bench/probe.mjs HOST PORT SRC DUR_S [INTERVAL_MS=100] [NAME_PREFIX=c]
// Names cycle through c0..c999.example.test (the kit's cached set), so the probe measures how long
// the server takes to answer, not the upstream. A reply later than 2 s counts as lost.
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';

const [host, portText, src, durText, intervalText = '100', prefix = 'c'] = process.argv.slice(2);
if (!host || !portText || !src || !durText) {
  console.error('usage: probe.mjs HOST PORT SRC DUR_S [INTERVAL_MS] [NAME_PREFIX]');
  process.exit(2);
}
for (const a of [host, src]) if (!/^127\.\d+\.\d+\.\d+$/.test(a)) { console.error(`refusing non-loopback ${a}`); process.exit(2); }
const port = Number(portText);
const durMs = Number(durText) * 1000;
const interval = Number(intervalText);
const TIMEOUT_MS = 2000;

function query(id, name) {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head[2] = 1; // RD
  head.writeUInt16BE(1, 4);
  return Buffer.concat([head, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

const sock = dgram.createSocket('udp4');
const pending = new Map();
const rtts = [];
let sent = 0;
sock.on('message', (msg) => {
  const id = msg.readUInt16BE(0);
  const t0 = pending.get(id);
  if (t0 === undefined) return;
  pending.delete(id);
  const rtt = performance.now() - t0;
  if (rtt <= TIMEOUT_MS) rtts.push(rtt);
});
sock.bind(0, src, () => {
  const started = performance.now();
  const timer = setInterval(() => {
    if (performance.now() - started >= durMs) {
      clearInterval(timer);
      setTimeout(report, TIMEOUT_MS);
      return;
    }
    const id = sent & 0xffff;
    pending.set(id, performance.now());
    sock.send(query(id, `${prefix}${sent % 1000}.example.test`), port, host);
    sent++;
  }, interval);
});

function report() {
  sock.close();
  rtts.sort((a, b) => a - b);
  const pct = (p) => (rtts.length ? rtts[Math.min(rtts.length - 1, Math.ceil((p / 100) * rtts.length) - 1)] : NaN);
  const f = (x) => (Number.isNaN(x) ? '-' : x.toFixed(2));
  console.log([sent, rtts.length, sent - rtts.length, f(pct(50)), f(pct(99)), f(rtts.at(-1) ?? NaN)].join('\t'));
}
