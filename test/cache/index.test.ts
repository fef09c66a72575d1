// The cache's off-heap index (src/cache/keyIndex.ts, issue 22) against a plain Map used as an LRU:
// the same values, the same size and the same evictions, over random operations with colliding
// probe runs; then through ReplyCache, entries evicted least recently used first.
import t from 'tap';
import { hashKey, hashNameKey, KeyIndex } from '../../src/cache/keyIndex.js';
import { StableTable } from '../../src/stableTable.js';
import { cacheKey, ReplyCache } from '../../src/cache/replyCache.js';
import { decodeQuery } from '../../src/dns/query.js';
import { scanReply } from '../../src/dns/message.js';
import { buildQuery } from '../helpers/dns.js';
import { T } from '../helpers/fakeUpstream.js';

t.test('KeyIndex behaves as an LRU map', (t) => {
  // A small deterministic generator, so a failure replays.
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const max = 37;
  const keys = Array.from({ length: 150 }, (_, i) => `k${i}.example.test\u0000\u0001\u0000\u0001${String.fromCharCode(i % 16)}`);
  // Values are unique numbers; the index keeps only a value, the key lives with it (as in the slab).
  const keyOf = new Map<number, string>();
  const disposed: number[] = [];
  const index = new KeyIndex(max, hashKey, (v, k) => keyOf.get(v) === k, (v) => disposed.push(v));
  const ref = new Map<string, number>();
  const refDisposed: number[] = [];
  let nextValue = 1;
  for (let step = 0; step < 30_000; step++) {
    const key = keys[rand(keys.length)]!;
    const op = rand(10);
    if (op < 5) {
      const v = nextValue++;
      keyOf.set(v, key);
      index.set(key, v);
      const old = ref.get(key);
      if (old !== undefined) {
        ref.delete(key);
        refDisposed.push(old);
      } else if (ref.size === max) {
        const [lk, lv] = ref.entries().next().value as [string, number];
        ref.delete(lk);
        refDisposed.push(lv);
      }
      ref.set(key, v);
    } else if (op < 8) {
      if (index.peek(key) !== (ref.get(key) ?? -1)) {
        t.fail(`step ${step}: peek ${key}`);
        return t.end();
      }
      if (op === 7 && ref.has(key)) {
        index.touch(key);
        const v = ref.get(key)!;
        ref.delete(key);
        ref.set(key, v);
      }
    } else if (op === 8) {
      index.delete(key);
      const v = ref.get(key);
      if (v !== undefined) {
        ref.delete(key);
        refDisposed.push(v);
      }
    } else if (rand(200) === 0) {
      index.clear();
      refDisposed.push(...ref.values());
      ref.clear();
    }
    if (index.size !== ref.size) {
      t.fail(`step ${step}: size ${index.size} against ${ref.size}`);
      return t.end();
    }
  }
  for (const k of keys) if (index.peek(k) !== (ref.get(k) ?? -1)) t.fail(`end: ${k}`);
  t.same(disposed.sort((a, b) => a - b), refDisposed.sort((a, b) => a - b), 'the same values disposed of');
  t.pass('30,000 random operations agree');
  t.end();
});

t.test('hashKey is seeded per process, so names that collide cannot be worked out in advance', (t) => {
  // FNV-1a from its published offset basis: what an attacker could compute offline.
  const unseeded = (key: string): number => {
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return h >>> 0;
  };
  const keys = ['a.example.test', 'b.example.test', 'tiktok.com\u0000\u0001\u0000\u0001\u0008'];
  // Each differs by chance with probability 1 - 2^-32 under a random seed; all three agreeing means no seed.
  t.ok(keys.some((k) => hashKey(k) !== unseeded(k)), 'not the published FNV-1a');
  t.equal(hashKey(keys[0]!), hashKey(keys[0]!), 'but the same within the process');
  // The reply cache hashes a query's key where it stands (hashNameKey), the cache stage the key string: one hash.
  const q = decodeQuery(buildQuery('Tik\\.Tök.example', T.AAAA, { edns: 1232, dnssecOk: true }), '127.0.0.1', 'udp', 0)!;
  t.equal(hashNameKey(q.qname, (T.AAAA << 16) | 1, 1 | 2 | 8), hashKey(cacheKey(q)), 'hashNameKey over a name and tail is hashKey of the key string');
  t.end();
});

// Both of its uses: cache keys with their FNV hash (the cache stage), and 16-bit IDs as their own hash (upstream/udp.ts).
for (const [what, keys, hash] of [
  ['cache keys', Array.from({ length: 300 }, (_, i) => `n${i}.example.test\u0000\u0001\u0000\u0001\u0008`), hashKey],
  ['query IDs', Array.from({ length: 300 }, (_, i) => (i * 7919) & 0xffff), (id: number) => id],
] as const) {
  t.test(`StableTable (${what}) behaves as a Map while it grows, wraps around and shifts entries back on delete`, (t) => {
    let seed = 777;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    // Few slots to start with, so the table grows several times and its runs of colliding keys wrap past the end.
    const table = new StableTable<string | number, number>(hash as (k: string | number) => number, 4);
    const ref = new Map<string | number, number>();
    let mismatches = 0;
    let maxSize = 0;
    for (let step = 0; step < 40_000; step++) {
      const key = keys[rand(keys.length)]!;
      const op = rand(3);
      if (op === 0) {
        table.set(key, step);
        ref.set(key, step);
      } else if (op === 1) {
        if (table.delete(key) !== ref.delete(key)) mismatches++;
      } else if (table.get(key) !== ref.get(key) || table.has(key) !== ref.has(key)) {
        mismatches++;
      }
      if (table.size !== ref.size) mismatches++;
      maxSize = Math.max(maxSize, table.size);
      // Every key, now and then: a delete that shifted an entry to the wrong slot loses it for good.
      if (step % 1000 === 0) {
        for (const k of keys) if (table.get(k) !== ref.get(k)) mismatches++;
        if (table.values().sort().join() !== [...ref.values()].sort().join()) mismatches++;
      }
    }
    t.equal(mismatches, 0, 'every get, has, delete, size and values() agreed with a Map');
    t.ok(maxSize > 64, `the table held up to ${maxSize} keys, past its first sizes`);
    for (const k of keys) table.delete(k);
    t.equal(table.size, 0, 'emptied');
    t.same(table.values(), []);
    t.end();
  });
}

t.test('ReplyCache: the least recently used entry leaves first, and a hit keeps an entry', (t) => {
  let now = 0;
  const cache = new ReplyCache({ maxEntries: 3, minTtl: 0, maxTtl: 86400, maxNegativeTtl: 3600 }, () => now);
  const answer = (name: string): Buffer => {
    const q = buildQuery(name, T.A);
    const r = Buffer.concat([q, Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 192, 0, 2, 1])]);
    r[2] = r[2]! | 0x80;
    r.writeUInt16BE(1, 6);
    return r;
  };
  const put = (name: string): void => {
    const q = decodeQuery(buildQuery(name, T.A), '127.0.0.1', 'udp', 0)!;
    const wire = answer(name);
    t.ok(cache.set(q, wire, scanReply(wire)!) > 0, `${name} stored`);
  };
  const has = (name: string): boolean => {
    const q = decodeQuery(buildQuery(name, T.A), '127.0.0.1', 'udp', 0)!;
    return cache.get(q) !== undefined;
  };
  put('a.example.test');
  put('b.example.test');
  put('c.example.test');
  now += 2000; // past the touch interval: the hit on a moves it to the front
  t.ok(has('a.example.test'));
  put('d.example.test');
  t.same(['a', 'b', 'c', 'd'].map((n) => has(`${n}.example.test`)), [true, false, true, true], 'b, the least recently used, left');
  t.equal(cache.size, 3);
  put('c.example.test'); // replacing an entry keeps the count and frees the old slot
  t.equal(cache.size, 3);
  cache.clear();
  t.equal(cache.size, 0);
  t.notOk(has('a.example.test'));
  t.end();
});

t.test('StableTable with an equality: distinct keys that are equal find one entry, and a shared hash alone never matches', (t) => {
  type Key = { name: string };
  // One hash for every key: every lookup walks one run, and only `equal` tells the keys apart.
  const table = new StableTable<Key, number>(() => 7, 4, (a, b) => a.name === b.name);
  const names = Array.from({ length: 20 }, (_, i) => `k${i}`);
  names.forEach((name, i) => table.set({ name }, i));
  t.equal(table.size, 20);
  t.same(names.map((name) => table.get({ name })), names.map((_, i) => i), 'found by a fresh, equal key');
  t.equal(table.get({ name: 'k20' }), undefined, 'same hash, not equal: absent');
  table.set({ name: 'k3' }, 99);
  t.equal(table.size, 20, 'an equal key replaces, it does not add');
  t.ok(table.delete({ name: 'k0' }), 'deleted by an equal key');
  t.same(names.slice(1).map((name) => table.get({ name })), [1, 2, 99, ...names.slice(4).map((_, i) => i + 4)], 'the rest shifted back and found');
  t.end();
});

