// Reads a YAML document node by node, so every problem can name the file, the
// line and column, the key path and what was expected (CoreDNS/hickory style:
// "cache.maxTtl: expected a duration like 500ms, 2s, 10m, 1h or 1d, got "soon"").
import { Composer, LineCounter, Parser, isAlias, isMap, isScalar, isSeq, type CST, type Node, type Pair, type Document } from 'yaml';
import { parseDuration } from './duration.js';
import type { ErrorCode, Problem } from '../errors.js';
import { diskSource, type FileSource } from './sources.js';

export type YNode = Node | null | undefined;

/**
 * Bounds on a YAML file, so that a hostile or broken one fails fast with
 * file:line:col instead of stalling the compile for seconds (50,000 keys) or
 * overflowing its stack (3,000 levels): a config or exceptions file is
 * kilobytes, never megabytes, and nests a handful of levels (exceptions →
 * record → clients is 4).
 */
export const MAX_YAML_BYTES = 2 << 20;
export const MAX_YAML_DEPTH = 32;

export class YamlReader {
  readonly problems: Problem[] = [];
  readonly lines: LineCounter;
  readonly doc: Document.Parsed | undefined;
  /** The file could not be read: its one problem says why, and nothing else is said about it. */
  unreadable = false;

  constructor(
    readonly file: string,
    text: string,
    private readonly code: ErrorCode,
  ) {
    this.lines = new LineCounter();
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_YAML_BYTES) {
      this.syntax(0, `the file is ${bytes} bytes; sinkhole reads YAML files of at most ${MAX_YAML_BYTES} bytes`);
      return;
    }
    // Parse to the CST first (an iterative parser), and refuse deep nesting before the
    // composer, which recurses per level, ever sees it.
    const tokens = [...new Parser(this.lines.addNewLine).parse(text)];
    const tooDeep = deepestOffset(tokens, MAX_YAML_DEPTH);
    if (tooDeep !== undefined) {
      this.syntax(tooDeep, `nested deeper than ${MAX_YAML_DEPTH} levels; no sinkhole file needs more than a few`);
      return;
    }
    // The composer's own duplicate-key check compares every key with every other (50,000 keys
    // took 10-15 s); keys are checked below with one Set per mapping instead.
    const composer = new Composer({ uniqueKeys: false });
    const docs = [...composer.compose(tokens, true, text.length)];
    this.doc = docs[0];
    const errors = [...(this.doc?.errors ?? [])];
    if (docs.length > 1) errors.push({ pos: docs[1]!.range, message: 'the file holds more than one YAML document (a second ---)' } as never);
    // A YAML mistake usually cascades into several parser errors: the first one is the real problem.
    const first = errors[0];
    if (first) this.syntax(first.pos[0], first.message.split('\n')[0] ?? first.message);
    else if (this.doc) this.duplicateKeys(this.doc.contents as YNode);
  }

  private syntax(offset: number, message: string): void {
    // Before the parser has run, the line counter knows no line: that is the file's start.
    const { line, col } = this.lines.lineStarts.length ? this.lines.linePos(offset) : { line: 1, col: 1 };
    this.problems.push({ code: 'SH_CONFIG_SYNTAX', file: this.file, line, col, message });
  }

  /** YAML 1.2 §3.2.1.1: the keys of a mapping are unique. Depth is bounded above, so recursion is safe. */
  private duplicateKeys(node: YNode): void {
    if (isSeq(node)) for (const item of node.items as YNode[]) this.duplicateKeys(item);
    if (!isMap(node)) return;
    const seen = new Map<string, YNode>();
    for (const pair of node.items as Pair<YNode, YNode>[]) {
      if (isScalar(pair.key)) {
        const key = String(pair.key.value);
        const earlier = seen.get(key);
        if (earlier) this.syntax(pair.key.range?.[0] ?? 0, `Map keys must be unique; "${key}" is also on line ${this.pos(earlier).line}`);
        else seen.set(key, pair.key);
      }
      this.duplicateKeys(pair.value);
    }
  }

  static fromFile(file: string, code: ErrorCode, source: FileSource = diskSource): YamlReader {
    let text: string;
    try {
      text = source.read(file).toString('utf8');
    } catch (e) {
      const r = new YamlReader(file, '', code);
      r.unreadable = true;
      r.problems.push({ code: 'SH_CONFIG_READ', file, line: 1, col: 1, message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}` });
      return r;
    }
    return new YamlReader(file, text, code);
  }

  /** The document's top node; undefined when the file could not be read or parsed (its problem is already recorded). */
  get root(): YNode {
    return this.doc && !this.unreadable && this.problems.every((p) => p.code !== 'SH_CONFIG_SYNTAX') ? (this.doc.contents as Node | null) : undefined;
  }

  pos(node: YNode): { line: number; col: number } {
    const offset = node?.range?.[0];
    return offset === undefined ? { line: 1, col: 1 } : this.lines.linePos(offset);
  }

  /** YAML anchors and aliases (`&staff` / `*staff`) are legitimate: read through them. */
  private deref(node: YNode): YNode {
    return isAlias(node) && this.doc ? (node.resolve(this.doc) as YNode) : node;
  }

  fail(node: YNode, path: string, message: string): undefined {
    const { line, col } = this.pos(node);
    this.problems.push({ code: this.code, file: this.file, line, col, message: path ? `${path}: ${message}` : message });
    return undefined;
  }

  /** Walks a mapping, calling the handler of each known key; an unknown key is an error naming its path. */
  map(node: YNode, path: string, handlers: Record<string, (value: YNode, path: string) => void>): boolean {
    node = this.deref(node);
    if (!isMap(node)) {
      this.fail(node, path, `expected a mapping of ${Object.keys(handlers).join(', ')}, got ${describe(node)}`);
      return false;
    }
    for (const pair of node.items as Pair<YNode, YNode>[]) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      const sub = path ? `${path}.${key}` : String(key);
      const handler = key === undefined ? undefined : handlers[key];
      if (!handler) {
        this.fail(pair.key, sub, `unknown key; expected one of ${Object.keys(handlers).join(', ')}`);
        continue;
      }
      handler(pair.value, sub);
    }
    return true;
  }

  /** The entries of a mapping with free-form keys (list names, group names, domains). */
  entries(node: YNode, path: string): { key: string; keyNode: YNode; value: YNode }[] {
    node = this.deref(node);
    if (!isMap(node)) {
      this.fail(node, path, `expected a mapping, got ${describe(node)}`);
      return [];
    }
    return (node.items as Pair<YNode, YNode>[]).map((pair) => ({
      key: isScalar(pair.key) ? String(pair.key.value) : '',
      keyNode: pair.key,
      value: pair.value,
    }));
  }

  seq(node: YNode, path: string): YNode[] {
    node = this.deref(node);
    if (!isSeq(node)) {
      this.fail(node, path, `expected a list, got ${describe(node)}`);
      return [];
    }
    return node.items as YNode[];
  }

  string(node: YNode, path: string): string | undefined {
    node = this.deref(node);
    if (isScalar(node) && (typeof node.value === 'string' || typeof node.value === 'number') && String(node.value) !== '') {
      return String(node.value);
    }
    return this.fail(node, path, `expected a non-empty string, got ${describe(node)}`);
  }

  strings(node: YNode, path: string): { value: string; node: YNode }[] {
    const out: { value: string; node: YNode }[] = [];
    this.seq(node, path).forEach((item, i) => {
      const value = this.string(item, `${path}[${i}]`);
      if (value !== undefined) out.push({ value, node: item });
    });
    return out;
  }

  oneOf<T extends string>(node: YNode, path: string, allowed: readonly T[]): T | undefined {
    node = this.deref(node);
    const value = isScalar(node) ? String(node.value) : undefined;
    if (value !== undefined && (allowed as readonly string[]).includes(value)) return value as T;
    return this.fail(node, path, `expected one of ${allowed.join(', ')}, got ${describe(node)}`);
  }

  boolean(node: YNode, path: string): boolean | undefined {
    node = this.deref(node);
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    return this.fail(node, path, `expected true or false, got ${describe(node)}`);
  }

  integer(node: YNode, path: string, min: number, max: number): number | undefined {
    node = this.deref(node);
    if (isScalar(node) && typeof node.value === 'number' && Number.isInteger(node.value) && node.value >= min && node.value <= max) {
      return node.value;
    }
    return this.fail(node, path, `expected a whole number from ${min} to ${max}, got ${describe(node)}`);
  }

  /**
   * A duration in milliseconds: 500ms, 2s, 10m, 1h, 1d or a bare number of
   * seconds, from `minMs` to `maxMs`: every duration has a documented range
   * (config.ts keeps the ones that arm a timer below what Node's timers hold).
   */
  duration(node: YNode, path: string, minMs: number, maxMs: number): number | undefined {
    node = this.deref(node);
    const raw = isScalar(node) ? node.value : undefined;
    const ms = typeof raw === 'number' || typeof raw === 'string' ? parseDuration(raw) : undefined;
    if (ms === undefined) return this.fail(node, path, `expected a duration like 500ms, 2s, 10m, 1h or 1d, got ${describe(node)}`);
    if (ms < minMs) return this.fail(node, path, `must be at least ${formatDuration(minMs)}, got ${describe(node)}`);
    if (ms > maxMs) return this.fail(node, path, `must be at most ${formatDuration(maxMs)}, got ${describe(node)}`);
    return ms;
  }
}

export function describe(node: YNode): string {
  if (node === null || node === undefined) return 'nothing';
  if (isScalar(node)) return node.value === null ? 'null' : JSON.stringify(node.value);
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  return 'an alias';
}

/** The largest unit that divides `ms` exactly: 1d, 90d, 1h, 1m, 10s, 500ms. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * The offset of the first collection nested deeper than `limit`, walking the
 * CST with an explicit stack (the file may nest thousands of levels).
 */
function deepestOffset(tokens: CST.Token[], limit: number): number | undefined {
  const stack: [CST.Token | null | undefined, number][] = tokens.map((tok) => [tok, 0]);
  while (stack.length) {
    const [tok, depth] = stack.pop()!;
    if (!tok) continue;
    if (tok.type === 'document') stack.push([tok.value, depth]);
    else if (tok.type === 'block-map' || tok.type === 'block-seq' || tok.type === 'flow-collection') {
      if (depth + 1 > limit) return tok.offset;
      for (const item of tok.items) stack.push([item.key, depth + 1], [item.value, depth + 1]);
    }
  }
  return undefined;
}
