/** Wall-clock time in ms. Injected so tests can move time (exception expiry, cache TTLs) without sleeping. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
