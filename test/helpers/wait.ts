// Waiting for something the server does, without a fixed sleep: the condition is checked as events land.

/** Resolves once `cond` holds, checking as events land; fails the wait after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 2));
  }
}
