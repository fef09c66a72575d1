// The identity thread's work (identityWorker.ts runs it): watch the lease
// files, read what changed (leaseFile.ts: only the appended rows of an
// append-only file), fold it into the lease model, and hand the query threads
// a delta of the devices that changed. Nothing here runs on a query thread:
// a 50k-lease file read whole costs about a second, and ISC Kea appends a row
// at every renewal, so doing this where DNS is answered would stall it.
//
// Sources are read synchronously: this thread does nothing else, and one read
// at a time keeps the model's changes in order.
import type { ErrorCode } from '../errors.js';
import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Problem } from '../errors.js';
import { isKeaPriorFile, LeaseFile, type LeaseSourceConfig } from './leaseFile.js';
import { LeaseModel } from './model.js';
import type { IdentityDelta } from './table.js';

/** What one read of one source did. */
export interface SourceRead {
  source: number;
  ok: boolean;
  /** Problems of a rejected read (the source's last good rows stay in force). */
  problems: Problem[];
  /** Addresses the source holds rows for, after this read. */
  addresses: number;
  /** Whether the file was read whole (else only what was appended). */
  whole: boolean;
  /** Rows parsed by this read. */
  rows: number;
}

export interface IdentityUpdate {
  /** The requests (configure, reload) this update answers; [] for a change the watcher saw. */
  ids: number[];
  delta: IdentityDelta;
  reads: SourceRead[];
  /** Time spent reading, parsing and working out the delta (ms). */
  ms: number;
}

export type Send = (u: IdentityUpdate) => void;
export type Warn = (code: ErrorCode, message: string, fields: Record<string, unknown>) => void;

/**
 * Lease writers rewrite in bursts (dnsmasq truncates then writes; Kea appends row by row). A source
 * is read DEBOUNCE_MS after the last change seen, at most once per MIN_INTERVAL_MS, and at the latest
 * MAX_WAIT_MS after the first change not yet read: a file that changes more often than the debounce
 * (Kea on a busy network) is still read, once a second.
 */
const DEBOUNCE_MS = 250;
const MIN_INTERVAL_MS = 1000;
const MAX_WAIT_MS = 1000;

export class LeaseReader {
  private files: LeaseFile[] = [];
  private model = new LeaseModel(0, new Map());
  /** The first update is the whole table (reset): the receiving side may hold anything before it. */
  private first = true;
  private watching = false;
  private watchers: FSWatcher[] = [];
  /** Each source's file with its symlinks resolved, as watched (undefined: not a link, or unresolvable). */
  private targets: (string | undefined)[] = [];
  private readonly timers = new Map<number, NodeJS.Timeout>();
  private readonly lastRead = new Map<number, number>();
  private readonly pendingSince = new Map<number, number>();

  constructor(
    private readonly send: Send,
    private readonly warn: Warn,
  ) {}

  /** New sources or static names: everything is read whole, and the update says what that changed. */
  configure(id: number, sources: readonly LeaseSourceConfig[], statics: ReadonlyMap<string, string>): void {
    this.closeWatchers();
    this.files = sources.map((s) => new LeaseFile(s));
    this.model.reconfigure(sources.length, statics);
    // Watching first: a change while the files are read is then read too, never missed.
    if (this.watching) this.startWatchers();
    this.read(this.files.map((_, i) => i), true, [id]);
  }

  /** SIGHUP: every source read whole again. */
  reload(id: number): void {
    this.read(this.files.map((_, i) => i), true, [id]);
  }

  /** Starts watching; a file that changed since it was last read (before there was a watcher) is read again. */
  watch(): void {
    this.watching = true;
    this.closeWatchers();
    this.startWatchers();
    this.files.forEach((f, i) => {
      if (f.stale()) this.changed(i);
    });
  }

  private startWatchers(): void {
    const dirs = new Map<string, number[]>();
    const add = (d: string, i: number): void => {
      const list = dirs.get(d) ?? [];
      if (!list.includes(i)) list.push(i);
      dirs.set(d, list);
    };
    // A lease file may be a symlink (current.csv → v1.csv): an edit of the target in place changes
    // nothing about the link, so the target's folder is watched too, under the target's name.
    this.targets = this.files.map((f) => resolved(f.src.file));
    this.files.forEach((f, i) => {
      add(dirname(f.src.file), i);
      const target = this.targets[i];
      if (target) add(dirname(target), i);
    });
    for (const [dir, indexes] of dirs) {
      try {
        // The folder: dnsmasq and dhcpd replace the file by rename, which a file watch would miss.
        const w = watch(dir, { persistent: false }, (_e, name) => {
          if (!name) return;
          const changed = join(dir, name.toString());
          let relink = false;
          for (const i of indexes) {
            const src = this.files[i]!.src;
            if (changed === src.file || changed === this.targets[i] || (src.format === 'kea-csv' && isKeaPriorFile(src.file, changed))) this.changed(i);
            // The link itself changed: it may point elsewhere now, whose folder must be watched instead.
            if (changed === src.file && resolved(src.file) !== this.targets[i]) relink = true;
          }
          if (relink) this.rewatch();
        });
        w.on('error', (e) => this.warn('SH_WATCH', 'lease folder watch failed; SIGHUP still re-reads', { dir, error: e.message }));
        this.watchers.push(w);
      } catch (e) {
        this.warn('SH_WATCH', 'cannot watch lease folder; SIGHUP still re-reads', { dir, error: String(e) });
      }
    }
  }

  /** The watches again, for where the links point now; pending reads stay due. */
  private rewatch(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.watching) this.startWatchers();
  }

  private changed(i: number): void {
    const now = Date.now();
    const since = this.pendingSince.get(i) ?? now;
    this.pendingSince.set(i, since);
    const due = Math.max((this.lastRead.get(i) ?? 0) + MIN_INTERVAL_MS, Math.min(now + DEBOUNCE_MS, since + MAX_WAIT_MS));
    clearTimeout(this.timers.get(i));
    this.timers.set(
      i,
      setTimeout(() => {
        this.timers.delete(i);
        this.pendingSince.delete(i);
        this.lastRead.set(i, Date.now());
        this.read([i], false, []);
      }, due - now),
    );
  }

  private read(indexes: number[], whole: boolean, ids: number[]): void {
    const t0 = performance.now();
    const reads: SourceRead[] = [];
    for (const i of indexes) {
      const r = this.files[i]!.read(whole);
      if (r.ok) {
        if (r.whole) this.model.replace(i, r.leases);
        else this.model.append(i, r.leases);
      }
      reads.push({
        source: i,
        ok: r.ok,
        problems: r.ok ? [] : r.problems,
        addresses: this.model.addresses(i),
        whole: r.ok ? r.whole : true,
        rows: r.ok ? r.leases.length : 0,
      });
    }
    let delta = this.model.commit();
    if (this.first) {
      delta = this.model.snapshot();
      this.first = false;
    }
    this.send({ ids, delta, reads, ms: performance.now() - t0 });
  }

  private closeWatchers(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.pendingSince.clear();
  }

  close(): void {
    this.watching = false;
    this.closeWatchers();
  }
}

/** The file a path names once its symlinks are followed, when that is another path; else undefined. */
function resolved(file: string): string | undefined {
  try {
    const real = realpathSync(file);
    return real === file ? undefined : real;
  } catch {
    return undefined; // not there (yet): the folder watch sees it appear
  }
}
