// The documentation stays true: the README's minimal config and the full config and
// exceptions examples of docs/ validate, the `check` examples print what they show, every
// bundled config validates, and every relative link reaches its file and heading (CoreDNS
// and hickory-dns test their documented examples the same way).
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { buildGeneration } from '../src/policy/generation.js';
import { skipUnless } from './helpers/requires.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8');
const readme = read('README.md');

/** The Markdown files that make up the documentation: the README and every docs/*.md. */
const MARKDOWN = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];

function blocks(text: string, lang: string): string[] {
  return [...text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

/** A folder holding the bundled lists, with these files written into it. */
function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-docs-'));
  symlinkSync(join(ROOT, 'blocklists'), join(dir, 'blocklists'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

t.test('the config example of docs/configuration.md and the exceptions example of docs/exceptions.md validate together', async (t) => {
  const config = blocks(read('docs/configuration.md'), 'yaml').find((b) => b.startsWith('listen:'));
  const exceptions = blocks(read('docs/exceptions.md'), 'yaml').find((b) => b.startsWith('exceptions:'));
  t.ok(config && exceptions, 'both examples found');
  const dir = folder({ 'sinkhole.yaml': config!, 'exceptions.yaml': exceptions! });
  const g = buildGeneration(join(dir, 'sinkhole.yaml'), 1);
  t.same(g.config.blocking.enforce, ['tiktok', 'tiktok-ads', 'bypass']);
  t.equal(g.exceptions[0]?.id, 'PS-2026-0142');
  t.same(g.clients.view('10.20.0.99').groups, [], 'allowFrom of the example is loopback only');
  t.equal(g.config.log.queries, 'blocked');
  // Each key documented in the example is a real key: a misspelt one would have thrown above.
  t.equal(g.config.listen.tcpIdleTimeoutMs, 10_000);
  t.equal(g.config.report.maxClients, 100_000);
});

t.test("the README's minimal config validates with the bundled lists and exceptions, without warnings", async (t) => {
  const config = blocks(readme, 'yaml').find((b) => b.startsWith('listen:'));
  t.ok(config, 'found');
  const dir = folder({ 'sinkhole.yaml': config!, 'exceptions.yaml': read('exceptions.yaml') });
  const r = spawnSync(process.execPath, [CLI, 'validate', '--config', 'sinkhole.yaml'], { cwd: dir, encoding: 'utf8' });
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.match(r.stdout, /^sinkhole\.yaml: ok/, 'no warning line before ok');
  const g = buildGeneration(join(dir, 'sinkhole.yaml'), 1);
  t.same(g.config.blocking.enforce, ['tiktok', 'tiktok-ads', 'bypass'], 'the lists the full example enforces');
  t.same(g.clients.view('192.0.2.1').groups, [], 'an address outside allowFrom is in no group');
});

t.test('the check examples of the README and docs/ print what they show, with the bundled config', async (t) => {
  const examples = MARKDOWN.flatMap((file) => [...read(file).matchAll(/```\n\$ npx sinkhole check (.*)\n([\s\S]*?)```/g)].map((m) => ({ file, line: m[1]!, output: m[2]! })));
  t.ok(examples.some((e) => e.file === 'README.md'), 'the README shows one');
  t.ok(examples.some((e) => e.file === 'docs/exceptions.md' && e.line.includes('--client')), 'docs/exceptions.md shows one with --client');
  for (const { line, output } of examples) {
    const args = line.split(' ');
    // Whatever zone the machine is in: the bundled exceptions name theirs.
    const r = spawnSync(process.execPath, [CLI, 'check', ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, TZ: 'America/Los_Angeles' } });
    t.equal(r.stdout, output, `check ${line}: same output`);
    t.equal(r.status, output.startsWith('blocked') ? 1 : 0, `check ${line}: exit code`);
  }
});

t.test('every bundled config validates, without warnings', async (t) => {
  const r = spawnSync(process.execPath, [CLI, 'validate', '--config', 'sinkhole.yaml'], { cwd: ROOT, encoding: 'utf8' });
  t.equal(r.status, 0, `sinkhole.yaml: ${r.stdout.trim()}`);
  t.match(r.stdout, /^sinkhole\.yaml: ok/, 'no warning line before ok');
  // The image's layout (Dockerfile): /app holds the lists, config/sinkhole.yaml is sinkhole.docker.yaml, and
  // exceptions/ is the volume, holding the image's empty record set until one is mounted.
  const app = mkdtempSync(join(tmpdir(), 'sinkhole-image-'));
  symlinkSync(join(ROOT, 'blocklists'), join(app, 'blocklists'));
  mkdirSync(join(app, 'config'));
  writeFileSync(join(app, 'config', 'sinkhole.yaml'), readFileSync(join(ROOT, 'sinkhole.docker.yaml')));
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const placeholder = /printf '(.*)' > \/app\/exceptions\/exceptions\.yaml/.exec(dockerfile);
  t.ok(placeholder, 'the Dockerfile writes an empty exceptions file into the volume');
  mkdirSync(join(app, 'exceptions'));
  writeFileSync(join(app, 'exceptions', 'exceptions.yaml'), placeholder![1]!.replaceAll('\\n', '\n'));
  const image = spawnSync(process.execPath, [CLI, 'validate', '--config', 'config/sinkhole.yaml'], { cwd: app, encoding: 'utf8' });
  t.equal(image.status, 0, `the image's config: ${image.stdout.trim()}`);
  t.match(image.stdout, /exceptions: 0;/, 'starts with no exceptions until a folder is mounted');
  t.notMatch(dockerfile, /COPY exceptions\.yaml/, 'exceptions are not baked into the image');
  t.match(dockerfile, /^ARG NODE_IMAGE=node:[\w.-]+@sha256:[0-9a-f]{64}$/m, 'the base image is pinned by digest');
  t.match(dockerfile, /HEALTHCHECK .*\n\s+CMD \["bin\/sinkhole", "health", "--config", "config\/sinkhole\.yaml"\]/, 'the health check follows listen.http');
  t.match(readFileSync(join(ROOT, 'sinkhole.docker.yaml'), 'utf8'), /^\s+http: "127\.0\.0\.1:\d+"/m, "the image's HTTP listens on loopback");
});

t.test('every command in the README table exists', async (t) => {
  const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' }).stdout;
  for (const m of readme.matchAll(/^\| `sinkhole (\w+)/gm)) t.match(help, `sinkhole ${m[1]}`, `sinkhole ${m[1]} is a command`);
});

t.test('installing it as a command, as the README says: the package carries the launcher, and the launcher runs through a link', async (t) => {
  // What `npm pack` / `npm install -g` would ship (scripts off: dist/ is already built by pretest).
  const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  t.equal(pack.status, 0, 'npm pack --dry-run');
  const files = new Set((JSON.parse(pack.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path));
  for (const f of ['bin/sinkhole', 'dist/cli.js', 'blocklists/tiktok.txt', 'blocklists/src/tiktok-domains.tsv', 'sinkhole.yaml', 'deploy/systemd/sinkhole.service', 'deploy/kubernetes/daemonset.yaml', 'dashboards/alerts.yml', ...MARKDOWN]) {
    t.ok(files.has(f), `the package has ${f}`);
  }
  t.notOk([...files].some((f) => f.startsWith('test/') || f.startsWith('src/')), 'and no tests or TypeScript sources');
  t.equal((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin.sinkhole, 'bin/sinkhole');
  // npm install -g puts a symlink to bin/sinkhole on the PATH; the launcher must find its package through it.
  const bin = mkdtempSync(join(tmpdir(), 'sinkhole-bin-'));
  symlinkSync(join(ROOT, 'bin', 'sinkhole'), join(bin, 'sinkhole'));
  const r = spawnSync(join(bin, 'sinkhole'), ['--version'], { cwd: tmpdir(), encoding: 'utf8', env: { ...process.env, PATH: `${bin}:/usr/bin:/bin` } });
  t.equal(r.status, 0, `runs through the link: ${r.stderr}`);
  t.match(r.stdout, /^sinkhole \d+\.\d+\.\d+/);
});

t.test('the launcher passes its V8 flags, and --no-parallel-scavenge only when confined to one CPU; SINKHOLE_NODE_FLAGS replaces them all', async (t) => {
  // A stand-in runtime that prints what it was given instead of running it.
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-launcher-'));
  const echo = join(dir, 'node');
  writeFileSync(echo, '#!/bin/sh\necho "$@"\n', { mode: 0o755 });
  const launch = (t: { equal: (a: unknown, b: unknown, m: string) => unknown }, env: Record<string, string>, pin?: string): string => {
    const argv = pin === undefined ? [join(ROOT, 'bin', 'sinkhole'), 'serve'] : ['taskset', '-c', pin, join(ROOT, 'bin', 'sinkhole'), 'serve'];
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...process.env, SINKHOLE_NODE: echo, ...env } });
    t.equal(r.status, 0, `${argv.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const cli = join(ROOT, 'dist', 'cli.js');
  const allCpus = availableParallelism() > 1 ? '--max-semi-space-size=8' : '--max-semi-space-size=8 --no-parallel-scavenge';
  t.equal(launch(t, {}), `${allCpus} ${cli} serve`, 'on every CPU it may use: V8\'s parallel scavenge stays, unless there is only one');
  t.equal(launch(t, { SINKHOLE_NODE_FLAGS: '--max-old-space-size=160' }), `--max-old-space-size=160 ${cli} serve`, 'flags of its own replace the defaults');
  t.test('pinned to one CPU with taskset', { skip: skipUnless({ taskset: 'util-linux' }) }, async (t) => {
    const cpu = String(sched(process.pid));
    t.equal(launch(t, {}, cpu), `--max-semi-space-size=8 --no-parallel-scavenge ${cli} serve`, 'one CPU: one scavenger');
    t.equal(launch(t, { OMP_NUM_THREADS: '4' }, cpu), `--max-semi-space-size=8 --no-parallel-scavenge ${cli} serve`, 'OMP_NUM_THREADS does not change what the affinity says');
    t.equal(launch(t, { SINKHOLE_NODE_FLAGS: '' }, cpu), `${cli} serve`, 'SINKHOLE_NODE_FLAGS="" means none, whatever the CPUs');
  });
});

/** A CPU this process may run on (the first of its affinity mask), for taskset. */
function sched(pid: number): number {
  const allowed = /Cpus_allowed_list:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(allowed?.[1] ?? 0);
}

/** Each line outside fenced code blocks, for headings and links (a `# comment` in a code block is neither). */
function prose(text: string): string[] {
  let fenced = false;
  return text.split('\n').filter((line) => {
    if (/^\s*```/.test(line)) return (fenced = !fenced), false;
    return !fenced;
  });
}

/** The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to '-', repeats numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(text)) {
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const base = h[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative link targets of a file (inline code dropped first, so `a](b)` in code is not a link). */
function relativeLinks(text: string): string[] {
  return prose(text)
    .map((line) => line.replace(/`[^`]*`/g, '``'))
    .flatMap((line) => [...line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!))
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

t.test('every relative link in the README and docs/*.md reaches a file, and an anchor reaches a heading', async (t) => {
  for (const file of MARKDOWN) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const target of relativeLinks(text)) {
      const [path, anchor] = target.split('#') as [string, string | undefined];
      const resolved = path === '' ? join(ROOT, file) : join(ROOT, dirname(file), decodeURIComponent(path));
      const shown = relative(ROOT, resolved) || '.';
      t.ok(resolved.startsWith(ROOT) && existsSync(resolved), `${file}: ${target} → ${shown} exists`);
      if (anchor === undefined || !existsSync(resolved) || !statSync(resolved).isFile()) continue;
      t.ok(resolved.endsWith('.md'), `${file}: ${target}: an anchor only into Markdown`);
      t.ok(anchors(readFileSync(resolved, 'utf8')).has(anchor), `${file}: ${target}: ${shown} has a heading #${anchor}`);
    }
  }
});

t.test('the link check itself: GitHub anchors, code is not a link, a missing file or heading is seen', async (t) => {
  const a = anchors('# Every core: `workers`\n```\n# not a heading\n```\n## HTTP (`listen.http`, loopback by default)\n## Serving sinkhole\'s lists as RPZ\n## Notes\n## Notes\n');
  t.same([...a], ['every-core-workers', 'http-listenhttp-loopback-by-default', 'serving-sinkholes-lists-as-rpz', 'notes', 'notes-1']);
  t.same(relativeLinks('[a](docs/x.md#y) `[b](c.md)` [d](https://e.example/) [`f`](g/)\n```\n[h](i.md)\n```\n'), ['docs/x.md#y', 'g/']);
});

t.test('every docs/*.md is linked from the README', async (t) => {
  const linked = new Set(relativeLinks(readFileSync(join(ROOT, 'README.md'), 'utf8')).map((target) => target.split('#')[0]));
  for (const file of MARKDOWN.filter((f) => f.startsWith('docs/'))) t.ok(linked.has(file), `README.md links ${file}`);
});

t.test("a page whose sections the README lists has every section listed", async (t) => {
  const linked = relativeLinks(readme);
  const pages = new Set(linked.filter((target) => target.includes('#')).map((target) => target.split('#')[0]!));
  t.ok(pages.size >= 4, `${pages.size} pages listed by section`);
  for (const page of pages) {
    const sections = prose(read(page)).filter((line) => /^## /.test(line));
    for (const section of sections) {
      const anchor = [...anchors(section)][0]!;
      t.ok(linked.includes(`${page}#${anchor}`), `README.md links ${page}#${anchor} (${section})`);
    }
  }
});
