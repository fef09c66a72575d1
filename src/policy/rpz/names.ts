// The QNAME and wildcard triggers of one RPZ zone (draft-vixie-dnsop-dns-rpz
// §3.1), stored as the list matcher stores its rules (policy/matcher.ts): the
// names back to back in one byte buffer, everything else in typed arrays under
// one open-addressing table. A 1M-record zone held them as an object and a Map
// entry each, 246 MB of heap cloned to every query thread (bench/RESULTS.md
// issue 21); these arrays go to the threads in SharedArrayBuffers, one copy.
//
// A trigger is its name and whether it is the wildcard `*.name`; its action is
// a small code, 0 while it is not applied (a problem, an unsupported action,
// or an RRset still being read). Local data, which few triggers have, is kept
// beside them by trigger index (zone.ts).
import { hashBytes, hashName, shared, suffixHashes } from '../matcher.js';
import { RPZ_ACTIONS, type RpzAction } from './actions.js';

export interface RpzNameData {
  /** Every trigger's name (without `*.`), back to back, latin1. */
  bytes: Uint8Array;
  start: Uint32Array;
  len: Uint8Array;
  /** 1 for `*.name`. */
  wild: Uint8Array;
  /** 0 = not applied, else 1 + the index in RPZ_ACTIONS. */
  action: Uint8Array;
  /** The line of the first record at the owner, for `check` and the logs. */
  line: Uint32Array;
  /** Open addressing: slot → trigger index + 1 (0 = empty); a name and its wildcard are two entries. */
  table: Int32Array;
}

export const NOT_APPLIED = 0;

export function actionCode(action: RpzAction): number {
  return RPZ_ACTIONS.indexOf(action) + 1;
}

export function actionOfCode(code: number): RpzAction | undefined {
  return code === NOT_APPLIED ? undefined : RPZ_ACTIONS[code - 1];
}

function grown<T extends Uint8Array | Uint32Array>(a: T, size: number, make: (n: number) => T): T {
  const b = make(size);
  b.set(a);
  return b;
}

/** Builds the data one trigger at a time; `find` works while building, so an owner seen again is found. */
export class RpzNamesBuilder {
  private n = 0;
  private used = 0;
  private bytes = new Uint8Array(1 << 16);
  private start: Uint32Array;
  private len: Uint8Array;
  private wild: Uint8Array;
  private line: Uint32Array;
  private actions: Uint8Array;
  private table: Int32Array;
  /** A flag per trigger for the compiler's own use (zone.ts), not part of the data. */
  private marks: Uint8Array;

  /** `expected`: how many triggers there may be (a zone's line count bounds them), so a big zone is not grown and rehashed step by step. */
  constructor(expected = 1024) {
    const n = Math.max(16, expected);
    this.start = new Uint32Array(n);
    this.len = new Uint8Array(n);
    this.wild = new Uint8Array(n);
    this.line = new Uint32Array(n);
    this.actions = new Uint8Array(n);
    this.marks = new Uint8Array(n);
    let size = 32;
    while (size < n * 2) size *= 2;
    this.table = new Int32Array(size);
  }

  get size(): number {
    return this.n;
  }

  /** The trigger for `name` (lower-case, no trailing dot) and `wild`, or -1. `hash` is hashName(name), if the caller has it. */
  find(name: string, wild: boolean, hash = hashName(name)): number {
    return probe(this.bytes, this.start, this.len, this.wild, this.table, name, 0, hash, wild ? 1 : 0);
  }

  /** Adds a trigger not yet present, not applied; returns its index. */
  add(name: string, wild: boolean, line: number, hash = hashName(name)): number {
    if (this.n === this.line.length) this.growTriggers();
    if (this.used + name.length > this.bytes.length) this.bytes = grown(this.bytes, Math.max(this.bytes.length * 2, this.used + name.length), (k) => new Uint8Array(k));
    const i = this.n++;
    this.start[i] = this.used;
    this.len[i] = name.length;
    for (let j = 0; j < name.length; j++) this.bytes[this.used + j] = name.charCodeAt(j);
    this.used += name.length;
    this.wild[i] = wild ? 1 : 0;
    this.line[i] = line;
    // Load factor ≤ 0.5 keeps probe runs short (as the matcher's table).
    if (this.n * 2 > this.table.length) this.rehash(this.table.length * 2);
    else this.insert(i, hash);
    return i;
  }

  setAction(i: number, code: number): void {
    this.actions[i] = code;
  }

  actionAt(i: number): number {
    return this.actions[i]!;
  }

  lineAt(i: number): number {
    return this.line[i]!;
  }

  setMark(i: number, mark: number): void {
    this.marks[i] = mark;
  }

  markAt(i: number): number {
    return this.marks[i]!;
  }

  /** Views of the arrays, not copies: a copy would briefly double the peak of a big zone. */
  build(): RpzNameData {
    const n = this.n;
    return {
      bytes: this.bytes.subarray(0, this.used), start: this.start.subarray(0, n), len: this.len.subarray(0, n),
      wild: this.wild.subarray(0, n), action: this.actions.subarray(0, n), line: this.line.subarray(0, n), table: this.table,
    };
  }

  private insert(i: number, hash: number): void {
    const mask = this.table.length - 1;
    let slot = hash & mask;
    while (this.table[slot] !== 0) slot = (slot + 1) & mask;
    this.table[slot] = i + 1;
  }

  private rehash(size: number): void {
    this.table = new Int32Array(size);
    for (let i = 0; i < this.n; i++) this.insert(i, hashBytes(this.bytes, this.start[i]!, this.start[i]! + this.len[i]!));
  }

  private growTriggers(): void {
    const size = this.line.length * 2;
    this.start = grown(this.start, size, (k) => new Uint32Array(k));
    this.len = grown(this.len, size, (k) => new Uint8Array(k));
    this.wild = grown(this.wild, size, (k) => new Uint8Array(k));
    this.line = grown(this.line, size, (k) => new Uint32Array(k));
    this.actions = grown(this.actions, size, (k) => new Uint8Array(k));
    this.marks = grown(this.marks, size, (k) => new Uint8Array(k));
  }
}

/** The trigger whose name is name[from..] and whose wildcard flag is `wild`, or -1. */
function probe(bytes: Uint8Array, start: Uint32Array, len: Uint8Array, wildOf: Uint8Array, table: Int32Array, name: string, from: number, hash: number, wild: number): number {
  const mask = table.length - 1;
  const n = name.length - from;
  for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
    const at = table[slot]!;
    if (at === 0) return -1;
    const r = at - 1;
    if (len[r] === n && wildOf[r] === wild) {
      const s = start[r]!;
      let j = 0;
      while (j < n && bytes[s + j] === name.charCodeAt(from + j)) j++;
      if (j === n) return r;
    }
  }
}

/** Scratch space for one lookup (as the matcher's): where each suffix of the name starts, and its hash. */
const suffixStart = new Int32Array(128);
const suffixHash = new Int32Array(128);

/** An applied trigger for name[from..] with `wild`, or -1. */
function applied(d: RpzNameData, name: string, k: number, wild: number): number {
  const r = probe(d.bytes, d.start, d.len, d.wild, d.table, name, suffixStart[k]!, suffixHash[k]!, wild);
  return r !== -1 && d.action[r] !== NOT_APPLIED ? r : -1;
}

/**
 * The most specific applied trigger for `name` (lower-case, no trailing dot), or -1:
 * the exact name first; then, from the nearest parent up, the wildcard of that
 * parent, unless the parent is itself a trigger (RFC 4592 §2.2, the closest
 * encloser: a wildcard does not reach below a name the zone has). O(labels).
 */
export function findQname(d: RpzNameData, name: string): number {
  if (!d.start.length) return -1;
  const k = suffixHashes(name, suffixStart, suffixHash);
  if (k === 0) return -1;
  const exact = applied(d, name, k - 1, 0);
  if (exact !== -1) return exact;
  for (let p = k - 2; p >= 0; p--) {
    const w = applied(d, name, p, 1);
    if (w !== -1) return w;
    if (applied(d, name, p, 0) !== -1) return -1;
  }
  return -1;
}

/** The owner as written relative to the origin: `bad.example` or `*.bad.example`. */
export function ownerOf(d: RpzNameData, i: number): string {
  const s = d.start[i]!;
  let text = d.wild[i] ? '*.' : '';
  for (let j = s; j < s + d.len[i]!; j++) text += String.fromCharCode(d.bytes[j]!);
  return text;
}

/** The same data with its arrays in SharedArrayBuffers, for several query threads. */
export function shareNames(d: RpzNameData): RpzNameData {
  return {
    bytes: shared(d.bytes), start: shared(d.start), len: shared(d.len), wild: shared(d.wild),
    action: shared(d.action), line: shared(d.line), table: shared(d.table),
  };
}

/** Feeds what the triggers enforce (names, wildcard flags, actions, in file order) to `update`, for the policy fingerprint. */
export function digestNames(d: RpzNameData, update: (chunk: Uint8Array) => void): void {
  const view = (a: Uint8Array | Uint32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (const part of [d.bytes, d.start, d.len, d.wild, d.action]) update(view(part));
}
