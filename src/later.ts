// A value on its way, for the query path's cache misses: a promise that settles synchronously.
//
// Why not a Promise: a miss used to wait on seven promises stacked between the upstream's reply and
// the listener (the exchange, the forwarder, the cache stage, then one `then` per stage above it and
// the listener's own). Each settle queues a microtask, runs it, and looks up `then` on the value it
// resolves with, the Outcome, whose many shapes make that lookup a slow one: ~0.4 µs of a ~30 µs
// miss per promise (issue 22, bench/RESULTS.md "Fewer promises in a miss"). A Later runs each
// reaction at once, in the call that settles it: the whole chain, from the upstream socket's reply
// to the client's, runs in one go.
//
// It keeps a Promise's contract otherwise: `then` makes a new Later (so one value may have several
// readers: the cache shares one fetch among the queries waiting for a name), a reaction that throws
// fails its own Later, a reaction that returns a Promise or a Later is waited for, and `catch` and
// `finally` are `then` underneath. What differs:
// - a reaction runs synchronously when the Later settles, or at once when `then` is called on a
//   Later that has already settled (a Promise would queue it). Code that records something after
//   calling `then` must allow for the reaction having run already: the forward stage settles at
//   once when a send fails synchronously (stages/cache.ts fetch registers its exchange only if not);
// - a failure no reaction reads is dropped, not reported as an unhandled rejection: the recover stage
//   (stages/recover.ts) reads every failure of the chain;
// - only Promises and Laters are waited for, not any object with a `then` (no lookup of `then` on
//   every value).
const WAITING = 0;
const FULFILLED = 1;
const REJECTED = 2;
type State = typeof WAITING | typeof FULFILLED | typeof REJECTED;

type Reaction = (value: unknown) => unknown;

export class Later<T> implements Promise<T> {
  private state: State = WAITING;
  private value: unknown = undefined;
  /** The Laters made by `then` on this one, to settle when it settles. Most have one reader. */
  private reader: Later<unknown> | undefined = undefined;
  private moreReaders: Later<unknown>[] | undefined = undefined;
  /** This Later's own reactions to its parent's value (set by the parent's `then`). */
  private onFulfilled: Reaction | undefined = undefined;
  private onRejected: Reaction | undefined = undefined;

  /** `value` as a Later: itself if it is one, else one that settles as it does (a Promise is waited for). */
  static of<T>(value: T | PromiseLike<T>): Later<T> {
    if (value instanceof Later) return value as Later<T>;
    const later = new Later<T>();
    later.resolve(value);
    return later;
  }

  /** Fulfils it (or, given a Promise or a Later, settles it as that one does). A Later settles once. */
  resolve(value: T | PromiseLike<T>): void {
    if (this.state !== WAITING) return;
    if (value instanceof Later || value instanceof Promise) {
      (value as PromiseLike<T>).then(
        (v) => this.settle(FULFILLED, v),
        (e: unknown) => this.settle(REJECTED, e),
      );
      return;
    }
    this.settle(FULFILLED, value);
  }

  reject(reason: unknown): void {
    this.settle(REJECTED, reason);
  }

  // `reason: any`, as in Promise's own signature: callers name the error type they expect.
  then<A = T, B = never>(
    onFulfilled?: ((value: T) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: any) => B | PromiseLike<B>) | null,
  ): Later<A | B> {
    const child = new Later<A | B>();
    child.onFulfilled = (onFulfilled ?? undefined) as Reaction | undefined;
    child.onRejected = (onRejected ?? undefined) as Reaction | undefined;
    if (this.state !== WAITING) child.react(this.state, this.value);
    else if (this.reader === undefined) this.reader = child;
    else (this.moreReaders ??= []).push(child);
    return child;
  }

  catch<B = never>(onRejected?: ((reason: any) => B | PromiseLike<B>) | null): Later<T | B> {
    return this.then(undefined, onRejected);
  }

  finally(onFinally?: (() => void) | null): Later<T> {
    if (!onFinally) return this.then();
    return this.then(
      (v) => {
        onFinally();
        return v;
      },
      (e: unknown) => {
        onFinally();
        throw e;
      },
    );
  }

  get [Symbol.toStringTag](): string {
    return 'Later';
  }

  /** The parent settled: this Later's reaction to it, if it has one, decides how this one settles. */
  private react(state: State, value: unknown): void {
    const reaction = state === FULFILLED ? this.onFulfilled : this.onRejected;
    this.onFulfilled = this.onRejected = undefined;
    if (reaction === undefined) return this.settle(state, value);
    let out: unknown;
    try {
      out = reaction(value);
    } catch (e) {
      return this.settle(REJECTED, e);
    }
    this.resolve(out as T);
  }

  private settle(state: State, value: unknown): void {
    if (this.state !== WAITING) return;
    this.state = state;
    this.value = value;
    const reader = this.reader;
    const more = this.moreReaders;
    this.reader = this.moreReaders = undefined;
    if (reader !== undefined) reader.react(state, value);
    if (more !== undefined) for (const r of more) r.react(state, value);
  }
}
