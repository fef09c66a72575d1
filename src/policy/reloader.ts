// Hot reload: config, list and exception files are watched (and SIGHUP
// reloads too). Each reload builds a complete new generation and swaps one
// reference; on any error the running generation stays in force, every
// problem is logged as file:line:col, and the failure is counted.
//
// The compile runs in a worker thread (compiler.ts), so a reload never stalls
// a query, and requests are coalesced: while one reload runs, every request
// that arrives is folded into one more run after it (50 SIGHUPs in a second
// are two compiles, not fifty).
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { PolicyError, formatProblem } from '../errors.js';
import type { Logger } from '../log.js';
import type { Stats } from '../metrics/stats.js';
import { hydrate, type Generation, type PolicyData } from './generation.js';
import { PolicyCompiler, type Compiled } from './compiler.js';
import { policyHash } from './fingerprint.js';
import type { PolicyHolder } from './holder.js';

function enforcedRules(g: Generation): number {
  return g.config.blocking.enforce.reduce((n, list) => n + (g.ruleCounts.get(list) ?? 0), 0);
}

export type ReloadKind = 'config' | 'list' | 'exceptions';

/** Editors write in bursts (truncate, write, rename); wait for the burst to end. */
const DEBOUNCE_MS = 150;

export class Reloader {
  private watchers: FSWatcher[] = [];
  /** watch() was called: a swap may change which folders to watch. Off, a reload must not start watching. */
  private watching = false;
  private watchedDirs = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private pendingKind: ReloadKind | undefined;
  /** The kind of the next run (a config reload outranks the others), and who waits for it. */
  private queued: ReloadKind | undefined;
  private waiters: ((problems: string[]) => void)[] = [];
  private draining: Promise<void> | undefined;
  /** The problems of the last reload attempt; empty after a successful one (the admin page shows them). */
  lastProblems: string[] = [];

  constructor(
    private readonly configFile: string,
    private readonly holder: PolicyHolder,
    private readonly stats: Stats,
    private readonly log: Logger,
    /** `data`: the new generation's data (for the other query threads); `inputs`: the files it compiled from, byte for byte (the last good snapshot). */
    private readonly onSwap: (g: Generation, previous: Generation, data: PolicyData, inputs: ReadonlyMap<string, Uint8Array>) => void = () => {},
    private readonly compiler: { compile(configFile: string): Promise<Compiled>; close(): Promise<void> } = new PolicyCompiler(),
  ) {}

  /**
   * Builds and swaps a new generation; resolves with the problems, empty on success. A request
   * made while a reload runs shares the run after it.
   */
  reload(kind: ReloadKind): Promise<string[]> {
    if (this.queued !== 'config') this.queued = kind;
    const done = new Promise<string[]>((resolve) => this.waiters.push(resolve));
    this.draining ??= this.drain();
    return done;
  }

  /** Resolves when no reload is running or queued. */
  settled(): Promise<void> {
    return this.draining ?? Promise.resolve();
  }

  private async drain(): Promise<void> {
    while (this.queued) {
      const kind = this.queued;
      const waiters = this.waiters;
      this.queued = undefined;
      this.waiters = [];
      const problems = await this.once(kind);
      for (const w of waiters) w(problems);
    }
    this.draining = undefined;
  }

  private async once(kind: ReloadKind): Promise<string[]> {
    const previous = this.holder.current;
    try {
      const { data, inputs } = await this.compiler.compile(this.configFile);
      const next = hydrate(data, previous.number + 1);
      if (enforcedRules(previous) > 0 && enforcedRules(next) === 0) {
        // A config saved half-written, or with blocking: deleted, would otherwise hot-reload as "block nothing".
        throw new PolicyError([{ code: 'SH_CONFIG_INVALID', file: next.config.file, line: 1, col: 1, message: 'blocking.enforce would enforce no rules at all; refusing to reload into an open policy (restart sinkhole to run without blocking)' }]);
      }
      this.holder.current = next;
      this.stats.reload(kind, 'success');
      this.log.info('policy reloaded', { kind, generation: next.number, rules: [...next.ruleCounts.values()].reduce((a, b) => a + b, 0), exceptions: next.exceptions.length, policy: policyHash(next) });
      this.lastProblems = [];
      if (previous.degraded) this.log.info('the files on disk compile again: no longer serving the last good snapshot', { generation: next.number });
      this.onSwap(next, previous, data, inputs);
      this.rewatch();
      return [];
    } catch (e) {
      this.stats.reload(kind, 'failure');
      const problems = e instanceof PolicyError ? e.problems.map(formatProblem) : [String(e)];
      this.lastProblems = problems;
      for (const p of problems) this.log.error(e instanceof PolicyError ? e.code : 'SH_INTERNAL', `reload rejected, generation ${previous.number} stays in force: ${p}`, { kind });
      return problems;
    }
  }

  /** Watches the folders of every file the current generation was built from. */
  watch(): void {
    this.watching = true;
    this.rewatch();
  }

  private rewatch(): void {
    if (!this.watching) return;
    const dirs = new Set(this.holder.current.files.map((f) => dirname(f)));
    if (dirs.size === this.watchedDirs.size && [...dirs].every((d) => this.watchedDirs.has(d))) return;
    this.closeWatchers();
    this.watchedDirs = dirs;
    for (const dir of dirs) {
      try {
        // The folder, not the file: editors that save by rename (vim, sed -i) replace the inode.
        const w = watch(dir, { persistent: false }, (_event, name) => name && this.changed(resolve(dir, name.toString())));
        w.on('error', (e) => this.log.warn('SH_WATCH', 'file watch failed; SIGHUP still reloads', { dir, error: e.message }));
        this.watchers.push(w);
      } catch (e) {
        this.log.warn('SH_WATCH', 'cannot watch folder; SIGHUP still reloads', { dir, error: String(e) });
      }
    }
  }

  private changed(file: string): void {
    const g = this.holder.current;
    // Kubernetes updates a mounted ConfigMap by swapping one `..data` link that every file in the
    // folder points through: that rename is the only event, so it stands for all of them.
    const swapped = basename(file) === '..data' ? g.files.filter((f) => dirname(f) === dirname(file)) : [];
    if (!g.files.includes(file) && !swapped.length) {
      // vim's swap and backup files, and anything else in the folder: not ours.
      if (!g.files.some((f) => basename(f) === basename(file))) return;
    }
    const ex = g.config.exceptions;
    const kindOf = (f: string): ReloadKind => (f === g.config.file ? 'config' : ex && 'file' in ex && ex.file === f ? 'exceptions' : 'list');
    const kinds = (swapped.length ? swapped : [file]).map(kindOf);
    const kind: ReloadKind = kinds.includes('config') ? 'config' : kinds[0]!;
    // A config change outranks the others in the counter: it may change everything.
    if (this.pendingKind !== 'config') this.pendingKind = kind;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const k = this.pendingKind ?? 'list';
      this.pendingKind = undefined;
      void this.reload(k);
    }, DEBOUNCE_MS);
  }

  private closeWatchers(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.watching = false;
    this.closeWatchers();
    this.watchedDirs.clear();
    await this.settled();
    await this.compiler.close();
  }
}
