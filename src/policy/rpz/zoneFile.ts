// A DNS master file (RFC 1035 §5.1), read as far as an RPZ zone needs it:
// $ORIGIN and $TTL (RFC 2308 §4), `@`, relative owner names, a blank owner
// meaning the previous one, `;` comments, parentheses that continue a record
// over several lines (the SOA), quoted strings (TXT), TTL and class in either
// order, and BIND's TTL units (1h30m). $INCLUDE and $GENERATE are refused: a
// feed that pulls other files in would be a different policy from the file
// the admin reviewed. Every problem names file:line:col and what was expected.
//
// This module only reads records; what they mean as RPZ is triggers.ts and actions.ts.
import type { Problem } from '../../errors.js';

export interface Token {
  text: string;
  line: number;
  col: number;
  /** Written between double quotes (TXT character-strings). */
  quoted: boolean;
}

export interface ZoneRecord {
  /** Absolute, lower-case, without the trailing dot; '' is the root. */
  owner: string;
  /** The owner as written on the line (or the previous line's, for a blank owner). */
  ownerText: string;
  ttl: number;
  type: string;
  rdata: Token[];
  line: number;
  col: number;
  /** The comment text on the record's lines (guard-rail markers live there). */
  comment: string;
}

export interface ZoneFile {
  records: ZoneRecord[];
  problems: Problem[];
}

/** Types an RPZ zone holds; any other is reported with the line it is on. */
export const ZONE_TYPES = new Set(['SOA', 'NS', 'A', 'AAAA', 'CNAME', 'TXT', 'DNAME', 'MX', 'PTR', 'SRV', 'HINFO', 'RRSIG', 'NSEC', 'DNSKEY', 'DS', 'NSEC3', 'NSEC3PARAM', 'ZONEMD']);
const CLASSES = new Set(['IN', 'CH', 'HS', 'CS']);
/** Problems reported per file at most: a binary file saved as a zone would print a line per byte. */
const MAX_PROBLEMS = 50;

/** RFC 2308 §4 and BIND's units: 3600, 1h, 1d12h, 2w. undefined when not a TTL. */
export function parseTtl(text: string): number | undefined {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return n <= 0x7fffffff ? n : undefined;
  }
  const m = /^(?:\d+[smhdwSMHDW])+$/.exec(text);
  if (!m) return undefined;
  const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  let total = 0;
  for (const part of text.matchAll(/(\d+)([smhdw])/gi)) total += Number(part[1]) * unit[part[2]!.toLowerCase()]!;
  return total <= 0x7fffffff ? total : undefined;
}

/**
 * A domain name as text, relative to `origin` unless it ends with a dot;
 * lower-cased, without the trailing dot ('' = the root). undefined when it is
 * not a name: RPZ owners are host names, `*` wildcards and the rpz-* labels,
 * so escapes (\DDD, \.) are refused rather than half-understood.
 */
export function absoluteName(text: string, origin: string | undefined): string | undefined {
  if (text === '@') return origin;
  if (text === '.') return '';
  if (!/^(?:[A-Za-z0-9_*-]{1,63}\.)*[A-Za-z0-9_*-]{1,63}\.?$/.test(text)) return undefined;
  const lower = text.toLowerCase();
  if (lower.endsWith('.')) return lower.slice(0, -1);
  if (origin === undefined) return undefined;
  const name = origin === '' ? lower : `${lower}.${origin}`;
  // RFC 1035 §2.3.4: at most 255 octets on the wire, which is 253 characters of text.
  return name.length <= 253 ? name : undefined;
}

const SPACE = 0x20;
const TAB = 0x09;
const BACKSLASH = 0x5c;
/** Characters that end an unquoted token (RFC 1035 §5.1): blanks, comment, parentheses, quote. A table, as this runs per character of a big feed. */
const ENDS_TOKEN = new Uint8Array(128);
for (const c of ' \t;()"') ENDS_TOKEN[c.charCodeAt(0)] = 1;

interface Entry {
  tokens: Token[];
  /** Whether the first token began in column 1 (an owner name) rather than after blanks. */
  ownerGiven: boolean;
  line: number;
  comment: string;
  /** The tokenizer already reported a problem in it: nothing more is said about it. */
  broken?: boolean;
}

/**
 * Splits the text into entries: one per record, its tokens with their
 * positions, joined across lines inside parentheses (RFC 1035 §5.1).
 */
function* entries(file: string, text: string, problems: Problem[]): Generator<Entry> {
  // One entry at a time, one line at a time: a million-record feed held whole as lines, then as
  // tokens, took over 1 GB at its peak (bench/run.sh RPZ_RECORDS).
  let current: Entry | undefined;
  let depth = 0;
  let depthAt = { line: 0, col: 0 };
  for (let i = 0, from = 0; from <= text.length; i++) {
    const nl = text.indexOf('\n', from);
    const end = nl === -1 ? text.length : nl;
    let raw = text.slice(from, end);
    from = end + 1;
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    if (i === 0) raw = raw.replace(/^\uFEFF/, '');
    const lineNo = i + 1;
    if (depth === 0) {
      if (current && current.tokens.length) yield current;
      current = { tokens: [], ownerGiven: raw.length > 0 && raw.charCodeAt(0) !== SPACE && raw.charCodeAt(0) !== TAB, line: lineNo, comment: '' };
    }
    const entry = current!;
    let j = 0;
    while (j < raw.length) {
      const code = raw.charCodeAt(j);
      if (code === SPACE || code === TAB) {
        j++;
        continue;
      }
      const c = raw[j]!;
      if (c === ';') {
        entry.comment += raw.slice(j + 1);
        break;
      } else if (c === '(') {
        if (depth === 0) depthAt = { line: lineNo, col: j + 1 };
        depth++;
        j++;
      } else if (c === ')') {
        if (depth === 0) problems.push({ code: 'SH_RPZ_SYNTAX', file, line: lineNo, col: j + 1, message: 'expected "(" before this ")"' });
        else depth--;
        j++;
      } else if (c === '"') {
        let k = j + 1;
        let s = '';
        while (k < raw.length && raw[k] !== '"') {
          if (raw[k] === '\\' && k + 1 < raw.length) k++;
          s += raw[k];
          k++;
        }
        if (k >= raw.length) {
          problems.push({ code: 'SH_RPZ_SYNTAX', file, line: lineNo, col: j + 1, message: 'expected a closing " on the same line' });
          entry.broken = true;
          break;
        }
        entry.tokens.push({ text: s, line: lineNo, col: j + 1, quoted: true });
        j = k + 1;
      } else {
        let k = j;
        for (let ch = raw.charCodeAt(k); k < raw.length && !ENDS_TOKEN[ch]; ch = raw.charCodeAt(k)) k += ch === BACKSLASH ? 2 : 1;
        entry.tokens.push({ text: raw.slice(j, k), line: lineNo, col: j + 1, quoted: false });
        j = k;
      }
    }
  }
  if (current && current.tokens.length) yield current;
  if (depth > 0) problems.push({ code: 'SH_RPZ_SYNTAX', file, line: depthAt.line, col: depthAt.col, message: 'expected ")" to close this "(" before the end of the file' });
}

/** Reads a master file. `origin` is the name relative owners start from until a $ORIGIN (none: they need one). */
export function parseZoneFile(file: string, text: string, origin?: string): ZoneFile {
  const records: ZoneRecord[] = [];
  const problems = readZoneFile(file, text, origin, (r) => records.push(r));
  return { records, problems };
}

/**
 * Reads a master file a record at a time, handing each to `onRecord` in file
 * order; returns the problems. A caller that keeps only what it needs of each
 * record never holds the whole zone as objects (a 1M-record zone's records
 * were most of its 882 MB compile peak, bench/RESULTS.md issue 21).
 */
export function readZoneFile(file: string, text: string, origin: string | undefined, onRecord: (r: ZoneRecord) => void): Problem[] {
  const problems: Problem[] = [];
  const fail = (at: { line: number; col: number }, message: string): void => {
    problems.push({ code: 'SH_RPZ_SYNTAX', file, line: at.line, col: at.col, message });
  };
  let defaultTtl: number | undefined;
  let lastTtl: number | undefined;
  let previous: { owner: string; text: string } | undefined;
  for (const e of entries(file, text, problems)) {
    if (problems.length > MAX_PROBLEMS) break;
    if (e.broken) continue;
    const t = e.tokens;
    const first = t[0]!;
    if (e.ownerGiven && first.text.startsWith('$')) {
      const directive = first.text.toUpperCase();
      if (directive === '$ORIGIN') {
        const name = t[1] && !t[1].quoted ? absoluteName(t[1].text, origin) : undefined;
        if (t.length !== 2 || name === undefined) fail(t[1] ?? first, `expected $ORIGIN and one domain name ending in a dot, like "$ORIGIN rpz.example."`);
        else origin = name;
      } else if (directive === '$TTL') {
        const ttl = t[1] ? parseTtl(t[1].text) : undefined;
        if (t.length !== 2 || ttl === undefined) fail(t[1] ?? first, 'expected $TTL and one TTL in seconds or with units, like "$TTL 300" or "$TTL 1h"');
        else defaultTtl = ttl;
      } else {
        fail(first, `expected $ORIGIN or $TTL; ${first.text} is not supported (an RPZ zone is read from this one file)`);
      }
      continue;
    }
    let i = 0;
    let owner: { owner: string; text: string } | undefined;
    if (e.ownerGiven) {
      const name = absoluteName(first.text, origin);
      if (name === undefined) {
        fail(first, origin === undefined && first.text !== '.' && !first.text.endsWith('.') && /^[\w*.-]+$/.test(first.text)
          ? `expected $ORIGIN before the relative name "${first.text}" (or write it with a trailing dot)`
          : `expected an owner name (a domain name, @, or a *. wildcard), got "${first.text}"`);
        continue;
      }
      owner = { owner: name, text: first.text };
      i = 1;
    } else {
      owner = previous;
      if (!owner) {
        fail(first, 'expected an owner name in column 1: this record has none, and there is no record before it');
        continue;
      }
    }
    previous = owner;
    let ttl: number | undefined;
    // RFC 1035 §5.1: [TTL] [class] or [class] [TTL], both optional, before the type.
    for (let k = 0; k < 2 && i < t.length; k++) {
      const tok = t[i]!.text;
      const c0 = tok.charCodeAt(0);
      if (ttl === undefined && c0 >= 0x30 && c0 <= 0x39) {
        ttl = parseTtl(tok);
        if (ttl === undefined) {
          fail(t[i]!, `expected a TTL (seconds, or with units like 1h), got "${tok}"`);
          ttl = -1;
        }
        i++;
      } else if (tok.length === 2 && CLASSES.has(tok.toUpperCase())) {
        if (tok.toUpperCase() !== 'IN') fail(t[i]!, `expected class IN, got ${tok}: an RPZ zone is class IN`);
        i++;
      }
    }
    if (ttl === -1) continue;
    const typeTok = t[i];
    if (!typeTok) {
      fail(first, 'expected a record type (A, AAAA, CNAME, TXT, SOA...) after the owner');
      continue;
    }
    const type = typeTok.text.toUpperCase();
    if (!ZONE_TYPES.has(type)) {
      fail(typeTok, `expected a record type such as SOA, NS, CNAME, A, AAAA or TXT, got "${typeTok.text}"`);
      continue;
    }
    // RFC 2308 §4: without $TTL the SOA's MINIMUM was the default; later records inherit the last TTL.
    const useTtl = ttl ?? defaultTtl ?? lastTtl;
    if (useTtl === undefined && type !== 'SOA') {
      fail(typeTok, 'expected a TTL: give this record one, or put "$TTL 300" at the top of the file');
      continue;
    }
    const rdata = t.slice(i + 1);
    if (!rdata.length) {
      fail(typeTok, `expected the ${type} record's data after its type`);
      continue;
    }
    let recordTtl = useTtl ?? 0;
    if (type === 'SOA' && useTtl === undefined) recordTtl = parseTtl(rdata[6]?.text ?? '') ?? 0;
    lastTtl = recordTtl;
    onRecord({ owner: owner.owner, ownerText: owner.text, ttl: recordTtl, type, rdata, line: e.ownerGiven ? first.line : typeTok.line, col: e.ownerGiven ? first.col : typeTok.col, comment: e.comment });
  }
  // The tokenizer's problems and the records' were found in two passes: report them in file order.
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  if (problems.length > MAX_PROBLEMS) {
    const rest = problems.length - MAX_PROBLEMS;
    problems.length = MAX_PROBLEMS;
    problems.push({ ...problems[MAX_PROBLEMS - 1]!, message: `...and more problems in this file (${rest} after these were found before reading stopped)` });
  }
  return problems;
}
