// A cache miss's CPU profile (bench/profile.sh uncached) by stage of the miss path (issue 22): each
// sample goes to the deepest frame of sinkhole's own code on its stack, so the time spent in Node
// (dgram's send, Buffer, lru-cache...) is charged to the stage that called it. Samples with no
// sinkhole frame at all are Node and V8 on their own: the receive dispatch of both datagrams (libuv to
// the 'message' listener), the promise and nextTick machinery (and later.js's own frames), GC, "(program)".
//   node bench/profile-stages.mjs DIR/*.cpuprofile [QUERIES]   → share of busy time and, given the
//   queries answered in the profile (dnsperf's "Queries completed"), busy µs per query of each stage.
//   The profile spans the whole process, start-up included (a few % of "other" and "(program)").
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) throw new Error('usage: profile-stages.mjs FILE.cpuprofile [QUERIES]');
const queries = Number(process.argv[3] ?? 0);
const p = JSON.parse(readFileSync(file, 'utf8'));

/** [stage, file under dist/, function name]: the first rule matching the deepest sinkhole frame wins. */
const RULES = [
  // later.js runs a miss's reactions; its own frames are the promise machinery it replaces.
  ['promise, Later and nextTick machinery', /^later\.js$/, /./],
  ['1 decode (listener receive, header and question)', /^transport\/udp\.js$/, /^onMessage$/],
  ['1 decode (listener receive, header and question)', /^(dns\/query|policy\/cidr)\.js$/, /./],
  ['2 policy (stages above the cache)', /^stages\/blocklist\.js$/, /^after$|^handle\/<|^\(anonymous\)$/, 'cname'],
  ['2 policy (stages above the cache)', /^(stages\/(recover|validate|rateLimit|localAnswers|relay|blocklist|rpz|chaos|ddr|anyAnswer)|pipeline\/\w+|policy\/.*|identity\/.*|ratelimit\/.*|clock)\.js$/, /./],
  ['3 metrics (counters, latency histogram)', /^(stages\/metrics|metrics\/stats)\.js$/, /./],
  ['4 cache lookup', /^stages\/cache\.js$/, /^handle$/],
  ['4 cache lookup', /^cache\/replyCache\.js$/, /^(cacheKey|get|getStale|copy|tick)$/],
  ['9 cache insert (and coalescing)', /^stages\/cache\.js$/, /./],
  ['9 cache insert (and coalescing)', /^cache\/(replyCache|slab)\.js$/, /./],
  ['5 upstream selection (and the reply ID/flags)', /^upstream\/forwarder\.js$/, /^(forward|forwardThen|candidates|forClients|accepted)$/],
  ['8 reply match and validation', /^upstream\/forwarder\.js$/, /^judge$/],
  ['5 upstream selection (and the reply ID/flags)', /^dns\/ownQuery\.js$/, /./],
  ['6 socket pick (pool, new sockets, retiring)', /^upstream\/(udp|random)\.js$/, /^(pick|pool|SourcePort|Pool|connect|closeIfIdle|randomIndex|randomId)$/],
  ['8 reply match and validation', /^upstream\/udp\.js$/, /^\(anonymous\)$/],
  ['8 reply match and validation', /^upstream\/exchange\.js$/, /^isOurReply$/],
  ['8 reply match and validation', /^dns\/message\.js$/, /./],
  ['7 send upstream (ID, copy, sendmsg)', /^upstream\/udp\.js$/, /^exchange$/],
  ['7b exchange bookkeeping (timers, settle, promise, attempt)', /^upstream\/(udp|exchange|deadlines|forwarder)\.js$/, /./],
  ['10 reply build and send (TTL clamp, truncation, sendmsg)', /^(stages\/forward|cache\/ttlLimits|dns\/reply)\.js$/, /./],
  ['10 reply build and send (TTL clamp, truncation, sendmsg)', /^transport\/udp\.js$/, /./],
];

const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const own = (f) => {
  const i = f.url.indexOf('/dist/');
  // transport/lookup.js is dgram's address lookup, called back by Node inside every unconnected send: skipped.
  // The hash tables (stableTable.js, cache/keyIndex.js) serve several stages: their caller's stage is charged.
  return i < 0 || f.url.includes('/node_modules/') || /\/(net\/lookup|stableTable|cache\/keyIndex)\.js$/.test(f.url) ? undefined : f.url.slice(i + 6);
};
/** Node's send path (sendmsg included): charged to the send of the query upstream or of the reply to the client. */
const SEND = /^(doSend|afterDns|Socket\.send|SendWrap|defaultTriggerAsyncIdScope|sliceBuffer|healthCheck)$/;
const stageOf = new Map();
function classify(id) {
  let s = stageOf.get(id);
  if (s !== undefined) return s;
  const leaf = byId.get(id).callFrame;
  s = undefined;
  if (SEND.test(leaf.functionName) && /dgram|async_hooks/.test(leaf.url)) {
    for (let k = parent.get(id); k !== undefined && s === undefined; k = parent.get(k)) {
      const file = own(byId.get(k).callFrame);
      if (file === 'transport/udp.js') s = '10 reply build and send (TTL clamp, truncation, sendmsg)';
      else if (file?.startsWith('upstream/')) s = '7 send upstream (ID, copy, sendmsg)';
    }
  }
  for (let k = id; k !== undefined && s === undefined; k = parent.get(k)) {
    const f = byId.get(k).callFrame;
    const file = own(f);
    if (file === undefined) continue;
    const name = f.functionName || '(anonymous)';
    for (const [stage, fre, nre, tag] of RULES) {
      if (!fre.test(file) || !nre.test(name)) continue;
      // The blocklist's check of the answer's CNAME/HTTPS targets, on the way back.
      s = tag === 'cname' ? (name === 'handle' ? undefined : '11 CNAME check (targets against the lists)') : stage;
      if (s !== undefined) break;
    }
    if (s === undefined) s = `? ${file} ${name}`;
  }
  if (s === undefined) {
    const n = leaf.functionName;
    if (n === '(garbage collector)') s = 'GC';
    else if (n === '(program)') s = '(program): V8 and libuv outside JS';
    else if (n === '(idle)') s = 'idle';
    else if (/^(runMicrotasks|processTicksAndRejections|nextTick)$/.test(n) || /task_queues|promise/.test(leaf.url)) s = 'promise, Later and nextTick machinery';
    else if (/timers/.test(leaf.url) || /^(listOnTimeout|processTimers|getLibuvNow)$/.test(n)) s = 'Node timers';
    else if (/dgram|events/.test(leaf.url)) s = 'receive dispatch (node:dgram to the listeners, both datagrams)';
    else s = `other: ${n || '(anonymous)'} ${leaf.url.split('/').pop()}`;
  }
  stageOf.set(id, s);
  return s;
}
const counts = new Map();
let busy = 0;
for (const id of p.samples) {
  const s = classify(id);
  if (s === 'idle') continue;
  busy++;
  counts.set(s, (counts.get(s) ?? 0) + 1);
}
const spanS = (p.endTime - p.startTime) / 1e6;
const usPerQuery = queries > 0 ? ((busy / p.samples.length) * spanS * 1e6) / queries : 0;
console.log(`busy ${((busy / p.samples.length) * 100).toFixed(1)} % of ${spanS.toFixed(1)} s${queries ? `; ${queries} queries: ${usPerQuery.toFixed(1)} µs busy per query` : ''}`);
console.log(`| stage | % of busy |${queries ? ' µs / query |' : ''}`);
console.log(`|---|---|${queries ? '---|' : ''}`);
const rows = [...counts].sort((a, b) => a[0].localeCompare(b[0], 'en', { numeric: true }));
for (const [s, n] of rows) {
  const share = n / busy;
  if (share < 0.001) continue;
  console.log(`| ${s} | ${(share * 100).toFixed(1)} |${queries ? ` ${(share * usPerQuery).toFixed(2)} |` : ''}`);
}
