// Compile one RPZ zone file in this process and print what it cost: the time,
// the heap and RSS retained after a GC, and the peak RSS (from the kernel).
// Run with `node --expose-gc bench/rpz-compile.mjs big.zone` after `npm run build`.
// Issue 21 (bench/RESULTS.md): a 1M-record zone peaked at 882 MB here.
import { readFileSync } from 'node:fs';
import { resourceUsage } from 'node:process';
import { compileZone } from '../dist/policy/rpz/zone.js';

const file = process.argv[2];
if (!file || typeof globalThis.gc !== 'function') {
  console.error('usage: node --expose-gc bench/rpz-compile.mjs ZONE_FILE');
  process.exit(2);
}
const text = readFileSync(file, 'utf8');
globalThis.gc();
const heap0 = process.memoryUsage().heapUsed;
const t0 = performance.now();
const { data, problems } = compileZone({ name: 'bench', file, override: 'none' }, text);
const ms = performance.now() - t0;
globalThis.gc();
const m = process.memoryUsage();
const mb = (n) => `${(n / 1048576).toFixed(0)} MB`;
console.log(`compile ${(ms / 1000).toFixed(2)} s; problems ${problems.length}; rules ${data.counts.qname + data.counts.wildcard}; ` +
  `retained heap ${mb(m.heapUsed - heap0)} (+ ${mb(m.arrayBuffers)} array buffers); rss after gc ${mb(m.rss)}; peak rss ${mb(resourceUsage().maxRSS * 1024)}`);
