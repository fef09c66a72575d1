// Summarises a V8 .cpuprofile: self time per function (name, file:line), top first, as a share of
// the samples outside the idle and GC pseudo-nodes too. Used by bench/profile.sh.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const file = process.argv[2];
if (!file) throw new Error('usage: profile-top.mjs FILE.cpuprofile');
const p = JSON.parse(readFileSync(file, 'utf8'));
const self = new Map();
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const counts = new Map();
for (const id of p.samples) counts.set(id, (counts.get(id) ?? 0) + 1);
let total = 0;
let idle = 0;
for (const [id, n] of counts) {
  const node = byId.get(id);
  const f = node.callFrame;
  total += n;
  if (f.functionName === '(idle)') {
    idle += n;
    continue;
  }
  const key = `${f.functionName || '(anonymous)'} ${f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : ''}`.trim();
  self.set(key, (self.get(key) ?? 0) + n);
}
const busy = total - idle;
console.log(`samples: ${total}, busy ${((busy / total) * 100).toFixed(1)} %`);
console.log('self %busy  function');
for (const [k, n] of [...self].sort((a, b) => b[1] - a[1])) console.log(`${((n / busy) * 100).toFixed(1).padStart(10)}  ${k}`);
