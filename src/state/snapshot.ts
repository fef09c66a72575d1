// The last good policy on disk: each time a policy generation compiles, the
// files it compiled from (config, lists, exceptions), byte for byte, plus a
// manifest of their real paths, under state.dir. At a start-up whose files do
// not compile, sinkhole serves from it instead of leaving the network without
// DNS (state/lastGood.ts).
//
// Layout of state.dir:
//   current                      the name of the snapshot in force (one line)
//   snapshot-<time>-g<N>-<rand>/ manifest.json + one file per input
// A snapshot is written into a temporary folder, every file fsynced, then
// renamed into place; `current` is replaced by rename as well. A crash at any
// point leaves either the old snapshot or the new one, never half of one.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { MAX_YAML_BYTES } from '../config/yamlReader.js';
import type { Logger } from '../log.js';
import type { Stats } from '../metrics/stats.js';
import type { Generation } from '../policy/generation.js';
import type { FileSource } from '../config/sources.js';
import { VERSION } from '../version.js';
import { syncDir, writeDurable } from '../durable.js';

const FORMAT = 1;
const POINTER = 'current';
const MANIFEST = 'manifest.json';
/** A temporary folder older than this was left by a crash, not by a save in progress. */
const STALE_TMP_MS = 3_600_000;

export interface SnapshotFile {
  /** The file's real path, as the config names it. */
  path: string;
  /** Its copy's name inside the snapshot folder. */
  stored: string;
  role: 'config' | 'list' | 'exceptions';
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: typeof FORMAT;
  takenAt: string;
  generation: number;
  version: string;
  /** The config file's real path. */
  config: string;
  files: SnapshotFile[];
}

/** state.dir as the config file says, read leniently so it is found even in a config that does not otherwise compile. */
export function stateDirOf(configFile: string): string {
  const path = resolve(configFile);
  const fallback = resolve(dirname(path), '.sinkhole-state');
  try {
    const text = readFileSync(path, 'utf8');
    if (text.length > MAX_YAML_BYTES) return fallback; // the config's own reading refuses it at file:line:col
    // uniqueKeys off: yaml's own check compares every key with every other (50,000 keys took 25 s).
    const dir = parseDocument(text, { uniqueKeys: false }).getIn(['state', 'dir']);
    return typeof dir === 'string' && dir ? resolve(dirname(path), dir) : fallback;
  } catch {
    return fallback;
  }
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function errorText(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
}

/**
 * Why state.dir cannot be written (mkdir, then a probe file), or undefined when it can. Checked once at
 * start: on a read-only mount every save would fail, and a deployment should hear so before it needs the
 * fallback. The probe is named like a temporary folder, so a crash's leftover is pruned.
 */
export function stateDirProblem(dir: string): string | undefined {
  const probe = join(dir, `.tmp-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(probe, '');
    rmSync(probe);
    return undefined;
  } catch (e) {
    return errorText(e);
  }
}

/** The manifest entries for what a generation read. */
function describe(g: Generation, inputs: ReadonlyMap<string, Uint8Array>): SnapshotFile[] {
  const ex = g.config.exceptions;
  const exceptionsFile = ex && 'file' in ex ? ex.file : undefined;
  return [...inputs].map(([path, bytes], i) => ({
    path,
    stored: `${String(i).padStart(3, '0')}-${basename(path)}`,
    role: path === g.config.file ? 'config' : path === exceptionsFile ? 'exceptions' : 'list',
    bytes: bytes.length,
    sha256: sha256(bytes),
  }));
}

function sameInputs(a: readonly SnapshotFile[], b: readonly SnapshotFile[]): boolean {
  return a.length === b.length && a.every((f, i) => f.path === b[i]!.path && f.sha256 === b[i]!.sha256);
}

/**
 * Saves snapshots off the query path, one at a time; when several are asked
 * for while one is being written, only the newest is written next. A save
 * never throws: a state.dir that cannot be written (read-only, disk full)
 * is a warning and a counter, and DNS goes on.
 */
export class PolicyStateStore {
  private running: Promise<void> | undefined;
  private queued: { g: Generation; inputs: ReadonlyMap<string, Uint8Array> } | undefined;

  constructor(
    private readonly log: Logger,
    private readonly stats: Stats,
  ) {}

  save(g: Generation, inputs: ReadonlyMap<string, Uint8Array>): Promise<void> {
    this.queued = { g, inputs };
    this.running ??= this.drain();
    return this.running;
  }

  /** Resolves when no save is in progress or queued. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private async drain(): Promise<void> {
    while (this.queued) {
      const { g, inputs } = this.queued;
      this.queued = undefined;
      await this.write(g, inputs);
    }
    this.running = undefined;
  }

  private async write(g: Generation, inputs: ReadonlyMap<string, Uint8Array>): Promise<void> {
    const dir = g.config.state.dir;
    try {
      const files = describe(g, inputs);
      const current = await readCurrent(dir).catch(() => undefined);
      if (current && sameInputs(current.manifest.files, files)) return; // a reload that changed nothing
      await mkdir(dir, { recursive: true });
      const tag = randomBytes(4).toString('hex');
      const tmp = join(dir, `.tmp-${process.pid}-${tag}`);
      const takenAt = new Date().toISOString();
      const name = `snapshot-${takenAt.replace(/[:.]/g, '')}-g${g.number}-${tag}`;
      await mkdir(tmp);
      try {
        for (const f of files) await writeDurable(join(tmp, f.stored), inputs.get(f.path)!);
        const manifest: Manifest = { format: FORMAT, takenAt, generation: g.number, version: VERSION, config: g.config.file, files };
        await writeDurable(join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
        await syncDir(tmp);
        await rename(tmp, join(dir, name));
      } catch (e) {
        await rm(tmp, { recursive: true, force: true }).catch(() => {});
        throw e;
      }
      await writeDurable(join(dir, `${POINTER}.tmp`), `${name}\n`);
      await rename(join(dir, `${POINTER}.tmp`), join(dir, POINTER));
      await syncDir(dir);
      await prune(dir, name);
      this.log.info('last good policy saved', { dir, generation: g.number, files: files.length });
    } catch (e) {
      this.stats.stateWriteFailures++;
      this.log.warn('SH_STATE_WRITE', 'cannot save the last good policy in state.dir; DNS is not affected, but a restart with broken files would have no policy to fall back to', {
        dir, error: errorText(e),
      });
    }
  }
}

/** Drops every snapshot but `keep`, and temporary folders that a crash left behind. */
async function prune(dir: string, keep: string): Promise<void> {
  const now = Date.now();
  for (const entry of await readdir(dir)) {
    if (entry.startsWith('snapshot-') && entry !== keep) {
      await rm(join(dir, entry), { recursive: true, force: true });
    } else if (entry.startsWith('.tmp-')) {
      const s = await stat(join(dir, entry)).catch(() => undefined);
      if (s && now - s.mtimeMs > STALE_TMP_MS) await rm(join(dir, entry), { recursive: true, force: true });
    }
  }
}

async function readCurrent(dir: string): Promise<{ folder: string; manifest: Manifest }> {
  const name = (await readFile(join(dir, POINTER), 'utf8')).trim();
  const folder = join(dir, checkName(name));
  return { folder, manifest: checkManifest(JSON.parse(await readFile(join(folder, MANIFEST), 'utf8'))) };
}

function checkName(name: string): string {
  if (!/^snapshot-[A-Za-z0-9-]+$/.test(name)) throw new Error(`"${POINTER}" names no snapshot ("${name.slice(0, 80)}")`);
  return name;
}

function checkManifest(m: unknown): Manifest {
  const x = m as Partial<Manifest> | null;
  const ok =
    x && x.format === FORMAT && typeof x.takenAt === 'string' && typeof x.config === 'string' && typeof x.generation === 'number' &&
    Array.isArray(x.files) &&
    x.files.every((f) => f && typeof f.path === 'string' && typeof f.sha256 === 'string' && typeof f.stored === 'string' && /^[^/\\]+$/.test(f.stored) && f.stored !== '..');
  if (!ok) throw new Error(`${MANIFEST} is not a sinkhole snapshot manifest (format ${FORMAT})`);
  return x as Manifest;
}

/** The snapshot in force in `dir`, or why there is none (`missing`: never saved; `broken`: unreadable). */
export function readSnapshot(dir: string): { snapshot: { folder: string; manifest: Manifest } } | { missing: string } | { broken: string } {
  let name: string;
  try {
    name = readFileSync(join(dir, POINTER), 'utf8').trim();
  } catch (e) {
    return { missing: `no last good policy in ${dir} (${errorText(e)})` };
  }
  try {
    const folder = join(dir, checkName(name));
    return { snapshot: { folder, manifest: checkManifest(JSON.parse(readFileSync(join(folder, MANIFEST), 'utf8'))) } };
  } catch (e) {
    return { broken: `the last good policy in ${dir} cannot be read: ${errorText(e)}` };
  }
}

/**
 * Reads a policy's files from a snapshot, under their real paths: the config
 * file (whatever path it is asked for by), and each list and exceptions file
 * by the path the manifest recorded. Each copy is checked against its SHA-256.
 */
export class SnapshotSource implements FileSource {
  private readonly byPath: Map<string, SnapshotFile>;

  constructor(
    private readonly snapshot: { folder: string; manifest: Manifest },
    private readonly configFile: string,
  ) {
    this.byPath = new Map(snapshot.manifest.files.map((f) => [f.path, f]));
  }

  read(path: string): Buffer {
    const m = this.snapshot.manifest;
    const f = path === resolve(this.configFile) ? m.files.find((x) => x.path === m.config) : this.byPath.get(path);
    if (!f) throw Object.assign(new Error(`${path} is not in the snapshot`), { code: 'ENOENT (not in the last good snapshot)' });
    const bytes = readFileSync(join(this.snapshot.folder, f.stored));
    if (sha256(bytes) !== f.sha256) throw Object.assign(new Error(`${f.stored} changed`), { code: 'the snapshot copy is damaged (SHA-256 mismatch)' });
    return bytes;
  }
}
