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
  private readonly listOf: number[] = [];
  private readonly fileOf: number[] = [];
  private readonly lineOf: number[] = [];
  private readonly subOnly: boolean[] = [];
  private readonly countByList = new Map<number, number>();

  addList(info: ListInfo): number {
    this.lists.push(info);
    return this.lists.length - 1;
  }

  addRule(list: number, file: string, domain: string, subdomainsOnly: boolean, line: number): void {
    let f = this.files.lastIndexOf(file);
    if (f === -1) f = this.files.push(file) - 1;
    this.domains.push(domain);
    this.listOf.push(list);
    this.fileOf.push(f);
    this.lineOf.push(line);
    this.subOnly.push(subdomainsOnly);
    this.countByList.set(list, (this.countByList.get(list) ?? 0) + 1);
  }

  ruleCount(list: number): number {
    return this.countByList.get(list) ?? 0;
  }

  build(): Matcher {
    return new Matcher(this.lists, this.files, this.domains, this.listOf, this.fileOf, this.lineOf, this.subOnly);
  }
}

export class Matcher {
  /** domain → first rule index for "domain and below"; chained through `next` when several lists share it. */
  private readonly apex = new Map<string, number>();
  /** domain → first rule index for "*.domain" (strictly below). */
  private readonly below = new Map<string, number>();
  private readonly next: Int32Array;
  private readonly listOf: Uint16Array;
  private readonly fileOf: Uint16Array;
  private readonly lineOf: Uint32Array;

  constructor(
    readonly lists: readonly ListInfo[],
    private readonly files: readonly string[],
    private readonly domains: readonly string[],
    listOf: number[],
    fileOf: number[],
    lineOf: number[],
    subOnly: boolean[],
  ) {
    const n = domains.length;
    this.next = new Int32Array(n).fill(-1);
    this.listOf = Uint16Array.from(listOf);
    this.fileOf = Uint16Array.from(fileOf);
    this.lineOf = Uint32Array.from(lineOf);
    // Insert in reverse so each chain lists rules in file order.
    for (let i = n - 1; i >= 0; i--) {
      const map = subOnly[i] ? this.below : this.apex;
      const d = domains[i]!;
      const prev = map.get(d);
      if (prev !== undefined) this.next[i] = prev;
      map.set(d, i);
    }
    this.subOnlyFlags = subOnly;
  }

  private readonly subOnlyFlags: boolean[];

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
      rule: (this.subOnlyFlags[rule] ? '*.' : '') + this.domains[rule]!,
      file: this.files[this.fileOf[rule]!]!,
      line: this.lineOf[rule]!,
      name,
    };
  }
}
