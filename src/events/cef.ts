// The event as ArcSight Common Event Format (CEF) 0, the body SIEMs and NAC
// parsers take from DNS-security products (Infoblox reports RPZ hits this
// way). Escaping per the CEF specification ("Implementing ArcSight CEF",
// rev. 25): in the header, `\` and `|`; in the extension, `\`, `=` and line
// breaks (as \n and \r). Nothing else is escaped: spaces are legal in
// extension values, which run to the next `key=`.
import { VERSION } from '../version.js';
import type { ComplianceEvent } from './event.js';

/** Header field: backslash first, so the escapes added for `|` are not escaped again. */
export function cefHeader(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/[\r\n]+/g, ' ');
}

/** Extension value. */
export function cefValue(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/=/g, '\\=').replace(/\r\n|\n/g, '\\n').replace(/\r/g, '\\r');
}

/** Signature ID and name: what a parser's rule keys on. */
export const CEF_SIGNATURE = 'device-trying';
export const CEF_NAME = 'Device keeps asking for a blocked service';
/** CEF severity 0-10: 7 is "high" (a policy breach an operator must act on). */
const SEVERITY = 7;

/** CEF:0|sinkhole|sinkhole|VERSION|device-trying|...|7|ext (one line, no trailing newline). */
export function toCef(e: ComplianceEvent): string {
  const ext: [string, string | number | null][] = [
    ['rt', e.at],
    ['smac', e.mac],
    ['src', e.client],
    ['shost', e.hostname],
    ['destinationDnsDomain', e.name],
    ['cs1Label', 'list'],
    ['cs1', e.list],
    ['cnt', e.count],
    // CEF times are milliseconds since the epoch (or "MMM dd yyyy HH:mm:ss"); the number needs no zone.
    ['start', e.start],
    ['end', e.end],
    ['act', 'blocked'],
    ['cs2Label', 'policy'],
    ['cs2', e.policy],
    ['externalId', e.id],
    ['dvchost', e.instance],
  ];
  const body = ext
    .filter((kv): kv is [string, string | number] => kv[1] !== null && kv[1] !== '')
    .map(([k, v]) => `${k}=${cefValue(String(v))}`)
    .join(' ');
  return `CEF:0|${cefHeader('sinkhole')}|${cefHeader('sinkhole')}|${cefHeader(VERSION)}|${cefHeader(CEF_SIGNATURE)}|${cefHeader(CEF_NAME)}|${SEVERITY}|${body}`;
}
