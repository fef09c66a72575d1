import { randomFillSync } from 'node:crypto';

// Query IDs must be unpredictable (RFC 5452 §9.2): they come from the CSPRNG,
// drawn in blocks so a query costs two array reads, not a syscall.
const pool = new Uint16Array(4096);
let next = pool.length;

export function randomId(): number {
  if (next === pool.length) {
    randomFillSync(pool);
    next = 0;
  }
  return pool[next++]!;
}

/** An unpredictable index in [0, n) for n ≤ 65536, without modulo bias (rejection sampling). */
export function randomIndex(n: number): number {
  const limit = 65536 - (65536 % n);
  let r = randomId();
  while (r >= limit) r = randomId();
  return r % n;
}

/** A query ID as its own hash in a StableTable: it is drawn from the CSPRNG (randomId), so its low bits are already well mixed. */
export const idHash = (id: number): number => id;
