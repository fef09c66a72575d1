// Reads a YAML document node by node, so every problem can name the file, the
// line and column, the key path and what was expected (CoreDNS/hickory style:
// "cache.maxTtl: expected a duration like 500ms, 2s, 10m, 1h or 1d, got "soon"").
import { LineCounter, parseDocument, isAlias, isMap, isScalar, isSeq, type Node, type Pair, type Document } from 'yaml';
import { parseDuration } from './duration.js';
import type { ErrorCode, Problem } from '../errors.js';
import { diskSource, type FileSource } from '../policy/sources.js';

export type YNode = Node | null | undefined;

export class YamlReader {
  readonly problems: Problem[] = [];
  /** The file could not be read: its one problem says why, and nothing else is said about it. */
  unreadable = false;
  readonly lines: LineCounter;
  readonly doc: Document.Parsed | undefined;

  constructor(
    readonly file: string,
    text: string,
    private readonly code: ErrorCode,
  ) {
    this.lines = new LineCounter();
    this.doc = parseDocument(text, { lineCounter: this.lines, uniqueKeys: true });
    for (const e of [...this.doc.errors]) {
      const lp = e.linePos?.[0] ?? { line: 1, col: 1 };
      this.problems.push({ code: 'SH_CONFIG_SYNTAX', file, line: lp.line, col: lp.col, message: e.message.split('\n')[0] ?? e.code });
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

  /** undefined when the file could not be read or does not parse (those problems are already recorded). */
  get root(): YNode {
    return !this.unreadable && this.doc && this.doc.errors.length === 0 ? (this.doc.contents as Node | null) : undefined;
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

  /** A duration in milliseconds: 500ms, 2s, 10m, 1h, 1d or a bare number of seconds. */
  duration(node: YNode, path: string, minMs = 0, maxMs = Infinity): number | undefined {
    node = this.deref(node);
    const raw = isScalar(node) ? node.value : undefined;
    const ms = typeof raw === 'number' || typeof raw === 'string' ? parseDuration(raw) : undefined;
    if (ms === undefined) return this.fail(node, path, `expected a duration like 500ms, 2s, 10m, 1h or 1d, got ${describe(node)}`);
    if (ms < minMs) return this.fail(node, path, `must be at least ${minMs}ms, got ${describe(node)}`);
    if (ms > maxMs) return this.fail(node, path, `must be at most ${maxMs}ms, got ${describe(node)}`);
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
