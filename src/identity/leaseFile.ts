// Reading one lease file again after it changed, in the identity thread.
//
// ISC Kea appends a row to its memfile at every lease renewal, so on a real
// network the file changes all the time and grows to tens of thousands of
// rows: reading it whole on every change costs ~1 s per read for 50k leases.
// For the append-only formats (kea-csv, and csv when it is appended to) this
// remembers the file's inode and how far it has read, and parses only the
// rows appended since. A row still being written (no newline yet) is left
// for the next read. A file that was replaced (another inode: Kea's lease
// file cleanup renames a new file into place), truncated (smaller than what
// was read) or rewritten in place is read whole: for Kea, which never
// rewrites in place, the 64 bytes before where the last read stopped must
// be unchanged, and only the bytes after them are read; for csv (an export
// script may overwrite the file, even at the same size) the bytes read
// before must hash the same. dnsmasq and dhcpd rewrite their files, so they
// are always read whole.
//
// Fail-closed as before: a read with a bad line changes nothing (the caller
// keeps the source's last good rows) and the next read starts from the same
// place, so the bad line is named again until the file is fixed.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import type { Problem } from '../errors.js';
import { isAppendFormat, parseAppended, parseLeases, type AppendFormat, type HeaderState, type Lease, type LeaseFormat } from './leaseFormats.js';

export interface LeaseSourceConfig {
  format: LeaseFormat;
  file: string;
}

/** A read: `whole` rows replace the source's; otherwise they are appended to it. */
export type LeaseRead = { ok: true; whole: boolean; leases: Lease[] } | { ok: false; problems: Problem[] };

/** Kea: the bytes before the read position compared on each read, to notice a rewrite in place. */
const FINGERPRINT = 64;
const NEWLINE = 0x0a;

export class LeaseFile {
  /** -1: nothing read yet, or the last whole read failed: the next read is whole. */
  private ino = -1;
  /** Bytes read so far (always just after a newline). */
  private offset = 0;
  /** Lines read so far, so a problem in appended rows names its line in the file. */
  private lines = 0;
  private header: HeaderState | undefined;
  /** kea-csv: the last FINGERPRINT bytes before `offset`. */
  private tail = Buffer.alloc(0);
  /** csv: a digest of the bytes before `offset`. */
  private digest = '';

  constructor(readonly src: LeaseSourceConfig) {}

  /** kea-csv: which of Kea's older lease files were read with the last whole read, and as what. */
  private priorKey = '';
  /** The versions of the files as the last read began (stale()). */
  private seen = '';

  /**
   * Reads what changed since the last read (`whole`: the whole file, whatever it is). For kea-csv a
   * whole read includes the older leases Kea's lease file cleanup keeps beside the file (keaPriorFiles),
   * first, as Kea itself loads them; a change to those makes the next read whole.
   */
  read(whole = false): LeaseRead {
    this.seen = this.versions();
    if (this.src.format !== 'kea-csv') return this.readFile(whole);
    const prior = keaPriorFiles(this.src.file);
    const key = fileKey(prior);
    const r = this.readFile(whole || key !== this.priorKey);
    if (!r.ok || !r.whole) return r;
    const older: Lease[] = [];
    for (const file of prior) {
      const p = readSource({ format: 'kea-csv', file });
      if (p.problems.length) {
        this.ino = -1; // read whole again next time
        return { ok: false, problems: p.problems };
      }
      for (const l of p.leases) older.push(l); // not push(...): a spread of 200,000 arguments overflows the stack
    }
    this.priorKey = key;
    return older.length ? { ok: true, whole: true, leases: older.concat(r.leases) } : r;
  }

  /** Whether the file (or Kea's older files) changed since the last read began: a stat, no read. */
  stale(): boolean {
    return this.versions() !== this.seen;
  }

  private versions(): string {
    return fileKey(this.src.format === 'kea-csv' ? [this.src.file, ...keaPriorFiles(this.src.file)] : [this.src.file]);
  }

  private readFile(whole: boolean): LeaseRead {
    let fd: number;
    try {
      fd = openSync(this.src.file, 'r');
    } catch (e) {
      this.ino = -1;
      return { ok: false, problems: [cannotRead(this.src, e)] };
    }
    try {
      return this.readFrom(fd, whole);
    } catch (e) {
      this.ino = -1;
      return { ok: false, problems: [cannotRead(this.src, e)] };
    } finally {
      closeSync(fd);
    }
  }

  private readFrom(fd: number, whole: boolean): LeaseRead {
    const st = fstatSync(fd);
    const size = st.size;
    const format = this.src.format;
    if (!isAppendFormat(format)) {
      const r = parseLeases(format, this.src.file, readRange(fd, 0, size).toString('utf8'));
      return r.problems.length ? { ok: false, problems: r.problems } : { ok: true, whole: true, leases: r.leases };
    }
    if (!whole && st.ino === this.ino && size >= this.offset) {
      if (format === 'kea-csv') {
        // Kea only appends (its cleanup writes a new file and renames it into place): the bytes just
        // before where the last read stopped tell that this is still the file that was read.
        const base = this.offset - this.tail.length;
        const buf = readRange(fd, base, size);
        if (buf.subarray(0, this.tail.length).equals(this.tail)) return this.parse(format, buf, base, this.tail.length, st.ino);
      } else {
        // An export may be rewritten in place, even at the same size (a MAC changed): the bytes read
        // before must be the same, byte for byte. Reading and hashing them costs little next to parsing.
        const buf = readRange(fd, 0, size);
        if (sha256(buf.subarray(0, this.offset)) === this.digest) return this.parse(format, buf, 0, this.offset, st.ino);
      }
    }
    // New, replaced, truncated, rewritten, or asked for: from the start, with no header known.
    this.ino = -1;
    return this.parse(format, readRange(fd, 0, size), 0, 0, st.ino);
  }

  /**
   * Parses the complete lines of buf[start..] (buf holds the file from byte `base`); on success moves
   * the read position past them. start = 0 with base = 0 is a whole read.
   */
  private parse(format: AppendFormat, buf: Buffer, base: number, start: number, ino: number): LeaseRead {
    const whole = base + start === 0;
    const end = Math.max(start, buf.lastIndexOf(NEWLINE) + 1); // start: no complete line yet
    if (end === start && !whole) return { ok: true, whole: false, leases: [] };
    let newlines = 0;
    for (let i = buf.indexOf(NEWLINE, start); i !== -1 && i < end; i = buf.indexOf(NEWLINE, i + 1)) newlines++;
    const r = parseAppended(format, this.src.file, buf.toString('utf8', start, end), whole ? 1 : this.lines + 1, whole ? undefined : this.header);
    if (r.problems.length) return { ok: false, problems: r.problems };
    this.offset = base + end;
    this.lines = (whole ? 0 : this.lines) + newlines;
    this.header = r.header;
    this.ino = ino;
    if (format === 'kea-csv') this.tail = Buffer.from(buf.subarray(Math.max(0, end - FINGERPRINT), end));
    else this.digest = sha256(buf.subarray(0, end));
    return { ok: true, whole, leases: r.leases };
  }
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('base64');
}

function readRange(fd: number, from: number, to: number): Buffer {
  const buf = Buffer.allocUnsafe(Math.max(0, to - from));
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, from + got);
    if (n === 0) break; // the file shrank while we read: what we have is what there is
    got += n;
  }
  return got === buf.length ? buf : buf.subarray(0, got);
}

/**
 * Kea's lease file cleanup (kea-lfc(8)) moves the file it appends to aside as <file>.2, starts a new
 * one, and compacts .2 with the previous cleanup's output <file>.1 into <file>.completed, which then
 * becomes <file>.1. The leases are those files, then <file>: the new file alone holds only the rows
 * written since. Kea loads <file>.completed if it exists, else <file>.1 and <file>.2; so does this.
 */
export function keaPriorFiles(file: string): string[] {
  if (existsSync(`${file}.completed`)) return [`${file}.completed`];
  return [`${file}.1`, `${file}.2`].filter((f) => existsSync(f));
}

/** The names Kea's cleanup gives the older lease files (to watch for). */
export function isKeaPriorFile(file: string, name: string): boolean {
  return name === `${file}.1` || name === `${file}.2` || name === `${file}.completed`;
}

/** Identifies files' versions cheaply: a change of any gives another key. */
function fileKey(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        const st = statSync(f);
        return `${f}:${st.ino}:${st.size}:${st.mtimeMs}`;
      } catch {
        return `${f}:gone`;
      }
    })
    .join('|');
}

/** Reads one lease file whole, as it is now (validate and check read kea-csv's older files too: LeaseFile). */
export function readSource(src: LeaseSourceConfig): { leases: Lease[]; problems: Problem[] } {
  let text: string;
  try {
    text = readFileSync(src.file, 'utf8');
  } catch (e) {
    return { leases: [], problems: [cannotRead(src, e)] };
  }
  return parseLeases(src.format, src.file, text);
}

export function cannotRead(src: LeaseSourceConfig, e: unknown): Problem {
  return { code: 'SH_LEASES_READ', file: src.file, line: 1, col: 1, message: `cannot read ${src.format} leases: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
}
