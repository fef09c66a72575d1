// A policy generation: config, lists and exceptions compiled into one
// immutable value. A reload builds a whole new one and swaps one reference;
// a generation that fails to build is never half-applied (docs/design.md §2).
import { loadConfig, type Config } from '../config/config.js';
import { PolicyError, type Problem } from '../errors.js';
import { CidrSet } from '../net/cidr.js';
import { ClientDirectory, compileCidrs, type ClientView } from './clients.js';
import { isActive, loadExceptions, type Exception } from './exceptions.js';
import { scanList } from './listParser.js';
import { Matcher, MatcherBuilder, shareMatcherData, type MatcherData, type RuleMatch } from './matcher.js';
import { SinkholeResponder } from './sinkhole.js';
import { diskSource, type FileSource } from '../config/sources.js';
import { RpzSet } from './rpz/evaluate.js';
import { shareNames } from './rpz/names.js';
import { appliedRules, compileZone, type RpzZoneData } from './rpz/zone.js';

export interface Generation {
  /** Increases by one on each successful swap; the `sinkhole_policy_generation` gauge. */
  readonly number: number;
  readonly config: Config;
  readonly matcher: Matcher;
  /** accept-mask for Matcher.find: 1 for each list in blocking.enforce. */
  readonly enforced: Uint8Array;
  readonly ruleCounts: ReadonlyMap<string, number>;
  /** Response Policy Zones (docs/rpz.md): every zone, and the enforced ones for the query path. */
  readonly rpzZones: readonly RpzZoneData[];
  readonly rpz: RpzSet;
  readonly exceptions: readonly Exception[];
  readonly clients: ClientDirectory;
  /** clients.trustedRelays: the only sources whose ECS and MAC options are believed. */
  readonly relays: CidrSet;
  readonly responder: SinkholeResponder;
  /** Every file this generation was built from: the reloader watches them. */
  readonly files: readonly string[];
  /**
   * Set when this generation was compiled from the last good snapshot because
   * the files on disk did not compile at start-up: /readyz, the
   * sinkhole_policy_degraded gauge and the log say so until a good reload.
   */
  readonly degraded?: { snapshotTakenAt: string; problems: readonly string[] };
}

export type Decision =
  | { decision: 'allowed'; match?: undefined; exception?: undefined }
  | { decision: 'blocked'; match: RuleMatch; exception?: undefined }
  | { decision: 'excepted'; match: RuleMatch; exception: Exception };

/**
 * What a generation is compiled from and into, as plain data: the expensive part (reading and
 * parsing every list, building the matcher's hash table) happens once, in a worker thread on
 * reload (policy/compiler.ts), and the result crosses to the query threads, where hydrate()
 * only wraps it. Nothing O(rules) runs on a query thread.
 */
export interface PolicyData {
  config: Config;
  matcher: MatcherData;
  ruleCounts: Map<string, number>;
  rpz: RpzZoneData[];
  exceptions: Exception[];
  files: string[];
  /** Set when compiled from the last good snapshot at start-up (state/lastGood.ts). */
  degraded?: { snapshotTakenAt: string; problems: readonly string[] };
}

/**
 * The same data with its big arrays (the list matcher's, every zone's QNAME triggers) in
 * SharedArrayBuffers: what crosses to the query threads, one copy for all of them.
 */
export function sharePolicyData(data: PolicyData): PolicyData {
  return { ...data, matcher: shareMatcherData(data.matcher), rpz: data.rpz.map((z) => ({ ...z, names: shareNames(z.names) })) };
}

/**
 * Builds a generation from a config file; throws PolicyError with every problem found.
 * `files` is where every file is read from: the disk, or a snapshot (config/sources.ts).
 */
export function buildGeneration(configFile: string, number: number, files: FileSource = diskSource): Generation {
  return hydrate(compileFile(configFile, files), number);
}

export function compile(config: Config, number: number, source: FileSource = diskSource): Generation {
  return hydrate(compileData(config, source), number);
}

/** Reads, parses and compiles the config file and everything it names; throws PolicyError. */
export function compileFile(configFile: string, files: FileSource = diskSource): PolicyData {
  return compileData(loadConfig(configFile, files), files);
}

/** The generation's objects around its data; cheap (no list is read, no table built), so safe on a query thread. */
export function hydrate(data: PolicyData, number: number): Generation {
  const { config, exceptions } = data;
  const matcher = new Matcher(data.matcher);
  const enforced = new Uint8Array(Math.max(1, matcher.lists.length));
  matcher.lists.forEach((l, i) => (enforced[i] = config.blocking.enforce.includes(l.name) ? 1 : 0));
  return Object.freeze({
    number, config, matcher, enforced, ruleCounts: data.ruleCounts, exceptions,
    rpzZones: data.rpz, rpz: new RpzSet(data.rpz, config.blocking.enforce),
    clients: new ClientDirectory(compileCidrs(config.clients.allowFrom), config.clients.groups, exceptions),
    relays: compileCidrs(config.clients.trustedRelays),
    responder: new SinkholeResponder(config.blocking.response, config.blocking.ttl),
    files: data.files,
    ...(data.degraded ? { degraded: data.degraded } : {}),
  });
}

export function compileData(config: Config, source: FileSource = diskSource): PolicyData {
  const problems: Problem[] = [];
  const builder = new MatcherBuilder();
  const files = [config.file];
  const ruleCounts = new Map<string, number>();
  for (const list of config.blocking.lists) {
    const idx = builder.addList({ name: list.name, files: list.files });
    let unreadable = false;
    for (const file of list.files) {
      files.push(file);
      const fileIdx = builder.addFile(file);
      let bytes: Buffer;
      try {
        bytes = source.read(file);
      } catch (e) {
        unreadable = true;
        problems.push({
          code: 'SH_CONFIG_READ', ...list.ref,
          message: `blocking.lists.${list.name}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        });
        continue;
      }
      builder.reserve(bytes.length);
      problems.push(
        ...scanList(file, bytes, {
          rule: (domain, subdomainsOnly, line) => builder.addRule(idx, fileIdx, domain, subdomainsOnly, line),
          ruleBytes: (src, a, b, line) => builder.addRuleBytes(idx, fileIdx, src, a, b, line),
        }),
      );
    }
    const count = builder.ruleCount(idx);
    ruleCounts.set(list.name, count);
    // An empty list is almost always a truncated download or a bad save: refuse it rather than open the block.
    // Not said of a list whose file could not be read or had errors: that problem is the one to fix.
    if (count === 0 && !unreadable && !problems.some((p) => list.files.includes(p.file))) {
      const hint = config.blocking.enforce.includes(list.name)
        ? 'to stop enforcing it, remove it from blocking.enforce'
        : 'it is not enforced; remove it from blocking.lists if it is not needed';
      problems.push({ code: 'SH_LIST_EMPTY', file: list.files[0] ?? list.ref.file, line: 1, col: 1, message: `list "${list.name}" has no rules; ${hint}` });
    }
  }
  const rpz: RpzZoneData[] = [];
  for (const spec of config.blocking.rpz) {
    files.push(spec.file);
    let text: string;
    try {
      text = source.read(spec.file).toString('utf8');
    } catch (e) {
      problems.push({ code: 'SH_CONFIG_READ', ...spec.ref, message: `blocking.rpz ${spec.name}: cannot read ${spec.file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` });
      continue;
    }
    const zone = compileZone(spec, text);
    // Not push(...): a zone of a million bad lines would overflow the stack (boundPerFile shows the first 100).
    for (const p of zone.problems) problems.push(p);
    rpz.push(zone.data);
    const count = appliedRules(zone.data);
    ruleCounts.set(spec.name, count);
    // As with lists: a feed with no triggers is almost always a truncated download.
    if (count === 0 && !zone.problems.length) {
      problems.push({ code: 'SH_LIST_EMPTY', file: spec.file, line: 1, col: 1, message: `RPZ "${spec.name}" has no triggers this sinkhole applies; to stop enforcing it, remove it from blocking.enforce and blocking.rpz` });
    }
  }
  const listNames = [...config.blocking.lists.map((l) => l.name), ...config.blocking.rpz.map((z) => z.name)];
  const ex = loadExceptions(config.exceptions, { lists: new Set(listNames), groups: new Set(config.clients.groups.map((g) => g.name)) }, source);
  for (const p of ex.problems) problems.push(p);
  if (config.exceptions && 'file' in config.exceptions) files.push(config.exceptions.file);
  if (problems.length) throw new PolicyError(problems);

  // An inline exceptions list is a YAML node of this config's reader: it has been read, and it cannot
  // cross a thread boundary, so only its presence is kept.
  const portable: Config = Object.freeze({ ...config, exceptions: config.exceptions && ('file' in config.exceptions ? config.exceptions : { inline: null }) });
  return { config: portable, matcher: builder.build().data, ruleCounts, rpz, exceptions: ex.exceptions, files };
}

/**
 * What the policy says about `name` for this client at `now`: blocked by an
 * enforced list, excepted by an active exception, or allowed. The hot path
 * calls this only after Matcher.find has hit (and passes that hit as `first`),
 * so most queries never get here.
 */
export function decide(g: Generation, name: string, view: ClientView, now: number | (() => number), first = g.matcher.find(name, g.enforced)): Decision {
  if (first === -1) return { decision: 'allowed' };
  if (!view.exceptions.length) return { decision: 'blocked', match: g.matcher.describe(first, name) };
  // The slow path, for clients named by an exception: blocked if any enforced list that no active exception covers matches.
  let excepted: Decision | undefined;
  const at = typeof now === 'number' ? now : now();
  for (const r of g.matcher.findAll(name)) {
    if (!g.enforced[g.matcher.listIndex(r)]) continue;
    const match = g.matcher.describe(r, name);
    const exception = view.exceptions.find((e) => isActive(e, at) && covers(e, match.list, name));
    if (!exception) return { decision: 'blocked', match };
    excepted ??= { decision: 'excepted', match, exception };
  }
  return excepted ?? { decision: 'allowed' };
}

/** Whether exception `e` (active or not) is for this list or this name. */
export function covers(e: Exception, list: string, name: string): boolean {
  if (e.allowLists.has(list)) return true;
  return e.allowDomains.some((d) => name === d || name.endsWith(`.${d}`));
}
