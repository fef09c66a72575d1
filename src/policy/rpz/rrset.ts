// What the RRset at one owner of an RPZ zone does, given the trigger its owner
// name makes (triggers.ts): its action (actions.ts), or "counted but not
// applied", or nothing because of a problem. The guard rails are the lists'
// own (docs/blocklists.md): a wildcard over a public suffix and a response-IP
// prefix wider than a provider's are refused unless a record's line says they
// are meant.
import { ALLOW_SUFFIX_MARKER, isPublicSuffix, publicSuffixMessage } from '../publicSuffix.js';
import { actionOf, type LocalRecord, type RpzAction } from './actions.js';
import { formatPrefix, type Trigger } from './triggers.js';
import type { ZoneRecord } from './zoneFile.js';

/** Marker for a response-IP prefix wider than WIDE_PREFIX, on the record's line. */
export const ALLOW_WIDE_MARKER = 'sinkhole:allow-wide-prefix';
/** IPv4 shorter than /8 or IPv6 shorter than /32 is more than any one network's allocation. */
export const WIDE_PREFIX = { v4: 8, v6: 32 };

export type Judged = { action: RpzAction; records?: LocalRecord[] } | { unsupported: string };

export type Fail = (at: { line: number; col: number }, message: string, code?: 'SH_RPZ_SYNTAX' | 'SH_LIST_PUBLIC_SUFFIX') => void;

/** The outcome of `rrs` (every record at one owner, RFC 2181 §5) under `trigger`; undefined after reporting its problems to `fail`. */
export function judgeRrset(trigger: Trigger, rrs: readonly ZoneRecord[], origin: string, fail: Fail): Judged | undefined {
  const first = rrs[0]!;
  const action = actionOf(rrs, origin);
  if (Array.isArray(action)) {
    for (const p of action) fail(p.at, p.message);
    return undefined;
  }
  // A forwarder never sees the NS records of the answer's delegation (docs/rpz.md): accepted, counted, not applied.
  if (trigger.kind === 'nsdname' || trigger.kind === 'nsip') return { unsupported: `${trigger.kind.toUpperCase()} trigger` };
  if ('unsupported' in action) return action;
  const marked = (marker: string): boolean => rrs.some((r) => r.comment.includes(marker));
  // The lists' guard rail (docs/blocklists.md): *.com would rewrite every name under com.
  if (trigger.kind === 'wildcard' && isPublicSuffix(trigger.name) && !marked(ALLOW_SUFFIX_MARKER)) {
    fail(first, `${publicSuffixMessage(trigger.name).replace('"# sinkhole:allow-public-suffix"', '"; sinkhole:allow-public-suffix"')}`, 'SH_LIST_PUBLIC_SUFFIX');
    return undefined;
  }
  if (trigger.kind === 'response-ip') {
    const net = trigger.net;
    if (net.prefix < (net.v4 ? WIDE_PREFIX.v4 : WIDE_PREFIX.v6) && !marked(ALLOW_WIDE_MARKER)) {
      fail(first, `${formatPrefix(net)} is wider than any one network's allocation (IPv4 /${WIDE_PREFIX.v4}, IPv6 /${WIDE_PREFIX.v6}): it would rewrite answers from much of the internet. If that is really meant, end the line with "; ${ALLOW_WIDE_MARKER}"`);
      return undefined;
    }
  }
  return action;
}
