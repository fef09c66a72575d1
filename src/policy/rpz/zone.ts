// One RPZ zone file compiled into plain data (it crosses to the query threads
// with the rest of the generation, policy/generation.ts): its SOA serial, and
// its rules indexed by trigger. The guard rails are the lists' own
// (README "Blocklists"): a wildcard over a public suffix and a response-IP
// prefix wider than a provider's are refused unless the record's line says
// they are meant, and a zone with no triggers is taken for a truncated feed.
import type { Problem } from '../../errors.js';
import { ALLOW_SUFFIX_MARKER, isPublicSuffix, publicSuffixMessage } from '../publicSuffix.js';
import { actionOf, type LocalRecord, type RpzAction } from './actions.js';
import { formatPrefix, triggerOf, type IpPrefix, type TriggerKind } from './triggers.js';
import { parseZoneFile, type ZoneRecord } from './zoneFile.js';

export type RpzOverride = 'none' | 'nxdomain' | 'nodata' | 'passthru' | 'drop' | 'disabled';
export const RPZ_OVERRIDES: readonly RpzOverride[] = ['none', 'nxdomain', 'nodata', 'passthru', 'drop', 'disabled'];
export const TRIGGER_KINDS: readonly TriggerKind[] = ['qname', 'wildcard', 'client-ip', 'response-ip', 'nsdname', 'nsip'];

/** Marker for a response-IP prefix wider than WIDE_PREFIX, on the record's line. */
export const ALLOW_WIDE_MARKER = 'sinkhole:allow-wide-prefix';
/** IPv4 shorter than /8 or IPv6 shorter than /32 is more than any one network's allocation. */
export const WIDE_PREFIX = { v4: 8, v6: 32 };

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

/** Longest-prefix lookup: prefix lengths present (longest first), and `${prefix}/${network in hex}` → rule index. */
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
  rules: RpzRule[];
  qname: Map<string, number>;
  wildcard: Map<string, number>;
  clientIp: { v4: IpIndex; v6: IpIndex };
  responseIp: { v4: IpIndex; v6: IpIndex };
  /** Triggers per kind (one per owner name), NSDNAME/NSIP included. */
  counts: Record<TriggerKind, number>;
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

/** Compiles a zone file's text; the problems are empty when it is good. */
export function compileZone(spec: ZoneSpec, text: string): { data: RpzZoneData; problems: Problem[] } {
  const { file } = spec;
  const parsed = parseZoneFile(file, text, spec.zone);
  const problems: Problem[] = [...parsed.problems];
  const fail = (at: { line: number; col: number }, message: string, code: Problem['code'] = 'SH_RPZ_SYNTAX'): void => {
    problems.push({ code, file, line: at.line, col: at.col, message });
  };
  const data: RpzZoneData = {
    name: spec.name, file, origin: '', serial: 0, override: spec.override, rules: [], qname: new Map(), wildcard: new Map(),
    clientIp: { v4: emptyIndex(), v6: emptyIndex() }, responseIp: { v4: emptyIndex(), v6: emptyIndex() },
    counts: { qname: 0, wildcard: 0, 'client-ip': 0, 'response-ip': 0, nsdname: 0, nsip: 0 }, unsupported: 0,
  };
  const soa = parsed.records[0];
  if (!soa || soa.type !== 'SOA') {
    // RFC 1035 §5.2: a zone file starts with its SOA; its owner is the zone's origin and its serial is the version `check` and the metrics report.
    if (!parsed.problems.length) fail(soa ?? { line: 1, col: 1 }, 'expected the zone\'s SOA record first (its owner is the zone\'s origin, its serial the version in force)');
    return { data, problems };
  }
  data.origin = soa.owner;
  if (spec.zone !== undefined && soa.owner !== spec.zone) fail(soa, `expected the SOA to be owned by ${spec.zone}. (blocking.rpz zone), got ${soa.owner}.`);
  const serial = soa.rdata[2]?.text;
  if (soa.rdata.length !== 7 || !serial || !/^\d+$/.test(serial) || Number(serial) > 0xffffffff) {
    fail(soa.rdata[2] ?? soa, 'expected SOA data: primary name, contact, serial (a number up to 4294967295), refresh, retry, expire, minimum');
  } else data.serial = Number(serial);
  // Records at one owner form one RRset, wherever they are written (RFC 2181 §5).
  const byOwner = new Map<string, ZoneRecord[]>();
  const suffix = `.${data.origin}`;
  for (const r of parsed.records.slice(1)) {
    if (r.owner === data.origin) {
      if (r.type === 'SOA') fail(r, 'expected one SOA record; this zone already has one');
      else if (r.type !== 'NS') fail(r, `expected only SOA and NS records at the zone's origin (${data.origin}.); a ${r.type} there triggers nothing`);
      continue;
    }
    if (data.origin !== '' && !r.owner.endsWith(suffix)) {
      fail(r, `expected a name under the zone's origin ${data.origin}., got ${r.owner}. (a relative name, without the trailing dot, is taken under $ORIGIN)`);
      continue;
    }
    const rel = data.origin === '' ? r.owner : r.owner.slice(0, -suffix.length);
    const list = byOwner.get(rel);
    if (list) list.push(r);
    else byOwner.set(rel, [r]);
  }
  for (const [rel, rrs] of byOwner) {
    const first = rrs[0]!;
    const trigger = triggerOf(rel);
    if (typeof trigger === 'string') {
      fail(first, trigger);
      continue;
    }
    data.counts[trigger.kind]++;
    const action = actionOf(rrs, data.origin);
    if (Array.isArray(action)) {
      for (const p of action) fail(p.at, p.message);
      continue;
    }
    // A forwarder never sees the NS records of the answer's delegation (README "RPZ"): accepted, counted, not applied.
    const unsupported = trigger.kind === 'nsdname' || trigger.kind === 'nsip' ? `${trigger.kind.toUpperCase()} trigger` : 'unsupported' in action ? action.unsupported : undefined;
    if (unsupported !== undefined) {
      data.unsupported++;
      data.firstUnsupported ??= { line: first.line, col: first.col, what: unsupported };
      continue;
    }
    if (!('action' in action)) continue;
    const marked = (marker: string): boolean => rrs.some((r) => r.comment.includes(marker));
    const rule: RpzRule = { owner: rel, line: first.line, trigger: trigger.kind, action: action.action, ...(action.action === 'local' ? { records: action.records } : {}) };
    const index = data.rules.length;
    if (trigger.kind === 'qname') data.qname.set(trigger.name, index);
    else if (trigger.kind === 'wildcard') {
      // The lists' guard rail (README "Blocklists"): *.com would rewrite every name under com.
      if (isPublicSuffix(trigger.name) && !marked(ALLOW_SUFFIX_MARKER)) {
        fail(first, `${publicSuffixMessage(trigger.name).replace('"# sinkhole:allow-public-suffix"', '"; sinkhole:allow-public-suffix"')}`, 'SH_LIST_PUBLIC_SUFFIX');
        continue;
      }
      data.wildcard.set(trigger.name, index);
    } else if (trigger.kind === 'client-ip' || trigger.kind === 'response-ip') {
      const net = trigger.net;
      rule.prefix = formatPrefix(net);
      if (trigger.kind === 'response-ip' && net.prefix < (net.v4 ? WIDE_PREFIX.v4 : WIDE_PREFIX.v6) && !marked(ALLOW_WIDE_MARKER)) {
        fail(first, `${rule.prefix} is wider than any one network's allocation (IPv4 /${WIDE_PREFIX.v4}, IPv6 /${WIDE_PREFIX.v6}): it would rewrite answers from much of the internet. If that is really meant, end the line with "; ${ALLOW_WIDE_MARKER}"`);
        continue;
      }
      const target = trigger.kind === 'client-ip' ? data.clientIp : data.responseIp;
      addIp(net.v4 ? target.v4 : target.v6, net, index);
    }
    data.rules.push(rule);
  }
  // Found per record and then per RRset: reported in file order.
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  return { data, problems };
}

/** The triggers a zone applies (NSDNAME/NSIP and unsupported actions left out): what `sinkhole_list_rules` counts. */
export function appliedRules(z: RpzZoneData): number {
  return z.rules.length;
}

export { parseZoneFile };
