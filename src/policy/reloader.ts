// Hot reload: config, list and exception files are watched (and SIGHUP
// reloads too). Each reload builds a complete new generation and swaps one
// reference; on any error the running generation stays in force, every
// problem is logged as file:line:col, and the failure is counted.
import { watch, type FSWatcher } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { basename, dirname, resolve } from 'node:path';
import { PolicyError, formatProblem } from '../errors.js';
import type { Logger } from '../log.js';
import type { Stats } from '../metrics/stats.js';
import { buildGeneration, type Generation } from './generation.js';
import type { PolicyHolder } from './holder.js';

function enforcedRules(g: Generation): number {
  return g.config.blocking.enforce.reduce((n, list) => n + (g.ruleCounts.get(list) ?? 0), 0);
}

export type ReloadKind = 'config' | 'list' | 'exceptions';

/** Editors write in bursts (truncate, write, rename); wait for the burst to end. */
const DEBOUNCE_MS = 150;
/**
 * Reload requests (SIGHUP, file changes) closer together than this are merged
 * into one: a reload compiles the whole policy (80 ms with 100k rules, 750 ms
 * with 1M), and 50 SIGHUPs 20 ms apart used to run 50 of them back to back.
 */
const MIN_RELOAD_INTERVAL_MS = 1000;

export class Reloader {
  private watchers: FSWatcher[] = [];
  private watchedDirs = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private pendingKind: ReloadKind | undefined;
  /** Coalescing state for request(): the kind asked for since the last run, and when that run ended. */
  private requested: ReloadKind | undefined;
  private requestTimer: NodeJS.Timeout | undefined;
  private reloading = false;
  private lastReload = -Infinity;

  constructor(
    private readonly configFile: string,
    private readonly holder: PolicyHolder,
    private readonly stats: Stats,
    private readonly log: Logger,
    private readonly onSwap: (g: Generation, previous: Generation) => void = () => {},
  ) {}

  /** Builds and swaps a new generation now; returns the problems, empty on success. */
  reload(kind: ReloadKind): string[] {
    const previous = this.holder.current;
    try {
      const next = buildGeneration(this.configFile, previous.number + 1);
      if (enforcedRules(previous) > 0 && enforcedRules(next) === 0) {
        // A config saved half-written, or with blocking: deleted, would otherwise hot-reload as "block nothing".
        throw new PolicyError([{ code: 'SH_CONFIG_INVALID', file: next.config.file, line: 1, col: 1, message: 'blocking.enforce would enforce no rules at all; refusing to reload into an open policy (restart sinkhole to run without blocking)' }]);
      }
      this.holder.current = next;
      this.stats.reload(kind, 'success');
      this.log.info('policy reloaded', { kind, generation: next.number, rules: [...next.ruleCounts.values()].reduce((a, b) => a + b, 0), exceptions: next.exceptions.length });
      this.onSwap(next, previous);
      this.rewatch();
      return [];
    } catch (e) {
      this.stats.reload(kind, 'failure');
      const problems = e instanceof PolicyError ? e.problems.map(formatProblem) : [String(e)];
      for (const p of problems) this.log.error(e instanceof PolicyError ? e.code : 'SH_INTERNAL', `reload rejected, generation ${previous.number} stays in force: ${p}`, { kind });
      return problems;
    }
  }

  /**
   * Asks for a reload, coalesced: it runs at once if none ran in the last
   * MIN_RELOAD_INTERVAL_MS, and otherwise once that interval is over, for
   * every request made meanwhile. No request is lost: one made while a reload
   * runs gets a reload after it, which reads the files as they are then.
   */
  request(kind: ReloadKind): void {
    // A config change outranks the others in the counter: it may change everything.
    if (this.requested !== 'config') this.requested = kind;
    if (!this.reloading && !this.requestTimer) this.schedule();
  }

  private schedule(): void {
    const wait = Math.max(0, this.lastReload + MIN_RELOAD_INTERVAL_MS - performance.now());
    this.requestTimer = setTimeout(() => void this.runRequested(), wait);
  }

  private async runRequested(): Promise<void> {
    this.requestTimer = undefined;
    const kind = this.requested;
    this.requested = undefined;
    if (!kind) return;
    this.reloading = true;
    try {
      // Awaited, so a reload that compiles off the query thread (a worker) is coalesced the same way.
      await this.reload(kind);
    } finally {
      this.reloading = false;
      this.lastReload = performance.now();
      if (this.requested && !this.closed) this.schedule();
    }
  }

  /** Watches the folders of every file the current generation was built from. */
  watch(): void {
    this.rewatch();
  }

  private rewatch(): void {
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
    if (!g.files.includes(file)) {
      // vim's swap and backup files, and anything else in the folder: not ours.
      if (!g.files.some((f) => basename(f) === basename(file))) return;
    }
    const ex = g.config.exceptions;
    const kind: ReloadKind = file === g.config.file ? 'config' : ex && 'file' in ex && ex.file === file ? 'exceptions' : 'list';
    // A config change outranks the others in the counter: it may change everything.
    if (this.pendingKind !== 'config') this.pendingKind = kind;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const k = this.pendingKind ?? 'list';
      this.pendingKind = undefined;
      this.request(k);
    }, DEBOUNCE_MS);
  }

  private closeWatchers(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  private closed = false;

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.requestTimer);
    this.requestTimer = undefined;
    this.closeWatchers();
    this.watchedDirs.clear();
  }
}
