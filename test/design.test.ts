// docs/design.md §1 stays true: every import in src/ (type imports too) goes to the importer's floor
// or below, every file of src/ is on a floor, and no runtime import cycle exists.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';

const ROOT = join(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');

/** The floor table of docs/design.md §1: path (folder with a trailing slash, or file) → floor. */
function floorTable(design: string): Map<string, number> {
  const section = design.slice(design.indexOf('## 1. Layers'), design.indexOf('## 2.'));
  const table = new Map<string, number>();
  for (const row of section.matchAll(/^\| (\d+) \| ([^|]+) \|/gm)) {
    for (const path of row[2]!.matchAll(/`([^`]+)`/g)) table.set(path[1]!, Number(row[1]));
  }
  return table;
}

/** The floor of a src-relative path: its longest matching entry. */
function floorOf(table: Map<string, number>, path: string): { entry: string; floor: number } | undefined {
  let best: { entry: string; floor: number } | undefined;
  for (const [entry, floor] of table) {
    const hit = entry.endsWith('/') ? path.startsWith(entry) : path === entry;
    if (hit && (!best || entry.length > best.entry.length)) best = { entry, floor };
  }
  return best;
}

interface Edge { from: string; to: string; type: boolean }

function importsOf(files: readonly string[], read: (f: string) => string): Edge[] {
  const edges: Edge[] = [];
  for (const f of files) {
    for (const m of read(f).matchAll(/^(?:import|export)\s+(type\s+)?[^'"]*?from\s+'(\.[^']+)'/gm)) {
      const to = relative(SRC, resolve(dirname(join(SRC, f)), m[2]!.replace(/\.js$/, '.ts')));
      edges.push({ from: f, to, type: !!m[1] });
    }
  }
  return edges;
}

function upward(table: Map<string, number>, edges: readonly Edge[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    const a = floorOf(table, e.from);
    const b = floorOf(table, e.to);
    if (a && b && b.floor > a.floor) out.push(`${e.from} (floor ${a.floor}) imports ${e.to} (floor ${b.floor})${e.type ? ' (type)' : ''}`);
  }
  return out;
}

/** Strongly connected groups of more than one file over the runtime (non-type) imports: Tarjan. */
function cycles(edges: readonly Edge[]): string[][] {
  const graph = new Map<string, string[]>();
  for (const e of edges) {
    if (!graph.has(e.to)) graph.set(e.to, []);
    if (!e.type) (graph.get(e.from) ?? graph.set(e.from, []).get(e.from)!).push(e.to);
    else if (!graph.has(e.from)) graph.set(e.from, []);
  }
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1) found.push(group);
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const sources: string[] = [];
(function walk(dir: string): void {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts')) sources.push(relative(SRC, p));
  }
})(SRC);
const table = floorTable(readFileSync(join(ROOT, 'docs', 'design.md'), 'utf8'));
const edges = importsOf(sources, (f) => readFileSync(join(SRC, f), 'utf8'));

t.test('every file of src/ is on a floor of docs/design.md §1', async (t) => {
  t.ok(table.size >= 20, `the table was read (${table.size} paths)`);
  t.same(sources.filter((f) => !floorOf(table, f)), [], 'no file is left without a floor');
  t.same([...table.keys()].filter((p) => !sources.some((f) => (p.endsWith('/') ? f.startsWith(p) : f === p))), [], 'every path in the table exists');
});

t.test('no import in src/ runs upwards, type imports included', async (t) => {
  t.ok(edges.length > 300, `${edges.length} imports read`);
  t.same(upward(table, edges), []);
});

t.test('no runtime import cycle in src/', async (t) => {
  t.same(cycles(edges), []);
});

t.test('the checks find what they look for', async (t) => {
  // A made-up src/ where the cache imports the listeners, and two files import each other.
  const fake: Record<string, string> = {
    'cache/a.ts': "import { x } from '../transport/b.js';\nimport type { Y } from '../http/c.js';\n",
    'transport/b.ts': "import { a } from '../cache/a.js';\n",
    'http/c.ts': '',
  };
  const fakeEdges = importsOf(Object.keys(fake), (f) => fake[f]!);
  t.same(upward(table, fakeEdges), [
    'cache/a.ts (floor 3) imports transport/b.ts (floor 8)',
    'cache/a.ts (floor 3) imports http/c.ts (floor 11) (type)',
  ]);
  t.same(cycles(fakeEdges).map((g) => g.sort()), [['cache/a.ts', 'transport/b.ts']]);
});
