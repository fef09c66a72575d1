// Label-suffix matching: a rule `tiktok.com` matches `tiktok.com` and every
// name below it, never `nottiktok.com` or `tiktok.com.evil.example`. A lookup
// hashes every suffix of the name that starts at a label boundary in one
// right-to-left pass, then probes one hash table per suffix: O(labels),
// whatever the number of rules.
//
// Rules are stored without one JS object or string each: their names sit in
// one byte buffer and everything else in typed arrays, under an
// open-addressing table. A million rules take ~45 MB instead of the ~200 MB a
// Map of strings peaks at (bench/rules-load.sh).

export interface ListInfo {
  name: string;
  files: string[];
}

export interface RuleMatch {
  list: string;
  /** The rule as it would be written in the file: `tiktok.com` or `*.tiktok.com`. */
  rule: string;
  file: string;
  line: number;
  /** The name that matched (the qname, or a CNAME target). */
  name: string;
}

// FNV-1a, 32-bit, fed right to left so that one pass yields every suffix's hash.
const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
const DOT = 46;

function grow<T extends Uint8Array | Uint16Array | Uint32Array>(a: T, size: number, make: (n: number) => T): T {
  const b = make(size);
  b.set(a);
  return b;
}

export class MatcherBuilder {
  readonly lists: ListInfo[] = [];
  private readonly files: string[] = [];
  private n = 0;
  private bytes = Buffer.allocUnsafe(1 << 16);
  private used = 0;
  private start = new Uint32Array(1024);
  private len = new Uint8Array(1024);
  private listOf = new Uint16Array(1024);
  private fileOf = new Uint16Array(1024);
  private lineOf = new Uint32Array(1024);
  private subOnly = new Uint8Array(1024);
  private readonly countByList = new Map<number, number>();

  addList(info: ListInfo): number {
    return this.lists.push(info) - 1;
  }

  addFile(file: string): number {
    return this.files.push(file) - 1;
  }

  /** `domain` is lower-case ASCII without a trailing dot (listParser guarantees it). */
  addRule(list: number, file: number, domain: string, subdomainsOnly: boolean, line: number): void {
    this.slot(list, file, domain.length, subdomainsOnly, line);
    this.used += this.bytes.write(domain, this.used, 'latin1');
  }

  /** The same, for a name already validated in place: bytes a..b of `src`. */
  addRuleBytes(list: number, file: number, src: Buffer, a: number, b: number, line: number): void {
    this.slot(list, file, b - a, false, line);
    this.used += src.copy(this.bytes, this.used, a, b);
  }

  /** Makes room for `extra` more name bytes at once (a list file's size bounds its names), so big lists grow the buffer once. */
  reserve(extra: number): void {
    if (this.used + extra <= this.bytes.length) return;
    const b = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + extra));
    this.bytes.copy(b, 0, 0, this.used);
    this.bytes = b;
  }

  private slot(list: number, file: number, length: number, subdomainsOnly: boolean, line: number): number {
    if (this.n === this.lineOf.length) this.growRules();
    this.reserve(length);
    const i = this.n++;
    this.start[i] = this.used;
    this.len[i] = length;
    this.listOf[i] = list;
    this.fileOf[i] = file;
    this.lineOf[i] = line;
    this.subOnly[i] = subdomainsOnly ? 1 : 0;
    this.countByList.set(list, (this.countByList.get(list) ?? 0) + 1);
    return i;
  }

  private growRules(): void {
    const size = this.lineOf.length * 2;
    this.start = grow(this.start, size, (k) => new Uint32Array(k));
    this.len = grow(this.len, size, (k) => new Uint8Array(k));
    this.listOf = grow(this.listOf, size, (k) => new Uint16Array(k));
    this.fileOf = grow(this.fileOf, size, (k) => new Uint16Array(k));
    this.lineOf = grow(this.lineOf, size, (k) => new Uint32Array(k));
    this.subOnly = grow(this.subOnly, size, (k) => new Uint8Array(k));
  }

  ruleCount(list: number): number {
    return this.countByList.get(list) ?? 0;
  }

  build(): Matcher {
    const n = this.n;
    // Views, not copies: copying would briefly double the peak memory of a large list.
    const start = this.start.subarray(0, n);
    const len = this.len.subarray(0, n);
    const bytes = this.bytes.subarray(0, this.used);
    const { table, next } = buildTable(bytes, start, len);
    return new Matcher({
      lists: this.lists, files: this.files, bytes, start, len, table, next,
      listOf: this.listOf.subarray(0, n), fileOf: this.fileOf.subarray(0, n), lineOf: this.lineOf.subarray(0, n), subOnly: this.subOnly.subarray(0, n),
    });
  }
}

/**
 * Everything a Matcher is made of: plain arrays, so a generation compiled in
 * a worker thread crosses to the query threads as is (in SharedArrayBuffers,
 * one copy for all of them), and nothing is rebuilt on the query path.
 */
export interface MatcherData {
  lists: ListInfo[];
  files: string[];
  /** Every rule's name, back to back. */
  bytes: Uint8Array;
  start: Uint32Array;
  len: Uint8Array;
  listOf: Uint16Array;
  fileOf: Uint16Array;
  lineOf: Uint32Array;
  subOnly: Uint8Array;
  /** Open addressing: slot → rule index + 1 (0 = empty). Rules with the same name are chained through `next`. */
  table: Int32Array;
  next: Int32Array;
}

/** The hash table over the rules' names; O(rules), done once per compile. */
function buildTable(bytes: Uint8Array, start: Uint32Array, len: Uint8Array): { table: Int32Array; next: Int32Array } {
  const n = start.length;
  let size = 16;
  while (size < n * 2) size *= 2; // load factor ≤ 0.5 keeps probe runs short
  const table = new Int32Array(size);
  const mask = size - 1;
  const next = new Int32Array(n).fill(-1);
  const hash = (i: number): number => hashBytes(bytes, start[i]!, start[i]! + len[i]!);
  const same = (a: number, b: number): boolean => {
    const k = len[a]!;
    if (k !== len[b]) return false;
    const sa = start[a]!;
    const sb = start[b]!;
    for (let j = 0; j < k; j++) if (bytes[sa + j] !== bytes[sb + j]) return false;
    return true;
  };
  // Insert in reverse so each chain lists rules in file order.
  for (let i = n - 1; i >= 0; i--) {
    let slot = hash(i) & mask;
    for (;;) {
      const at = table[slot]!;
      if (at === 0) {
        table[slot] = i + 1;
        break;
      }
      if (same(at - 1, i)) {
        next[i] = at - 1;
        table[slot] = i + 1;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  return { table, next };
}

/** A copy of the data whose arrays live in SharedArrayBuffers (for several query threads). */
export function shareMatcherData(d: MatcherData): MatcherData {
  return {
    lists: d.lists,
    files: d.files,
    bytes: shared(d.bytes),
    start: shared(d.start),
    len: shared(d.len),
    listOf: shared(d.listOf),
    fileOf: shared(d.fileOf),
    lineOf: shared(d.lineOf),
    subOnly: shared(d.subOnly),
    table: shared(d.table),
    next: shared(d.next),
  };
}

type Typed = Uint8Array | Uint16Array | Uint32Array | Int32Array;

/**
 * `a` in a SharedArrayBuffer of its own (a copy), or `a` itself when it already is in one: data the
 * compile worker shared is handed on to the query threads without a second copy.
 */
export function shared<T extends Typed>(a: T): T {
  if (a.buffer instanceof SharedArrayBuffer) return a;
  const make = a.constructor as new (b: SharedArrayBuffer, offset: number, length: number) => T;
  const out = new make(new SharedArrayBuffer(Math.max(1, a.byteLength)), 0, a.length);
  out.set(a as never);
  return out;
}

/** The hash of bytes[from..to), fed right to left as suffixHashes feeds a name. */
export function hashBytes(bytes: Uint8Array, from: number, to: number): number {
  let h = FNV_OFFSET;
  for (let j = to - 1; j >= from; j--) h = Math.imul(h ^ bytes[j]!, FNV_PRIME);
  return h;
}

/** The hash of name[from..] (latin1), the same as hashBytes gives for its bytes. */
export function hashName(name: string, from = 0): number {
  let h = FNV_OFFSET;
  for (let j = name.length - 1; j >= from; j--) h = Math.imul(h ^ name.charCodeAt(j), FNV_PRIME);
  return h;
}

/**
 * Hashes every label-boundary suffix of `name` in one right-to-left pass into
 * `starts`/`hashes` (where it starts, its hash); returns how many, the whole name last.
 */
export function suffixHashes(name: string, starts: Int32Array, hashes: Int32Array): number {
  let h = FNV_OFFSET;
  let k = 0;
  for (let j = name.length - 1; j >= 0; j--) {
    const c = name.charCodeAt(j);
    if (c === DOT && k < starts.length) {
      starts[k] = j + 1;
      hashes[k++] = h;
    }
    h = Math.imul(h ^ c, FNV_PRIME);
  }
  if (name.length && k < starts.length) {
    starts[k] = 0;
    hashes[k++] = h;
  }
  return k;
}

/** Rule texts kept at most (describe). */
const MAX_TEXTS = 65_536;

/** Scratch space for one lookup: where each suffix starts in the name, and its hash. */
const suffixStart = new Int32Array(128);
const suffixHash = new Int32Array(128);

export class Matcher {
  readonly lists: readonly ListInfo[];
  private readonly files: readonly string[];
  private readonly bytes: Uint8Array;
  private readonly start: Uint32Array;
  private readonly len: Uint8Array;
  private readonly table: Int32Array;
  private readonly mask: number;
  private readonly next: Int32Array;
  private readonly listOf: Uint16Array;
  private readonly fileOf: Uint16Array;
  private readonly lineOf: Uint32Array;
  private readonly subOnly: Uint8Array;
  private readonly texts = new Map<number, string>();

  constructor(readonly data: MatcherData) {
    ({ lists: this.lists, files: this.files, bytes: this.bytes, start: this.start, len: this.len, table: this.table, next: this.next } = data);
    ({ listOf: this.listOf, fileOf: this.fileOf, lineOf: this.lineOf, subOnly: this.subOnly } = data);
    this.mask = this.table.length - 1;
  }

  /** The first rule (head of its chain) whose name equals name[from..], or -1. */
  private lookup(name: string, from: number, hash: number): number {
    const n = name.length - from;
    for (let slot = hash & this.mask; ; slot = (slot + 1) & this.mask) {
      const at = this.table[slot]!;
      if (at === 0) return -1;
      const r = at - 1;
      if (this.len[r] === n) {
        let j = 0;
        const s = this.start[r]!;
        while (j < n && this.bytes[s + j] === name.charCodeAt(from + j)) j++;
        if (j === n) return r;
      }
    }
  }

  /** Hashes every label-boundary suffix of `name`; returns how many, longest last. */
  private suffixes(name: string): number {
    return suffixHashes(name, suffixStart, suffixHash);
  }

  /**
   * The most specific rule matching `name` in a list accepted by `accept`
   * (indexed by list number), or -1. `name` is lower-case without a trailing dot.
   */
  find(name: string, accept: Uint8Array): number {
    for (let k = this.suffixes(name) - 1; k >= 0; k--) {
      const strict = suffixStart[k]! > 0; // a proper parent of `name`: *.rules apply
      for (let r = this.lookup(name, suffixStart[k]!, suffixHash[k]!); r !== -1; r = this.next[r]!) {
        if (accept[this.listOf[r]!] && (strict || !this.subOnly[r])) return r;
      }
    }
    return -1;
  }

  /** Every rule matching `name`, most specific first, in any list. For `check` and the exception path. */
  findAll(name: string): number[] {
    const out: number[] = [];
    for (let k = this.suffixes(name) - 1; k >= 0; k--) {
      const strict = suffixStart[k]! > 0;
      for (let r = this.lookup(name, suffixStart[k]!, suffixHash[k]!); r !== -1; r = this.next[r]!) {
        if (strict || !this.subOnly[r]) out.push(r);
      }
    }
    return out;
  }

  /**
   * Feeds what the rules enforce (names, lists, `*.` flags, in load order) to
   * `update`, for the policy fingerprint. Files and line numbers are left out:
   * the same rules at another path are the same policy.
   */
  digest(update: (chunk: Uint8Array) => void): void {
    for (const l of this.lists) update(Buffer.from(`${l.name}\n`));
    const view = (a: Uint8Array | Uint16Array | Uint32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (const part of [this.bytes, this.start, this.len, this.listOf, this.subOnly]) update(view(part));
  }

  listIndex(rule: number): number {
    return this.listOf[rule]!;
  }

  describe(rule: number, name: string): RuleMatch {
    return {
      list: this.lists[this.listOf[rule]!]!.name,
      rule: this.ruleText(rule),
      file: this.files[this.fileOf[rule]!]!,
      line: this.lineOf[rule]!,
      name,
    };
  }

  /**
   * The rule as written, made once per rule that ever matches and kept: every blocked query names
   * its rule (logs, metrics, EDE), and the few rules that match nearly all of them cost no string each.
   */
  private ruleText(rule: number): string {
    let text = this.texts.get(rule);
    if (text === undefined) {
      const s = this.start[rule]!;
      text = '';
      for (let i = s; i < s + this.len[rule]!; i++) text += String.fromCharCode(this.bytes[i]!);
      if (this.subOnly[rule]) text = `*.${text}`;
      if (this.texts.size >= MAX_TEXTS) this.texts.clear(); // bounded: a scan of a million rules cannot grow it for ever
      this.texts.set(rule, text);
    }
    return text;
  }
}
