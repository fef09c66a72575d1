// Label-suffix matching: a rule `tiktok.com` matches `tiktok.com` and every
// name below it, never `nottiktok.com` or `tiktok.com.evil.example`. A lookup
// walks the name's suffixes at label boundaries, one hash lookup each:
// O(labels), whatever the number of rules.
//
// Rules live in parallel typed arrays rather than one object each, so a
// million-rule list stays compact (see bench/).

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

export class MatcherBuilder {
  readonly lists: ListInfo[] = [];
  private readonly files: string[] = [];
  private readonly domains: string[] = [];
  private n = 0;
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

  addRule(list: number, file: number, domain: string, subdomainsOnly: boolean, line: number): void {
    if (this.n === this.lineOf.length) this.grow();
    const i = this.n++;
    this.domains.push(domain);
    this.listOf[i] = list;
    this.fileOf[i] = file;
    this.lineOf[i] = line;
    this.subOnly[i] = subdomainsOnly ? 1 : 0;
    this.countByList.set(list, (this.countByList.get(list) ?? 0) + 1);
  }

  private grow(): void {
    const size = this.lineOf.length * 2;
    const grown = <T extends Uint8Array | Uint16Array | Uint32Array>(a: T, make: (n: number) => T): T => {
      const b = make(size);
      b.set(a);
      return b;
    };
    this.listOf = grown(this.listOf, (n) => new Uint16Array(n));
    this.fileOf = grown(this.fileOf, (n) => new Uint16Array(n));
    this.lineOf = grown(this.lineOf, (n) => new Uint32Array(n));
    this.subOnly = grown(this.subOnly, (n) => new Uint8Array(n));
  }

  ruleCount(list: number): number {
    return this.countByList.get(list) ?? 0;
  }

  build(): Matcher {
    const n = this.n;
    return new Matcher(this.lists, this.files, this.domains, this.listOf.subarray(0, n), this.fileOf.subarray(0, n), this.lineOf.subarray(0, n), this.subOnly.subarray(0, n));
  }
}

export class Matcher {
  /** domain → first rule index for "domain and below"; chained through `next` when several lists share it. */
  private readonly apex = new Map<string, number>();
  /** domain → first rule index for "*.domain" (strictly below). */
  private readonly below = new Map<string, number>();
  private readonly next: Int32Array;

  constructor(
    readonly lists: readonly ListInfo[],
    private readonly files: readonly string[],
    private readonly domains: readonly string[],
    private readonly listOf: Uint16Array,
    private readonly fileOf: Uint16Array,
    private readonly lineOf: Uint32Array,
    private readonly subOnly: Uint8Array,
  ) {
    const n = domains.length;
    this.next = new Int32Array(n).fill(-1);
    // Insert in reverse so each chain lists rules in file order.
    for (let i = n - 1; i >= 0; i--) {
      const map = subOnly[i] ? this.below : this.apex;
      const d = domains[i]!;
      const prev = map.get(d);
      if (prev !== undefined) this.next[i] = prev;
      map.set(d, i);
    }
  }

  /**
   * The most specific rule matching `name` in a list accepted by `accept`
   * (indexed by list number), or -1. `name` is lower-case without a trailing dot.
   */
  find(name: string, accept: Uint8Array): number {
    let suffix = name;
    let strict = false; // true once `suffix` is a proper parent of `name`
    for (;;) {
      let r = this.apex.get(suffix) ?? -1;
      while (r !== -1) {
        if (accept[this.listOf[r]!]) return r;
        r = this.next[r]!;
      }
      if (strict) {
        r = this.below.get(suffix) ?? -1;
        while (r !== -1) {
          if (accept[this.listOf[r]!]) return r;
          r = this.next[r]!;
        }
      }
      const dot = suffix.indexOf('.');
      if (dot === -1) return -1;
      suffix = suffix.slice(dot + 1);
      strict = true;
    }
  }

  /** Every rule matching `name`, most specific first, in any list. For `check` and the exception path. */
  findAll(name: string): number[] {
    const out: number[] = [];
    let suffix = name;
    let strict = false;
    for (;;) {
      for (let r = this.apex.get(suffix) ?? -1; r !== -1; r = this.next[r]!) out.push(r);
      if (strict) for (let r = this.below.get(suffix) ?? -1; r !== -1; r = this.next[r]!) out.push(r);
      const dot = suffix.indexOf('.');
      if (dot === -1) return out;
      suffix = suffix.slice(dot + 1);
      strict = true;
    }
  }

  listIndex(rule: number): number {
    return this.listOf[rule]!;
  }

  describe(rule: number, name: string): RuleMatch {
    return {
      list: this.lists[this.listOf[rule]!]!.name,
      rule: (this.subOnly[rule] ? '*.' : '') + this.domains[rule]!,
      file: this.files[this.fileOf[rule]!]!,
      line: this.lineOf[rule]!,
      name,
    };
  }
}
