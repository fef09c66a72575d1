// A policy generation: config, lists and exceptions compiled into one
// immutable value. A reload builds a whole new one and swaps one reference;
// a generation that fails to build is never half-applied (DESIGN.md §2).
import { readFileSync } from 'node:fs';
import { loadConfig, type Config } from '../config/config.js';
import { PolicyError, type Problem } from '../errors.js';
import { CidrSet } from './cidr.js';
import { ClientDirectory, compileCidrs, type ClientView } from './clients.js';
import { isActive, loadExceptions, type Exception } from './exceptions.js';
import { scanList } from './listParser.js';
import { MatcherBuilder, type Matcher, type RuleMatch } from './matcher.js';
import { SinkholeResponder } from './sinkhole.js';

export interface Generation {
  /** Increases by one on each successful swap; the `sinkhole_policy_generation` gauge. */
  readonly number: number;
  readonly config: Config;
  readonly matcher: Matcher;
  /** accept-mask for Matcher.find: 1 for each list in blocking.enforce. */
  readonly enforced: Uint8Array;
  readonly ruleCounts: ReadonlyMap<string, number>;
  readonly exceptions: readonly Exception[];
  readonly clients: ClientDirectory;
  readonly responder: SinkholeResponder;
  /** Every file this generation was built from: the reloader watches them. */
  readonly files: readonly string[];
}

export type Decision =
  | { decision: 'allowed'; match?: undefined; exception?: undefined }
  | { decision: 'blocked'; match: RuleMatch; exception?: undefined }
  | { decision: 'excepted'; match: RuleMatch; exception: Exception };

/** Builds a generation from a config file; throws PolicyError with every problem found. */
export function buildGeneration(configFile: string, number: number): Generation {
  const config = loadConfig(configFile);
  return compile(config, number);
}

export function compile(config: Config, number: number): Generation {
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
        bytes = readFileSync(file);
      } catch (e) {
        problems.push({
          code: 'SH_CONFIG_READ', ...list.ref,
          message: `blocking.lists.${list.name}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        });
        unreadable = true;
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
    // (A file that could not be read, or had bad lines, is already the problem to report.)
    if (count === 0 && !unreadable && !problems.some((p) => list.files.includes(p.file))) {
      problems.push({
        code: 'SH_LIST_EMPTY', file: list.files[0] ?? list.ref.file, line: 1, col: 1,
        message: `list "${list.name}" has no rules; to stop enforcing it, remove it from blocking.enforce`,
      });
    }
  }
  const groups = new Map<string, CidrSet>(config.clients.groups.map((g) => [g.name, compileCidrs(g.members)]));
  const ex = loadExceptions(config.exceptions, { lists: new Set(config.blocking.lists.map((l) => l.name)), groups });
  problems.push(...ex.problems);
  if (config.exceptions && 'file' in config.exceptions) files.push(config.exceptions.file);
  if (problems.length) throw new PolicyError(problems);

  const matcher = builder.build();
  const enforced = new Uint8Array(Math.max(1, matcher.lists.length));
  matcher.lists.forEach((l, i) => (enforced[i] = config.blocking.enforce.includes(l.name) ? 1 : 0));
  return Object.freeze({
    number, config, matcher, enforced, ruleCounts, exceptions: ex.exceptions,
    clients: new ClientDirectory(compileCidrs(config.clients.allowFrom), groups, ex.exceptions),
    responder: new SinkholeResponder(config.blocking.response, config.blocking.ttl),
    files,
  });
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

function covers(e: Exception, list: string, name: string): boolean {
  if (e.allowLists.has(list)) return true;
  return e.allowDomains.some((d) => name === d || name.endsWith(`.${d}`));
}
