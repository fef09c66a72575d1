// What a lease change costs, and where (issue 11 follow-up): a generated Kea memfile of N leases
// (default 50k) in a temporary folder, read by the identity thread as `serve` does; then ROUNDS
// appends of a few rows (two renewals and a device that moves), then ROUNDS whole re-reads (SIGHUP).
// Prints, per kind: the identity thread's time to read, parse and work out the delta, the delta's
// size, and the main thread's time to apply it (the structured clone of the message is not in it).
//   npm run build && node_modules/.bin/node bench/identity-updates.mjs [N=50000] [ROUNDS=8]
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IdentityHolder, IdentitySources } from '../dist/identity/sources.js';
import { silentLogger } from '../dist/log.js';

const N = Number(process.argv[2] ?? 50_000);
const ROUNDS = Number(process.argv[3] ?? 8);
const HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n';
const hex = (n) => n.toString(16).padStart(2, '0');
const ip = (i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const mac = (i) => `02:00:00:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}`;
const s = Math.floor(Date.now() / 1000);
const row = (i, m, start) => `${ip(i)},${m},,3600,${start + 3600},1,0,0,host-${i},0,,0\n`;

const dir = mkdtempSync(join(tmpdir(), 'sinkhole-identity-bench-'));
const file = join(dir, 'kea-leases4.csv');
let text = HEADER;
for (let i = 0; i < N; i++) text += row(i, mac(i), s - 600);
writeFileSync(file, text);
const keep = setInterval(() => {}, 1000); // the server's sockets would keep the process alive
const identity = new IdentitySources({ leases: [{ format: 'kea-csv', file }], static: new Map() }, new IdentityHolder(), { identityReloads: new Map() }, silentLogger, () => Date.now());
const fmt = (xs) => xs.map((x) => x.toFixed(2)).join(' ');
try {
  await identity.start();
  console.log(`start, ${N} leases read whole: identity thread ${identity.lastUpdateMs.toFixed(1)} ms; main thread applies the whole table in ${identity.lastApplyMs.toFixed(1)} ms`);
  identity.watch();
  const made = [];
  const applied = [];
  let entries = 0;
  for (let k = 0; k < ROUNDS; k++) {
    await new Promise((r) => setTimeout(r, 1050)); // a source is read at most once a second
    const swapped = once(identity, 'swap');
    const a = (k * 7919) % N;
    const b = (k * 104_729 + 1) % N;
    const moved = (k * 15_485 + 2) % N;
    appendFileSync(file, row(a, mac(a), s - 60 + k) + row(b, mac(b), s - 60 + k) + row((moved + 1) % N, mac(moved), s - 60 + k));
    const [delta] = await swapped;
    made.push(identity.lastUpdateMs);
    applied.push(identity.lastApplyMs);
    entries = Math.max(entries, delta.devices.length);
  }
  console.log(`3 rows appended, ${ROUNDS}×: identity thread ms ${fmt(made)}; delta at most ${entries} addresses; main-thread apply ms ${fmt(applied)}`);
  const whole = [];
  const wholeApplied = [];
  for (let k = 0; k < ROUNDS; k++) {
    await identity.reload();
    whole.push(identity.lastUpdateMs);
    wholeApplied.push(identity.lastApplyMs);
  }
  console.log(`whole re-read (SIGHUP), ${ROUNDS}×: identity thread ms ${fmt(whole)}; main-thread apply ms ${fmt(wholeApplied)}`);
} finally {
  identity.close();
  clearInterval(keep);
  rmSync(dir, { recursive: true, force: true });
}
