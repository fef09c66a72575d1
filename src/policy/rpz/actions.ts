// What an RPZ trigger does: the RRset at its owner name
// (draft-vixie-dnsop-dns-rpz §4).
//   CNAME .              NXDOMAIN (§4.1)
//   CNAME *.             NODATA (§4.2)
//   CNAME rpz-passthru.  no rewrite; stops the search in later zones (§4.3)
//   CNAME rpz-drop.      no answer at all (§4.4)
//   CNAME rpz-tcp-only.  over UDP a truncated reply, so the client retries over TCP; over TCP, no rewrite (§4.5)
//   anything else        local data, answered as written (§4.6): A, AAAA, TXT, or one CNAME to a walled garden
// `CNAME *.garden.example.` (the qname grafted onto another domain, §4.6) is
// counted as unsupported and not applied, as NSDNAME/NSIP triggers are.
import { isIPv4, isIPv6 } from 'node:net';
import { addressBytes } from '../../net/cidr.js';
import { TYPE } from '../../dns/constants.js';
import { absoluteName, type Token, type ZoneRecord } from './zoneFile.js';

export type RpzAction = 'nxdomain' | 'nodata' | 'passthru' | 'drop' | 'tcp-only' | 'local';
export const RPZ_ACTIONS: readonly RpzAction[] = ['nxdomain', 'nodata', 'passthru', 'drop', 'tcp-only', 'local'];

/** One local-data record: its type and RDATA in wire form (names uncompressed). */
export interface LocalRecord {
  type: number;
  rdata: Uint8Array;
}

export type ActionOf = { action: Exclude<RpzAction, 'local'> } | { action: 'local'; records: LocalRecord[] } | { unsupported: string };

/** A problem with one record of the RRset: where, and what was expected. */
export interface ActionProblem {
  at: Token | ZoneRecord;
  message: string;
}

const SPECIAL: Record<string, Exclude<RpzAction, 'local'>> = { '': 'nxdomain', '*': 'nodata', 'rpz-passthru': 'passthru', 'rpz-drop': 'drop', 'rpz-tcp-only': 'tcp-only' };

export function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])), Buffer.from([0])]);
}


/**
 * The action of the RRset `rrs` (every record at one owner), with `origin`
 * for relative CNAME targets; or the problems that make it no action.
 */
export function actionOf(rrs: readonly ZoneRecord[], origin: string): ActionOf | ActionProblem[] {
  const problems: ActionProblem[] = [];
  const cnames = rrs.filter((r) => r.type === 'CNAME');
  if (cnames.length) {
    // RFC 1034 §3.6.2 (and RFC 2181 §10.1): a CNAME is the only record at its name.
    if (rrs.length > 1) return [{ at: rrs.find((r) => r.type !== 'CNAME') ?? rrs[1]!, message: `expected one CNAME alone at ${rrs[0]!.ownerText}: a CNAME action cannot be combined with other records (RFC 1034 §3.6.2)` }];
    const tok = cnames[0]!.rdata;
    if (tok.length !== 1) return [{ at: tok[1] ?? cnames[0]!, message: 'expected one target name after CNAME' }];
    const target = absoluteName(tok[0]!.text, origin);
    if (target === undefined) return [{ at: tok[0]!, message: `expected a CNAME target such as ".", "*.", "rpz-passthru.", "rpz-drop.", "rpz-tcp-only." or a host name, got "${tok[0]!.text}"` }];
    const special = SPECIAL[target];
    if (special) return { action: special };
    if (target.startsWith('*.')) return { unsupported: 'CNAME to a *. name (the query name grafted onto another domain)' };
    if (target.includes('*')) return [{ at: tok[0]!, message: `expected "*" only as "*." or the first label of the CNAME target, got "${tok[0]!.text}"` }];
    return { action: 'local', records: [{ type: TYPE.CNAME, rdata: encodeName(target) }] };
  }
  const records: LocalRecord[] = [];
  for (const r of rrs) {
    const d = r.rdata;
    if (r.type === 'A' || r.type === 'AAAA') {
      const v4 = r.type === 'A';
      if (d.length !== 1 || !(v4 ? isIPv4(d[0]!.text) : isIPv6(d[0]!.text))) {
        problems.push({ at: d[0] ?? r, message: `expected one ${v4 ? 'IPv4 address like 192.0.2.1' : 'IPv6 address like 2001:db8::1'} after ${r.type}, got "${d.map((x) => x.text).join(' ')}"` });
      } else records.push({ type: v4 ? TYPE.A : TYPE.AAAA, rdata: addressBytes(d[0]!.text, v4)! });
    } else if (r.type === 'TXT') {
      // RFC 1035 §3.3.14: one or more character-strings of at most 255 bytes each.
      const strings = d.map((x) => Buffer.from(x.text, 'utf8'));
      const long = strings.findIndex((s) => s.length > 255);
      if (long !== -1) problems.push({ at: d[long]!, message: `expected TXT strings of at most 255 bytes each, got ${strings[long]!.length}` });
      else records.push({ type: TYPE.TXT, rdata: Buffer.concat(strings.flatMap((s) => [Buffer.from([s.length]), s])) });
    } else {
      problems.push({ at: r, message: `expected local data of type A, AAAA or TXT, or one CNAME (an RPZ action); got ${r.type}` });
    }
  }
  return problems.length ? problems : { action: 'local', records };
}
