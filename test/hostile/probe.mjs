// A UDP latency probe in a process of its own, so that what it measures is
// sinkhole's latency and not the test process's event loop (which is busy
// generating the abuse). Usage:
//   node probe.mjs PORT NAME QTYPE EVERY_MS DURATION_MS [FROM]
// (FROM: the loopback address to ask from, 127.0.0.1 by default, to be another client.)
// Sends one query for NAME every EVERY_MS for DURATION_MS, then prints one
// JSON line: {"latencies":[ms...],"lost":n,"rcodes":{"0":n,...}}.
// A query unanswered after 1 s is lost (and counted as 1000 ms).
//   node probe.mjs --serve
// Runs one probe per JSON line read from stdin ({"port","name","qtype",
// "everyMs","durationMs"}), printing each result line: a suite with several
// attacks starts it before it lowers its own priority (harness yieldCpu),
// which a probe started later would inherit.
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';

function probe(port, name, qtype, everyMs, durationMs, from = '127.0.0.1') {
  const labels = name.split('.').filter(Boolean);
  const question = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, Number(qtype), 0, 1])]);
  const sock = dgram.createSocket('udp4');
  const inflight = new Map();
  const latencies = [];
  const rcodes = {};
  let lost = 0;
  let id = 0;
  sock.on('message', (msg) => {
    const sent = inflight.get(msg.readUInt16BE(0));
    if (sent === undefined) return;
    inflight.delete(msg.readUInt16BE(0));
    latencies.push(performance.now() - sent);
    const rcode = msg[3] & 15;
    rcodes[rcode] = (rcodes[rcode] ?? 0) + 1;
  });
  return new Promise((resolve) => {
    sock.bind(0, from, () => {
      const started = performance.now();
      const timer = setInterval(() => {
        const now = performance.now();
        for (const [i, at] of inflight) {
          if (now - at > 1000) {
            inflight.delete(i);
            lost++;
            latencies.push(1000);
          }
        }
        if (now - started > Number(durationMs)) {
          clearInterval(timer);
          setTimeout(() => {
            lost += inflight.size;
            sock.close();
            resolve({ latencies, lost, rcodes });
          }, 1000);
          return;
        }
        id = (id + 1) & 0xffff;
        const header = Buffer.alloc(12);
        header.writeUInt16BE(id, 0);
        header[2] = 1;
        header.writeUInt16BE(1, 4);
        inflight.set(id, now);
        sock.send(Buffer.concat([header, question]), Number(port), '127.0.0.1');
      }, Number(everyMs));
    });
  });
}

if (process.argv[2] === '--serve') {
  for await (const line of createInterface({ input: process.stdin })) {
    const r = JSON.parse(line);
    process.stdout.write(`${JSON.stringify(await probe(r.port, r.name, r.qtype, r.everyMs, r.durationMs, r.from))}\n`);
  }
} else {
  const [port, name, qtype, everyMs, durationMs, from] = process.argv.slice(2);
  process.stdout.write(`${JSON.stringify(await probe(port, name, qtype, everyMs, durationMs, from))}\n`);
}
