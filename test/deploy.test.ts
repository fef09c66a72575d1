// Deployment files: the Kubernetes manifests (validated against the API
// schemas, strictly, and applied Namespace first), the ConfigMaps built from
// the repository, a ConfigMap update reaching a running sinkhole, the hardening
// the systemd unit and logrotate file promise, and each shipped config
// validating where its deployment puts it, with state.dir where that deployment
// can write. systemd-analyze, logrotate and promtool run in .ci/interop.sh,
// where the Debian tools are; Docker cannot run here, so the Dockerfile is read.
import t from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseAllDocuments, parse as parseYaml, stringify } from 'yaml';
import { createRequire } from 'node:module';
import { start } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { PolicyError } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import { readHttpToken } from '../src/http/token.js';
import { buildGeneration } from '../src/policy/generation.js';
import { FakeUpstream, T } from './helpers/fakeUpstream.js';
import { buildQuery, rcodeOf, udpExchange } from './helpers/dns.js';
import { startSinkhole } from './helpers/sinkhole.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const K8S = join(ROOT, 'deploy', 'kubernetes');
const SYSTEMD = join(ROOT, 'deploy', 'systemd');
const OPERATIONS = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');

type SchemaError = { instancePath: string; keyword: string; params: Record<string, unknown> };
type Validator = ((data: unknown) => boolean) & { errors?: SchemaError[] | null };

/** The validators are compiled without message texts: say it from the keyword. */
function describeError(e: SchemaError): string {
  const at = e.instancePath || '/';
  if (e.keyword === 'type') return `${at} must be ${String(e.params.type)}`;
  if (e.keyword === 'required') return `${at} must have required property '${String(e.params.missingProperty)}'`;
  if (e.keyword === 'enum') return `${at} must be one of ${JSON.stringify(e.params.allowedValues)}`;
  return `${at} ${e.keyword} ${JSON.stringify(e.params)}`;
}
/**
 * The schemas of the kinds the manifests use, from kubernetes-models (the Kubernetes OpenAPI spec,
 * compiled). Version 4.5 (5.x needs Node 22, and npm ci on the Node 20 that installs the project
 * warned EBADENGINE for it) keeps them in _schemas/, outside its exports map: loaded by file.
 */
const schema = (name: string): Validator => (createRequire(createRequire(import.meta.url).resolve('kubernetes-models'))(`./_schemas/${name}.js`) as { validate: Validator }).validate;
const SCHEMAS: Record<string, Validator> = {
  'v1/Namespace': schema('IoK8sApiCoreV1Namespace'),
  'v1/ConfigMap': schema('IoK8sApiCoreV1ConfigMap'),
  'apps/v1/DaemonSet': schema('IoK8sApiAppsV1DaemonSet'),
};

/**
 * Problems with one manifest: what the schema rejects, and every field the
 * schema does not know. The API server drops unknown fields (kubectl apply
 * rejects them: --validate=strict), so a misspelt `hostNetwrk: true` would
 * silently deploy without it. The compiled validators read every property the
 * schema defines (and every key of a free-form map), so a key never read
 * while validating is not in the schema.
 */
function manifestProblems(doc: Record<string, unknown>): string[] {
  const key = `${String(doc.apiVersion)}/${String(doc.kind)}`;
  const validate = SCHEMAS[key];
  if (!validate) return [`${key}: no schema here for this kind; add it to SCHEMAS`];
  const seen: { path: string; value: Record<string, unknown>; read: Set<string> }[] = [];
  const track = (value: unknown, path: string): unknown => {
    if (value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map((v, i) => track(v, `${path}[${i}]`));
    const read = new Set<string>();
    const copy = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, track(v, `${path}.${k}`)]));
    seen.push({ path, value: copy, read });
    return new Proxy(copy, { get: (o, k, r) => (typeof k === 'string' && read.add(k), Reflect.get(o, k, r)) });
  };
  const problems: string[] = [];
  if (!validate(track(doc, ''))) for (const e of validate.errors ?? []) problems.push(describeError(e));
  for (const s of seen) for (const k of Object.keys(s.value)) if (!s.read.has(k)) problems.push(`${s.path}.${k}: unknown field`);
  return problems;
}

/** The folder's manifests; kustomization.yaml is kubectl's (apply -k), not an object for the API. */
function manifests(): { file: string; doc: Record<string, unknown> }[] {
  return readdirSync(K8S)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .sort()
    .flatMap((file) => parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).map((d) => ({ file, doc: d.toJSON() as Record<string, unknown> })));
}

function daemonSet(): Record<string, any> {
  return manifests().find((m) => m.doc.kind === 'DaemonSet')!.doc as Record<string, any>;
}

t.test('the Kubernetes manifests are valid against the API schemas, with no unknown field', async (t) => {
  const all = manifests();
  t.same([...new Set(all.map((m) => `${m.doc.apiVersion}/${m.doc.kind}`))].sort(), ['apps/v1/DaemonSet', 'v1/ConfigMap', 'v1/Namespace']);
  for (const { file, doc } of all) {
    t.same(manifestProblems(doc), [], `${file}: ${String(doc.kind)} ${String((doc.metadata as { name?: string }).name)}`);
  }
});

t.test('the manifest check catches a misspelt field, a wrong type and a missing field', async (t) => {
  const cases: [string, (d: Record<string, any>) => void, RegExp][] = [
    ['misspelt', (d) => (d.spec.template.spec.hostNetwrk = true), /^\.spec\.template\.spec\.hostNetwrk: unknown field$/],
    ['misspelt, deep', (d) => (d.spec.template.spec.containers[0].livenessProbe.httpGet.hots = '127.0.0.1'), /livenessProbe\.httpGet\.hots: unknown field/],
    ['wrong type', (d) => (d.spec.template.spec.hostNetwork = 'yes'), /\/spec\/template\/spec\/hostNetwork must be boolean/],
    ['missing', (d) => delete d.spec.selector, /must have required property 'selector'/],
  ];
  for (const [what, edit, expected] of cases) {
    const d = structuredClone(daemonSet());
    edit(d);
    t.match(manifestProblems(d).join('\n'), expected, what);
  }
});

t.test('the DaemonSet: host network, probes on /healthz and /readyz where listen.http is, mounts where the config looks', async (t) => {
  const spec = daemonSet().spec.template.spec;
  const c = spec.containers[0];
  t.equal(spec.hostNetwork, true, 'hostNetwork: the client address reaches sinkhole');
  const config = parseYaml(readFileSync(join(K8S, 'config', 'sinkhole.yaml'), 'utf8')) as { listen: { http: string }; blocking: { lists: Record<string, string[]> }; exceptions: string };
  const [host, port] = config.listen.http.split(':');
  t.equal(host, '127.0.0.1', 'HTTP on loopback');
  t.match(c.livenessProbe.httpGet, { host, port: Number(port), path: '/healthz' });
  t.match(c.readinessProbe.httpGet, { host, port: Number(port), path: '/readyz' });
  t.same(c.args, ['serve', '--config', '/etc/sinkhole/config/sinkhole.yaml']);
  const mounts = Object.fromEntries(c.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]));
  const volumes = Object.fromEntries(spec.volumes.map((v: { name: string; configMap?: { name: string } }) => [v.name, v.configMap?.name]));
  t.same([mounts.config, volumes.config], ['/etc/sinkhole/config', 'sinkhole-config']);
  t.same([mounts.lists, volumes.lists], ['/etc/sinkhole/lists', 'sinkhole-lists']);
  t.same([mounts.exceptions, volumes.exceptions], ['/etc/sinkhole/exceptions', 'sinkhole-exceptions']);
  t.equal(config.exceptions, '../exceptions/exceptions.yaml');
  t.ok(Object.values(config.blocking.lists).flat().every((f) => f.startsWith('../lists/')), 'lists from the lists mount');
  t.notOk(c.volumeMounts.some((m: { subPath?: string }) => m.subPath), 'no subPath: ConfigMap updates reach only folder mounts');
  t.same(c.securityContext.capabilities, { drop: ['ALL'], add: ['NET_BIND_SERVICE'] });
  t.equal(c.securityContext.runAsNonRoot, true);
  t.equal(c.securityContext.readOnlyRootFilesystem, true);
});

t.test('the ConfigMaps are the repository\'s files, rebuilt byte for byte, and the mounted layout validates', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-k8s-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-kubernetes.mjs'), '--out', join(dir, 'configmaps.yaml')], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.ok(readFileSync(join(dir, 'configmaps.yaml')).equals(readFileSync(join(K8S, 'configmaps.yaml'))), 'deploy/kubernetes/configmaps.yaml is current (node scripts/build-kubernetes.mjs)');
  const maps = Object.fromEntries(manifests().filter((m) => m.doc.kind === 'ConfigMap').map((m) => [(m.doc.metadata as { name: string }).name, m.doc.data as Record<string, string>]));
  t.equal(maps['sinkhole-lists']!['tiktok.txt'], readFileSync(join(ROOT, 'blocklists', 'tiktok.txt'), 'utf8'), 'lists as committed');
  t.equal(maps['sinkhole-exceptions']!['exceptions.yaml'], readFileSync(join(ROOT, 'exceptions.yaml'), 'utf8'), 'exceptions as committed');
  // Lay the ConfigMaps out as the kubelet mounts them, and load the policy from there.
  const etc = join(dir, 'etc', 'sinkhole');
  for (const [mount, name] of [['config', 'sinkhole-config'], ['lists', 'sinkhole-lists'], ['exceptions', 'sinkhole-exceptions']] as const) {
    configMapVolume(join(etc, mount), maps[name]!, '..2026_11_30_00_00_00.1');
  }
  const g = buildGeneration(join(etc, 'config', 'sinkhole.yaml'), 1);
  t.same(g.config.blocking.enforce, ['tiktok', 'tiktok-ads', 'bypass']);
  t.equal(g.ruleCounts.get('tiktok'), buildGeneration(join(ROOT, 'sinkhole.yaml'), 1).ruleCounts.get('tiktok'), 'the same rules as the bundled config');
  t.equal(g.exceptions[0]?.id, 'PS-2026-0142');
  const v = validate(join(etc, 'config', 'sinkhole.yaml'));
  t.equal(v.status, 0, `sinkhole validate in the mounted layout: ${v.stdout}${v.stderr}`);
  t.match(v.stdout, /^\S+sinkhole\.yaml: ok/, 'with no warning');
  // state.dir is the pod's emptyDir (the ConfigMap mounts are read-only), found in the DaemonSet, not assumed.
  const spec = daemonSet().spec.template.spec;
  const emptyDirs = spec.volumes.filter((vol: { emptyDir?: object }) => vol.emptyDir).map((vol: { name: string }) => vol.name);
  const writable = spec.containers[0].volumeMounts
    .filter((m: { name: string; readOnly?: boolean }) => emptyDirs.includes(m.name) && !m.readOnly)
    .map((m: { mountPath: string }) => m.mountPath);
  t.ok(writable.length > 0, 'the DaemonSet mounts a writable emptyDir');
  t.ok(writable.includes(g.config.state.dir), `state.dir ${g.config.state.dir} is the emptyDir mount (${writable.join(', ')})`);
});

/** `sinkhole validate --config FILE`, as an admin would run it. */
function validate(config: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { status: number | null; stdout: string; stderr: string } {
  const env = opts.env ?? Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'CREDENTIALS_DIRECTORY'));
  return spawnSync(process.execPath, [CLI, 'validate', '--config', config], { cwd: opts.cwd, env, encoding: 'utf8' });
}

/** A ConfigMap volume as the kubelet writes it: a timestamped folder, `..data` pointing at it, and each key a link through `..data`. */
function configMapVolume(dir: string, data: Record<string, string>, version: string): void {
  mkdirSync(join(dir, version), { recursive: true });
  for (const [k, v] of Object.entries(data)) writeFileSync(join(dir, version, k), v);
  symlinkSync(version, join(dir, '..data'));
  for (const k of Object.keys(data)) symlinkSync(join('..data', k), join(dir, k));
}

/** The kubelet's atomic update: a new folder, `..data_tmp` pointing at it, renamed over `..data`. */
function updateConfigMapVolume(dir: string, data: Record<string, string>, version: string): void {
  mkdirSync(join(dir, version));
  for (const [k, v] of Object.entries(data)) writeFileSync(join(dir, version, k), v);
  symlinkSync(version, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
}

t.test('a ConfigMap update (the kubelet swaps ..data) is picked up by the file watch', async (t) => {
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-cm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  configMapVolume(join(dir, 'lists'), { 'tiktok.txt': 'tiktok.com\n' }, '..v1');
  configMapVolume(join(dir, 'exceptions'), { 'exceptions.yaml': 'exceptions: []\n' }, '..v1');
  configMapVolume(join(dir, 'config'), {
    'sinkhole.yaml': stringify({
      listen: { dns: ['127.0.0.1:0'] }, upstreams: { servers: [`127.0.0.1:${up.port}`] }, log: { queries: 'none' },
      blocking: { lists: { tiktok: ['../lists/tiktok.txt'] }, enforce: ['tiktok'] }, exceptions: '../exceptions/exceptions.yaml',
    }),
  }, '..v1');
  const running = await start({ configFile: join(dir, 'config', 'sinkhole.yaml'), log: silentLogger });
  t.teardown(() => running.close());
  const port = running.dns[0]!.udp.port;
  const waitGeneration = async (n: number): Promise<void> => {
    for (const deadline = Date.now() + 5000; running.policy.current.number < n; ) {
      if (Date.now() > deadline) throw new Error(`generation ${n} never came`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  t.equal(rcodeOf(await udpExchange(port, buildQuery('newapp.example', T.A))), 0, 'not blocked yet');
  updateConfigMapVolume(join(dir, 'lists'), { 'tiktok.txt': 'tiktok.com\nnewapp.example\n' }, '..v2');
  await waitGeneration(2);
  t.equal(rcodeOf(await udpExchange(port, buildQuery('newapp.example', T.A))), 3, 'the updated list is in force');
  t.equal(running.stats.reloads.get('list|success'), 1, 'counted as a list reload');
  updateConfigMapVolume(join(dir, 'exceptions'), { 'exceptions.yaml': 'exceptions: []\n# touched\n' }, '..v2');
  await waitGeneration(3);
  t.equal(running.stats.reloads.get('exceptions|success'), 1, 'and an exceptions update as an exceptions reload');
});

t.test('the systemd unit and the logrotate file carry what docs/operations.md promises', async (t) => {
  const unit = readFileSync(join(ROOT, 'deploy', 'systemd', 'sinkhole.service'), 'utf8');
  for (const line of [
    'DynamicUser=yes', 'AmbientCapabilities=CAP_NET_BIND_SERVICE', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'NoNewPrivileges=yes',
    'ProtectSystem=strict', 'StateDirectory=sinkhole', 'LogsDirectory=sinkhole', 'Restart=always', 'ExecReload=/bin/kill -HUP $MAINPID',
    'ExecStart=/opt/sinkhole/bin/sinkhole serve --config /etc/sinkhole/sinkhole.yaml', 'MemoryDenyWriteExecute=no',
  ]) t.match(unit, new RegExp(`^${line.replace(/[$.*+?^()[\]{}|\\]/g, '\\$&')}$`, 'm'), line);
  const logrotate = readFileSync(join(ROOT, 'deploy', 'logrotate', 'sinkhole'), 'utf8');
  t.match(logrotate, /^\/var\/log\/sinkhole\/queries\.log \{/m);
  t.match(logrotate, /^\/var\/log\/sinkhole\/audit\.log \{/m);
  t.equal(logrotate.match(/systemctl kill --kill-whom=main --signal=HUP sinkhole\.service/g)?.length, 2, 'each rotation ends with SIGHUP to sinkhole');
  t.notMatch(logrotate, /^\s*copytruncate/m, 'no copytruncate: SIGHUP reopens the file, so no line is lost');
});

/** A unit file's settings: each key with its values in order (a key may repeat). Comments and sections dropped. */
function unitSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

function setting(unit: Map<string, string[]>, key: string): string {
  const values = unit.get(key);
  if (values?.length !== 1) throw new Error(`the unit should set ${key}= once, not ${values?.length ?? 0} times`);
  return values[0]!;
}

const unit = (): Map<string, string[]> => unitSettings(readFileSync(join(SYSTEMD, 'sinkhole.service'), 'utf8'));

/** The systemd config laid out as docs/operations.md installs it: the config, lists and exceptions in ExecStart's --config folder. */
function systemdLayout(t: { teardown(fn: () => void): void }): { root: string; config: string } {
  const root = mkdtempSync(join(tmpdir(), 'sinkhole-systemd-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const configPath = /--config (\S+)/.exec(setting(unit(), 'ExecStart'))![1]!;
  const etc = join(root, dirname(configPath));
  mkdirSync(etc, { recursive: true });
  copyFileSync(join(SYSTEMD, 'sinkhole.yaml'), join(root, configPath));
  copyFileSync(join(ROOT, 'exceptions.yaml'), join(etc, 'exceptions.yaml'));
  symlinkSync(join(ROOT, 'blocklists'), join(etc, 'blocklists'));
  return { root, config: join(root, configPath) };
}

t.test('the systemd config validates as installed in /etc/sinkhole, and writes only where the unit lets it', async (t) => {
  const u = unit();
  t.match(OPERATIONS, /sudo cp deploy\/systemd\/sinkhole\.yaml \/etc\/sinkhole\/sinkhole\.yaml/, 'docs/operations.md installs this config');
  t.notMatch(OPERATIONS, /cp -r sinkhole\.yaml [^\n]*\/etc\/sinkhole/, 'and not the bundled one, whose state.dir would be read-only');
  const { root, config } = systemdLayout(t);
  // systemd hands the token over as a credential (LoadCredential=NAME:PATH); the config names it.
  const [name, source] = setting(u, 'LoadCredential').split(':') as [string, string];
  const creds = join(root, 'run', 'credentials');
  mkdirSync(creds, { recursive: true });
  writeFileSync(join(creds, name), 'a-token-of-at-least-16-chars\n');
  const v = validate(config, { env: { ...process.env, CREDENTIALS_DIRECTORY: creds } });
  t.equal(v.status, 0, `validate: ${v.stdout}${v.stderr}`);
  t.match(v.stdout, /^\S+sinkhole\.yaml: ok/, 'with no warning');
  const c = loadConfig(config);
  t.equal(c.listen.httpToken, `credential:${name}`, 'listen.httpToken is the unit\'s LoadCredential name');
  t.equal(source, join(dirname(/--config (\S+)/.exec(setting(u, 'ExecStart'))![1]!), 'http-token'), 'read from beside the config, where docs/operations.md writes it');
  t.equal(c.state.dir, `/var/lib/${setting(u, 'StateDirectory')}`, 'state.dir is the unit\'s StateDirectory');
  t.equal(setting(u, 'ProtectSystem'), 'strict', 'everything else is read-only');
  const logs = `/var/log/${setting(u, 'LogsDirectory')}`;
  const logrotate = readFileSync(join(ROOT, 'deploy', 'logrotate', 'sinkhole'), 'utf8');
  for (const f of [c.log.file!, c.log.audit!]) {
    t.equal(dirname(f), logs, `${f} is in the unit's LogsDirectory`);
    t.ok(logrotate.includes(`\n${f} {`), `and logrotate rotates ${f}`);
  }
  // Without the unit's CREDENTIALS_DIRECTORY, validate says so with a code (serve would refuse to start).
  const bare = validate(config);
  t.equal(bare.status, 0);
  t.match(bare.stdout, new RegExp(`^SH_HTTP_TOKEN \\S+: warning: listen\\.httpToken: credential:${name} needs \\$CREDENTIALS_DIRECTORY, which systemd sets for a unit with LoadCredential=${name}:PATH; it is unset`, 'm'));
});

t.test('listen.httpToken: credential:NAME reads $CREDENTIALS_DIRECTORY/NAME; a clear error when it is unset or the name is not a file name', async (t) => {
  const creds = mkdtempSync(join(tmpdir(), 'sinkhole-creds-'));
  t.teardown(() => rmSync(creds, { recursive: true, force: true }));
  writeFileSync(join(creds, 'http-token'), 'token-from-systemd-0123456789\n');
  t.equal(readHttpToken('credential:http-token', { CREDENTIALS_DIRECTORY: creds }), 'token-from-systemd-0123456789');
  t.throws(() => readHttpToken('credential:http-token', {}), { name: 'SinkholeError', code: 'SH_HTTP_TOKEN', message: /credential:http-token needs \$CREDENTIALS_DIRECTORY/ });
  t.throws(() => readHttpToken('credential:other', { CREDENTIALS_DIRECTORY: creds }), { code: 'SH_HTTP_TOKEN', message: /cannot read \S+\/other: ENOENT/ });
  // The config keeps credential:NAME as it is (not a path beside the config), and refuses a name that is not a file name.
  const dir = mkdtempSync(join(tmpdir(), 'sinkhole-credcfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const configWith = (token: string): string => {
    writeFileSync(join(dir, 'sinkhole.yaml'), stringify({ listen: { dns: ['127.0.0.1:0'], httpToken: token }, upstreams: { servers: ['127.0.0.1:53'] } }));
    return join(dir, 'sinkhole.yaml');
  };
  t.equal(loadConfig(configWith('credential:http-token')).listen.httpToken, 'credential:http-token');
  for (const [bad, why] of [['credential:', /expected credential:NAME/], ['credential:../http-token', /must be a file name/]] as const) {
    try {
      loadConfig(configWith(bad));
      t.fail(`${bad} accepted`);
    } catch (e) {
      t.ok(e instanceof PolicyError, bad);
      t.match((e as PolicyError).problems[0], { code: 'SH_CONFIG_INVALID', line: 4, message: why }, bad);
    }
  }
  // serve: the token from the credential guards the client report.
  const up = await FakeUpstream.start();
  t.teardown(() => up.close());
  const saved = process.env.CREDENTIALS_DIRECTORY;
  process.env.CREDENTIALS_DIRECTORY = creds;
  t.teardown(() => (saved === undefined ? delete process.env.CREDENTIALS_DIRECTORY : (process.env.CREDENTIALS_DIRECTORY = saved)));
  const h = await startSinkhole(t, up.port, { listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0', httpToken: 'credential:http-token' } });
  const url = `http://127.0.0.1:${h.running.http!.port}/api/blocked-clients`;
  t.equal((await fetch(url)).status, 401, 'no token: 401');
  t.equal((await fetch(url, { headers: { authorization: 'Bearer token-from-systemd-0123456789' } })).status, 200, 'the credential\'s token: 200');
});

t.test('systemd memory: MemoryMax holds every query thread\'s full cache and a policy compile, at the shipped workers', async (t) => {
  const u = unit();
  const bytes = (v: string): number => {
    const m = /^(\d+(?:\.\d+)?)([KMGT]?)$/.exec(v);
    if (!m) throw new Error(`MemoryMax=${v}: expected a size like 1G`);
    return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2] || ' ');
  };
  const memoryMax = bytes(setting(u, 'MemoryMax'));
  const config = parseYaml(readFileSync(join(SYSTEMD, 'sinkhole.yaml'), 'utf8')) as { workers?: number | string; cache?: { maxEntries?: number } };
  t.type(config.workers, 'number', 'workers is a number: with auto, threads follow the cores and outgrow a fixed MemoryMax');
  const workers = Number(config.workers);
  const maxEntries = config.cache?.maxEntries ?? 100_000;
  // The measured figures, read from bench/RESULTS.md so that a new measurement moves the check:
  // "Memory under cache churn" (one query thread, full 100k-entry cache, RSS peak) and
  // "rules-load" (peak RSS while a 1M-rule policy compiles, beside the threads on a reload).
  const results = readFileSync(join(ROOT, 'bench', 'RESULTS.md'), 'utf8');
  const perThreadMb = Number(/^\| slab \+ flat keys \(final, semi-space 16\) \| (\d+) MB \|/m.exec(results)?.[1]);
  const compileMb = Number(/^\| 1M \| [^|]+ \| (?:\d+–)?(\d+) MB \|/m.exec(results)?.[1]);
  t.ok(perThreadMb > 0 && compileMb > 0, `figures found: ${perThreadMb} MB per thread, ${compileMb} MB to compile`);
  const needed = (compileMb + workers * perThreadMb * Math.max(1, maxEntries / 100_000)) * 2 ** 20;
  t.ok(memoryMax >= needed, `MemoryMax ${memoryMax / 2 ** 20} MB >= ${compileMb} + ${workers} x ${perThreadMb} MB (cache.maxEntries ${maxEntries}) = ${needed / 2 ** 20} MB`);
  t.match(readFileSync(join(SYSTEMD, 'sinkhole.service'), 'utf8'), /MemoryMax >= 160M \+ workers x 250M/, 'the unit says the formula');
});

t.test('kubectl apply -k applies the Namespace before what lives in it, and every manifest is listed', async (t) => {
  const k = parseYaml(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as { apiVersion: string; kind: string; resources: string[] };
  t.same([k.apiVersion, k.kind], ['kustomize.config.k8s.io/v1beta1', 'Kustomization']);
  const files = readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
  t.same([...k.resources].sort(), files, 'every manifest is a resource, and every resource a file here');
  const docs = k.resources.flatMap((f) => parseAllDocuments(readFileSync(join(K8S, f), 'utf8')).map((d) => d.toJSON() as { kind: string; metadata: { name: string; namespace?: string } }));
  t.equal(docs[0]?.kind, 'Namespace', 'the first object applied is the Namespace');
  const created = new Set<string>();
  for (const d of docs) {
    if (d.kind === 'Namespace') created.add(d.metadata.name);
    else t.ok(d.metadata.namespace && created.has(d.metadata.namespace), `${d.kind} ${d.metadata.name}: its namespace ${d.metadata.namespace} is created before it`);
  }
  t.match(OPERATIONS, /kubectl apply -k deploy\/kubernetes\//, 'docs/operations.md applies it with -k');
  t.notMatch(OPERATIONS, /kubectl apply -f deploy\/kubernetes\/\s*$/m, 'not with -f on the folder');
});

t.test('the Docker image: the Dockerfile, its config and docs/operations.md agree on the config folder, the volumes and the health check', async (t) => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const runtime = dockerfile.split(/^FROM /m).at(-1)!; // the final stage is the image
  const workdir = [...runtime.matchAll(/^WORKDIR (\S+)$/gm)].at(-1)![1]!;
  const volumes = [...runtime.matchAll(/^VOLUME (.+)$/gm)].flatMap((m) => (m[1]!.startsWith('[') ? (JSON.parse(m[1]!) as string[]) : m[1]!.split(/\s+/)));
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(runtime)![1]!) as string[];
  const health = JSON.parse(/^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])$/m.exec(runtime)![1]!) as string[];
  t.same(cmd.slice(0, 2), ['serve', '--config']);
  t.same(health.slice(0, 4), ['bin/sinkhole', 'health', '--config', cmd[2]], 'the health check reads the config serve runs');
  const inImage = (p: string, from = workdir): string => posix.resolve(from, p);
  const configFile = inImage(cmd[2]!);
  t.equal(inImage(/^COPY sinkhole\.docker\.yaml (\S+)$/m.exec(runtime)![1]!), configFile, 'sinkhole.docker.yaml is copied where serve reads it');
  const under = (p: string, dir: string): boolean => p === dir || p.startsWith(`${dir}/`);
  const inVolume = (p: string): string | undefined => volumes.find((v) => under(p, v));

  // The config's writable paths are in volumes, which the image gives to the user it runs as.
  const config = parseYaml(readFileSync(join(ROOT, 'sinkhole.docker.yaml'), 'utf8')) as { state: { dir: string }; log: { file?: string; audit?: string }; exceptions: string };
  const fromConfig = (p: string): string => inImage(p, posix.dirname(configFile));
  const stateDir = fromConfig(config.state.dir);
  t.ok(inVolume(stateDir), `state.dir ${stateDir} is a volume (${volumes.join(', ')})`);
  t.ok(config.log.audit && inVolume(fromConfig(config.log.audit)), `the audit trail ${config.log.audit} is in a volume`);
  t.ok(config.log.file === undefined || config.log.file === '-', 'the query log alone goes to stdout (docker logs)');
  t.ok(inVolume(fromConfig(config.exceptions)), 'exceptions come from their volume');
  const user = /^USER (\S+)$/m.exec(runtime)![1]!;
  t.match(runtime, new RegExp(`mkdir -p ${stateDir} && chown ${user}:${user} ${stateDir}`), `the state volume belongs to ${user}`);

  // docs/operations.md's docker run mounts every volume, and the config as a folder (a file mount misses saves by rename).
  const run = /^docker run [\s\S]*?[^\\]\n/m.exec(OPERATIONS)![0];
  const mounts = [...run.matchAll(/-v (\S+?):(\/[^\s:]+)(:ro)?/g)].map((m) => m[2]!);
  for (const v of volumes) t.ok(mounts.includes(v), `docker run mounts the volume ${v}`);
  t.ok(mounts.includes(posix.dirname(configFile)), `docker run mounts the config folder ${posix.dirname(configFile)}`);
  t.notOk(mounts.includes(configFile), 'and not the config file alone');
  t.match(OPERATIONS, `sudo cp sinkhole.docker.yaml /srv/sinkhole/config/${posix.basename(configFile)}`, 'docs/operations.md puts a config in the mounted folder');
  t.ok(OPERATIONS.includes(`sinkhole health --config ${cmd[2]}`), 'docs/operations.md names the health check\'s config');

  // Laid out as the image has it, the config validates.
  const app = mkdtempSync(join(tmpdir(), 'sinkhole-image-'));
  t.teardown(() => rmSync(app, { recursive: true, force: true }));
  const at = (p: string): string => join(app, p);
  mkdirSync(at(posix.dirname(configFile)), { recursive: true });
  copyFileSync(join(ROOT, 'sinkhole.docker.yaml'), at(configFile));
  symlinkSync(join(ROOT, 'blocklists'), at(inImage(/^COPY blocklists (\S+)$/m.exec(runtime)![1]!)));
  const exceptions = fromConfig(config.exceptions);
  mkdirSync(at(posix.dirname(exceptions)), { recursive: true });
  writeFileSync(at(exceptions), 'exceptions: []\n');
  const v = validate(at(configFile));
  t.equal(v.status, 0, `validate: ${v.stdout}${v.stderr}`);
  t.match(v.stdout, /^\S+sinkhole\.yaml: ok/, 'with no warning');
});
