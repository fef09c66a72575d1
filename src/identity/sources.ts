// The identity sources: each configured lease file is read, watched and
// re-read when it changes; identity.static is compiled in. Every change
// builds a new IdentityTable and swaps one reference (as the policy does).
// A source that fails to read or parse keeps its last good leases, its
// problems are logged as file:line:col and counted: fail-closed, because a
// broken file can only leave the mapping as it was (and a lease's own end
// time still retires it), never hand an address to a device it never had.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { EventEmitter } from 'node:events';
import { formatProblem, type Problem } from '../errors.js';
import type { Logger } from '../log.js';
import { parseLeases, type Lease, type LeaseFormat } from './leaseFormats.js';
import { IdentityTable } from './table.js';

export interface LeaseSourceConfig {
  format: LeaseFormat;
  file: string;
}

export interface IdentityConfig {
  leases: readonly LeaseSourceConfig[];
  /** mac → name */
  static: ReadonlyMap<string, string>;
}

export interface SourceStatus {
  format: LeaseFormat;
  file: string;
  leases: number;
  /** The problems of the last read, empty when it was good. */
  problems: string[];
  loadedAt?: number;
}

/** Counters the metrics registry publishes (`format|result` → n). */
export interface IdentityCounters {
  identityReloads: Map<string, number>;
}

/** The one reference a lease change swaps; the query path reads `current`. */
export class IdentityHolder {
  constructor(public current: IdentityTable = IdentityTable.EMPTY) {}
}

/** Reads one source now (validate, check, start-up). */
export function readSource(src: LeaseSourceConfig): { leases: Lease[]; problems: Problem[] } {
  let text: string;
  try {
    text = readFileSync(src.file, 'utf8');
  } catch (e) {
    return { leases: [], problems: [cannotRead(src, e)] };
  }
  return parseLeases(src.format, src.file, text);
}

function cannotRead(src: LeaseSourceConfig, e: unknown): Problem {
  return { code: 'SH_LEASES_READ', file: src.file, line: 1, col: 1, message: `cannot read ${src.format} leases: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
}

/** Builds a table from the files as they are now: for validate and check. */
export function loadIdentity(config: IdentityConfig, now: number): { table: IdentityTable; problems: Problem[] } {
  const problems: Problem[] = [];
  const sources = config.leases.map((s) => {
    const r = readSource(s);
    problems.push(...r.problems);
    return r.problems.length ? [] : r.leases;
  });
  return { table: IdentityTable.build(sources, config.static, now), problems };
}

/**
 * Lease writers rewrite in bursts (dnsmasq truncates then writes; Kea appends row by row). A busy DHCP
 * server changes its file many times a second, and a 50k-lease file costs tens of ms to read: a source is
 * read at most once per MIN_INTERVAL_MS, DEBOUNCE_MS after the last change seen.
 */
const DEBOUNCE_MS = 250;
const MIN_INTERVAL_MS = 1000;

/** Emits 'swap' (table) after each new table is in place. */
export class IdentitySources extends EventEmitter {
  private status: SourceStatus[] = [];
  private good: Lease[][] = [];
  private watchers: FSWatcher[] = [];
  private timers = new Map<number, NodeJS.Timeout>();
  private generation = 0;
  private closed = false;

  constructor(
    private config: IdentityConfig,
    readonly holder: IdentityHolder,
    private readonly counters: IdentityCounters,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    super();
    this.reset();
  }

  /** Reads every source synchronously, so the first query already sees the devices. */
  private reset(): void {
    this.generation++;
    this.good = this.config.leases.map(() => []);
    this.status = this.config.leases.map((s) => ({ format: s.format, file: s.file, leases: 0, problems: [] }));
    this.config.leases.forEach((s, i) => this.apply(i, readSource(s)));
    this.rebuild();
  }

  sources(): readonly SourceStatus[] {
    return this.status;
  }

  /** True while any source's last read failed (the page and /readyz detail show it). */
  get failing(): boolean {
    return this.status.some((s) => s.problems.length > 0);
  }

  /** A config reload: new sources or a new static map; unchanged files are read again anyway (cheap, and simple). */
  configure(config: IdentityConfig): void {
    this.config = config;
    const watching = this.watchers.length > 0;
    this.closeWatchers();
    this.reset();
    if (watching) this.watch();
  }

  watch(): void {
    if (this.closed) return;
    const dirs = new Map<string, number[]>();
    this.config.leases.forEach((s, i) => {
      const d = dirname(s.file);
      dirs.set(d, [...(dirs.get(d) ?? []), i]);
    });
    for (const [dir, indexes] of dirs) {
      try {
        // The folder: dnsmasq and dhcpd replace the file by rename, which a file watch would miss.
        const w = watch(dir, { persistent: false }, (_e, name) => {
          for (const i of indexes) if (name && basename(this.config.leases[i]!.file) === name.toString()) this.changed(i);
        });
        w.on('error', (e) => this.log.warn('SH_WATCH', 'lease folder watch failed; SIGHUP still re-reads', { dir, error: e.message }));
        this.watchers.push(w);
      } catch (e) {
        this.log.warn('SH_WATCH', 'cannot watch lease folder; SIGHUP still re-reads', { dir, error: String(e) });
      }
    }
  }

  private readonly lastRead = new Map<number, number>();

  private changed(i: number): void {
    clearTimeout(this.timers.get(i));
    const wait = Math.max(DEBOUNCE_MS, (this.lastRead.get(i) ?? 0) + MIN_INTERVAL_MS - Date.now());
    this.timers.set(i, setTimeout(() => {
      this.lastRead.set(i, Date.now());
      void this.reload(i);
    }, wait));
  }

  /** Re-reads one source (or all) now; resolves when the new table is in place. */
  async reload(only?: number): Promise<void> {
    const gen = this.generation;
    const indexes = only === undefined ? this.config.leases.map((_, i) => i) : [only];
    for (const i of indexes) {
      const src = this.config.leases[i];
      if (!src) continue;
      let r: { leases: Lease[]; problems: Problem[] };
      try {
        r = parseLeases(src.format, src.file, await readFile(src.file, 'utf8'));
      } catch (e) {
        r = { leases: [], problems: [cannotRead(src, e)] };
      }
      if (gen !== this.generation || this.closed) return; // the config changed meanwhile
      this.apply(i, r);
    }
    this.rebuild();
  }

  private apply(i: number, r: { leases: Lease[]; problems: Problem[] }): void {
    const src = this.config.leases[i]!;
    const st = this.status[i]!;
    const key = `${src.format}|${r.problems.length ? 'failure' : 'success'}`;
    this.counters.identityReloads.set(key, (this.counters.identityReloads.get(key) ?? 0) + 1);
    if (r.problems.length) {
      st.problems = r.problems.map(formatProblem);
      for (const p of st.problems) this.log.error(r.problems[0]!.code, `lease file rejected; its last good leases stay in force: ${p}`, { format: src.format });
      return;
    }
    this.good[i] = r.leases;
    st.problems = [];
    st.leases = r.leases.length;
    st.loadedAt = this.now();
  }

  private rebuild(): void {
    this.holder.current = IdentityTable.build(this.good, this.config.static, this.now(), this.holder.current);
    this.emit('swap', this.holder.current);
  }

  private closeWatchers(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  close(): void {
    this.closed = true;
    this.closeWatchers();
  }
}
