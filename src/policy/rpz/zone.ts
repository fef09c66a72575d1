// One RPZ zone file compiled into plain data (it crosses to the query threads
// with the rest of the generation, policy/generation.ts): its SOA serial, and
// its rules indexed by trigger. A zone with no triggers is taken for a
// truncated feed (generation.ts).
//
// Sized for feeds of a million records (bench/RESULTS.md issue 21): the file
// is read a record at a time, and the common record, `name CNAME .` alone at
// its owner, leaves nothing behind but a few bytes in names.ts's arrays. Only
// the rare owners keep their records until the end of the file: those with
// several records or local data, those written again after other owners (one
// RRset wherever written, RFC 2181 §5), and the IP and NSDNAME/NSIP triggers.
import type { Problem } from '../../errors.js';
import type { RpzOverride } from '../../config/rpz.js';
import { hashName } from '../matcher.js';
import { isPublicSuffix } from '../publicSuffix.js';
import { actionOf, type LocalRecord, type RpzAction } from './actions.js';
import { actionCode, actionOfCode, NOT_APPLIED, ownerOf, RpzNamesBuilder, type RpzNameData } from './names.js';
import { judgeRrset, type Fail } from './rrset.js';
import { formatPrefix, triggerOf, type IpPrefix, type Trigger, type TriggerKind } from './triggers.js';
import { parseZoneFile, readZoneFile, type ZoneRecord } from './zoneFile.js';

export { ALLOW_WIDE_MARKER, WIDE_PREFIX } from './rrset.js';

export const TRIGGER_KINDS: readonly TriggerKind[] = ['qname', 'wildcard', 'client-ip', 'response-ip', 'nsdname', 'nsip'];

/** One rule as `check`, the logs and the stage see it; made on demand for a QNAME trigger (nameRule). */
export interface RpzRule {
  /** The owner relative to the zone's origin, as `check` and the logs name it: `*.bad.example`, `32.1.2.0.192.rpz-ip`. */
  owner: string;
  line: number;
  trigger: TriggerKind;
  action: RpzAction;
  /** For action `local`. */
  records?: LocalRecord[];
  /** For IP triggers: the prefix, as text. */
  prefix?: string;
}

/** Longest-prefix lookup: prefix lengths present (longest first), and `${prefix}/${network in hex}` → index in ipRules. */
export interface IpIndex {
  lengths: number[];
  byKey: Map<string, number>;
}

export interface RpzZoneData {
  name: string;
  file: string;
  origin: string;
  serial: number;
  override: RpzOverride;
  /** QNAME and wildcard triggers, in typed arrays shared by the query threads (names.ts). */
  names: RpzNameData;
  /** The local data of QNAME triggers whose action is `local`, by trigger index: few have any. */
  local: Map<number, LocalRecord[]>;
  /** Client-IP and response-IP triggers, an object each: few, and each has its prefix. */
  ipRules: RpzRule[];
  clientIp: { v4: IpIndex; v6: IpIndex };
  responseIp: { v4: IpIndex; v6: IpIndex };
  /** Triggers per kind (one per owner name), NSDNAME/NSIP included. */
  counts: Record<TriggerKind, number>;
  /** Triggers applied (NSDNAME/NSIP and unsupported actions left out): what `sinkhole_list_rules` counts. */
  applied: number;
  /** Records accepted but not applied: NSDNAME and NSIP triggers, `CNAME *.domain` actions. */
  unsupported: number;
  /** Where the first unsupported record is, for validate's warning. */
  firstUnsupported?: { line: number; col: number; what: string };
}

export function ipKey(prefix: number, network: bigint): string {
  return `${prefix}/${network.toString(16)}`;
}

function addIp(index: IpIndex, net: IpPrefix, rule: number): void {
  index.byKey.set(ipKey(net.prefix, net.network), rule);
  if (!index.lengths.includes(net.prefix)) {
    index.lengths.push(net.prefix);
    index.lengths.sort((a, b) => b - a);
  }
}

const emptyIndex = (): IpIndex => ({ lengths: [], byKey: new Map() });

export interface ZoneSpec {
  name: string;
  file: string;
  override: RpzOverride;
  /** The zone's name from the config, if given: relative names start from it, and the SOA must own it. */
  zone?: string;
}

/** How a compact trigger's owner was written (names.ts marks), so it can be given back exactly (recall). */
const WRITTEN_RELATIVE = 1;
const WRITTEN_ABSOLUTE = 2;

/** Lines in `text`: at least as many as its records. */
function lineCount(text: string): number {
  let n = 1;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) n++;
  return n;
}

/** Compiles a zone file's text; the problems are empty when it is good. */
export function compileZone(spec: ZoneSpec, text: string): { data: RpzZoneData; problems: Problem[] } {
  const { file } = spec;
  const problems: Problem[] = [];
  const fail: Fail = (at, message, code = 'SH_RPZ_SYNTAX') => {
    problems.push({ code, file, line: at.line, col: at.col, message });
  };
  const data: RpzZoneData = {
    name: spec.name, file, origin: '', serial: 0, override: spec.override, names: new RpzNamesBuilder().build(), local: new Map(), ipRules: [],
    clientIp: { v4: emptyIndex(), v6: emptyIndex() }, responseIp: { v4: emptyIndex(), v6: emptyIndex() },
    counts: { qname: 0, wildcard: 0, 'client-ip': 0, 'response-ip': 0, nsdname: 0, nsip: 0 }, applied: 0, unsupported: 0,
  };
  const names = new RpzNamesBuilder(lineCount(text));
  /** QNAME triggers judged at the end, with every record at their owner. */
  const held = new Map<number, ZoneRecord[]>();
  /** Every other owner (IP, NSDNAME/NSIP, not a trigger), by its relative name, judged at the end. */
  const others = new Map<string, ZoneRecord[]>();
  let first: ZoneRecord | undefined;
  let suffix = '';
  // The records of one owner written one after another: nearly always one record.
  let group: ZoneRecord[] = [];
  let groupRel = '';

  const unsupported = (at: ZoneRecord, what: string): void => {
    data.unsupported++;
    const f = data.firstUnsupported;
    if (!f || at.line < f.line || (at.line === f.line && at.col < f.col)) data.firstUnsupported = { line: at.line, col: at.col, what };
  };

  /** Keeps only the action of `r`, alone at its owner, when nothing else about it can matter. */
  const compact = (i: number, trigger: Trigger & { kind: 'qname' | 'wildcard' }, rel: string, r: ZoneRecord): boolean => {
    if (r.type !== 'CNAME' || r.rdata.length !== 1 || r.col !== 1) return false;
    // Lower-case, relative or absolute: as the owner is written in every feed sinkhole has seen, and
    // what recall() must be able to give back for a message about this owner.
    const written = r.ownerText === rel ? WRITTEN_RELATIVE : r.ownerText === `${r.owner}.` ? WRITTEN_ABSOLUTE : 0;
    if (!written) return false;
    const a = actionOf([r], data.origin);
    if (Array.isArray(a) || !('action' in a) || a.action === 'local') return false;
    // The public-suffix guard rail reads the comment; judged whole at the end.
    if (trigger.kind === 'wildcard' && isPublicSuffix(trigger.name)) return false;
    names.setAction(i, actionCode(a.action));
    names.setMark(i, written);
    return true;
  };

  /**
   * The record compact() kept the action of, as far as the judgment of a bigger RRset reads it: a
   * CNAME with other records is refused whatever its target (RFC 1034 §3.6.2), naming where the
   * owner is written and how.
   */
  const recall = (i: number, rel: string): ZoneRecord => {
    const owner = data.origin === '' ? rel : `${rel}.${data.origin}`;
    const ownerText = names.markAt(i) === WRITTEN_RELATIVE ? rel : `${owner}.`;
    return { owner, ownerText, ttl: 0, type: 'CNAME', rdata: [], line: names.lineAt(i), col: 1, comment: '' };
  };

  const place = (rel: string, rrs: ZoneRecord[]): void => {
    const trigger = triggerOf(rel);
    if (typeof trigger === 'string' || (trigger.kind !== 'qname' && trigger.kind !== 'wildcard')) {
      const list = others.get(rel);
      if (list) for (const r of rrs) list.push(r);
      else others.set(rel, rrs);
      return;
    }
    const wild = trigger.kind === 'wildcard';
    const hash = hashName(trigger.name);
    let i = names.find(trigger.name, wild, hash);
    if (i === -1) {
      i = names.add(trigger.name, wild, rrs[0]!.line, hash);
      data.counts[trigger.kind]++;
      if (rrs.length === 1 && compact(i, trigger, rel, rrs[0]!)) return;
      held.set(i, rrs);
      return;
    }
    // The owner again, after other owners: still one RRset (RFC 2181 §5), judged whole at the end.
    let all = held.get(i);
    if (!all) {
      all = [recall(i, rel)];
      names.setAction(i, NOT_APPLIED);
      held.set(i, all);
    }
    for (const r of rrs) all.push(r);
  };

  /** RFC 1035 §5.2: the first record; its owner is the zone's origin, its serial the version in force. */
  const soaOf = (soa: ZoneRecord): void => {
    data.origin = soa.owner;
    suffix = `.${data.origin}`;
    if (spec.zone !== undefined && soa.owner !== spec.zone) fail(soa, `expected the SOA to be owned by ${spec.zone}. (blocking.rpz zone), got ${soa.owner}.`);
    const serial = soa.rdata[2]?.text;
    if (soa.rdata.length !== 7 || !serial || !/^\d+$/.test(serial) || Number(serial) > 0xffffffff) {
      fail(soa.rdata[2] ?? soa, 'expected SOA data: primary name, contact, serial (a number up to 4294967295), refresh, retry, expire, minimum');
    } else data.serial = Number(serial);
  };

  const readProblems = readZoneFile(file, text, spec.zone, (r) => {
    if (!first) {
      first = r;
      if (r.type === 'SOA') soaOf(r);
      return;
    }
    if (first.type !== 'SOA') return;
    if (r.owner === data.origin) {
      if (r.type === 'SOA') fail(r, 'expected one SOA record; this zone already has one');
      else if (r.type !== 'NS') fail(r, `expected only SOA and NS records at the zone's origin (${data.origin}.); a ${r.type} there triggers nothing`);
      return;
    }
    if (data.origin !== '' && !r.owner.endsWith(suffix)) {
      fail(r, `expected a name under the zone's origin ${data.origin}., got ${r.owner}. (a relative name, without the trailing dot, is taken under $ORIGIN)`);
      return;
    }
    const rel = data.origin === '' ? r.owner : r.owner.slice(0, -suffix.length);
    if (group.length && rel !== groupRel) {
      place(groupRel, group);
      group = [];
    }
    groupRel = rel;
    group.push(r);
  });
  if (group.length) place(groupRel, group);
  for (const p of readProblems) problems.push(p);


  if (!first || first.type !== 'SOA') {
    // RFC 1035 §5.2: a zone file starts with its SOA; its owner is the zone's origin and its serial is the version `check` and the metrics report.
    if (!readProblems.length) fail(first ?? { line: 1, col: 1 }, 'expected the zone\'s SOA record first (its owner is the zone\'s origin, its serial the version in force)');
    return { data, problems };
  }

  for (const [i, rrs] of held) {
    const rel = data.origin === '' ? rrs[0]!.owner : rrs[0]!.owner.slice(0, -suffix.length);
    const trigger = triggerOf(rel) as Trigger;
    const judged = judgeRrset(trigger, rrs, data.origin, fail);
    if (!judged) continue;
    if ('unsupported' in judged) unsupported(rrs[0]!, judged.unsupported);
    else {
      names.setAction(i, actionCode(judged.action));
      if (judged.records) data.local.set(i, judged.records);
    }
  }
  for (const [rel, rrs] of others) {
    const trigger = triggerOf(rel);
    if (typeof trigger === 'string') {
      fail(rrs[0]!, trigger);
      continue;
    }
    data.counts[trigger.kind]++;
    const judged = judgeRrset(trigger, rrs, data.origin, fail);
    if (!judged) continue;
    if ('unsupported' in judged) unsupported(rrs[0]!, judged.unsupported);
    else if (trigger.kind === 'client-ip' || trigger.kind === 'response-ip') {
      const net = trigger.net;
      const target = trigger.kind === 'client-ip' ? data.clientIp : data.responseIp;
      addIp(net.v4 ? target.v4 : target.v6, net, data.ipRules.length);
      data.ipRules.push({ owner: rel, line: rrs[0]!.line, trigger: trigger.kind, action: judged.action, prefix: formatPrefix(net), ...(judged.records ? { records: judged.records } : {}) });
    }
  }
  data.names = names.build();
  let applied = data.ipRules.length;
  for (let i = 0; i < data.names.action.length; i++) if (data.names.action[i] !== NOT_APPLIED) applied++;
  data.applied = applied;
  // Found per record and then per RRset: reported in file order.
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  return { data, problems };
}

/** The rule of QNAME trigger `i` (names.ts), as `check`, the logs and the stage read it. */
export function nameRule(z: RpzZoneData, i: number): RpzRule {
  const records = z.local.get(i);
  return {
    owner: ownerOf(z.names, i), line: z.names.line[i]!, trigger: z.names.wild[i] ? 'wildcard' : 'qname',
    // Only applied triggers are ever looked up (findQname), and they have an action.
    action: actionOfCode(z.names.action[i]!)!, ...(records ? { records } : {}),
  };
}

/** The triggers a zone applies (NSDNAME/NSIP and unsupported actions left out): what `sinkhole_list_rules` counts. */
export function appliedRules(z: RpzZoneData): number {
  return z.applied;
}

export { parseZoneFile };
