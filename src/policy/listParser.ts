// Blocklist files: one rule per line, in the forms admins paste from other
// tools (docs/blocklists.md):
//   tiktok.com          the domain and every name below it
//   ||tiktok.com^       the same, adblock syntax
//   0.0.0.0 tiktok.com  hosts syntax; the address is ignored
//   *.tiktok.com        names below it, not the apex
// `#` and `!` start comments. Anything else is an error at file:line:col.
// A rule that is a public suffix (com, co.uk, github.io) is refused unless its
// line says `# sinkhole:allow-public-suffix` (publicSuffix.ts).
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import type { Problem } from '../errors.js';
import {
  ALLOW_SUFFIX_MARKER, isPublicSuffix, mayBePublicSuffix, publicSuffixMessage, SUFFIX_HASH_PRIME, SUFFIX_HASH_SEED,
} from './publicSuffix.js';

export interface Rule {
  /** Lower-case ASCII (punycode for IDNs), without a trailing dot. */
  domain: string;
  /** `*.x`: only names strictly below x. */
  subdomainsOnly: boolean;
  line: number;
}

/** Hosts-file boilerplate names that are never rules (Pi-hole skips them too). */
const HOSTS_BOILERPLATE = new Set(['localhost', 'localhost.localdomain', 'local', 'broadcasthost', 'ip6-localhost', 'ip6-loopback', '0.0.0.0']);

/** Normalises a domain (IDN → punycode, lower case, no trailing dot); undefined when invalid. */
export function toRuleDomain(text: string): string | undefined {
  let d = text.endsWith('.') ? text.slice(0, -1) : text;
  if (/[^\x00-\x7f]/.test(d)) d = domainToASCII(d);
  d = d.toLowerCase();
  if (!d || d.length > 253 || isIP(d)) return undefined;
  return PLAIN_DOMAIN.test(d) ? d : undefined;
}

export interface RuleSink {
  /** A rule from the slow path, as a normalised string. */
  rule(domain: string, subdomainsOnly: boolean, line: number): void;
  /** A plain rule from the fast path: bytes a..b of `buf`, already valid lower-case ASCII. */
  ruleBytes(buf: Buffer, a: number, b: number, line: number): void;
}

const PLAIN_DOMAIN = /^(?:(?!-)[a-z0-9_-]{1,63}(?<!-)\.)*(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Set by plainDomainLabels: the SUFFIX hash of the name and of its parent (publicSuffix.ts). */
let nameHash = 0;
let parentHash = 0;

/**
 * How many labels bytes a..b have if they are a lower-case plain domain (the
 * PLAIN_DOMAIN rule, checked byte by byte) not ending in a digit (it might be
 * an IP address); 0 if they are not one. The same loop hashes the name and
 * its parent for the public-suffix filter.
 */
function plainDomainLabels(buf: Buffer, a: number, b: number): number {
  if (b <= a || b - a > 253) return 0;
  let label = 0;
  let labels = 1;
  let prev = DOT;
  let h = SUFFIX_HASH_SEED;
  let ph = SUFFIX_HASH_SEED;
  for (let i = a; i < b; i++) {
    const c = buf[i]!;
    h = Math.imul(h ^ c, SUFFIX_HASH_PRIME);
    if (labels > 1) ph = Math.imul(ph ^ c, SUFFIX_HASH_PRIME);
    if (c === DOT) {
      if (label === 0 || prev === HYPHEN) return 0;
      label = 0;
      labels++;
    } else if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 95 || (c === HYPHEN && label > 0)) {
      if (++label > 63) return 0;
    } else {
      return 0;
    }
    prev = c;
  }
  nameHash = h;
  parentHash = ph;
  return label > 0 && prev !== HYPHEN && !(prev >= 48 && prev <= 57) ? labels : 0;
}

const DOT = 46;
const HYPHEN = 45;
const NEWLINE = 10;
const HOSTS_PREFIX = Buffer.from('0.0.0.0 ');

/**
 * Parses a list file's bytes, handing each rule to `sink`; returns the
 * problems (none when the file is good). The three common lower-case forms —
 * "name", "||name^" and "0.0.0.0 name" — are checked in place on the bytes
 * and copied straight into the matcher, so a million-rule list never becomes
 * a million strings (bench/rules-load.sh). Any other line is decoded as UTF-8
 * and parsed in full.
 */
export function scanList(file: string, buf: Buffer, sink: RuleSink): Problem[] {
  const problems: Problem[] = [];
  let lineNo = 0;
  for (let start = 0; start < buf.length; ) {
    let end = buf.indexOf(NEWLINE, start);
    if (end === -1) end = buf.length;
    const next = end + 1;
    if (end > start && buf[end - 1] === 13 /* \r */) end--;
    lineNo++;
    let a = start;
    let b = end;
    let hosts = false;
    if (buf[a] === 124 && buf[a + 1] === 124 && buf[b - 1] === 94 /* ||...^ */) {
      a += 2;
      b--;
    } else if (b - a > 8 && buf.compare(HOSTS_PREFIX, 0, 8, a, a + 8) === 0) {
      a += 8;
      hosts = true;
    }
    const labels = plainDomainLabels(buf, a, b);
    if (labels) {
      if (hosts && b - a <= 21 && HOSTS_BOILERPLATE.has(buf.toString('latin1', a, b))) {
        // "0.0.0.0 localhost": hosts-file boilerplate, not a rule.
      } else if (mayBePublicSuffix(labels, nameHash, parentHash) && isPublicSuffix(buf.toString('latin1', a, b))) {
        // A fast-path line has no comment, so it cannot carry the marker.
        problems.push({ code: 'SH_LIST_PUBLIC_SUFFIX', file, line: lineNo, col: a - start + 1, message: publicSuffixMessage(buf.toString('latin1', a, b)) });
      } else {
        sink.ruleBytes(buf, a, b, lineNo);
      }
    } else {
      // A UTF-8 byte order mark is not part of the first line (editors on Windows add one).
      const line = buf.toString('utf8', start, end);
      parseLine(file, lineNo === 1 ? line.replace(/^\uFEFF/, '') : line, lineNo, sink, problems);
    }
    start = next;
  }
  if (problems.length > MAX_PROBLEMS) {
    // A binary or HTML file saved as a list would otherwise print a million lines.
    const rest = problems.length - MAX_PROBLEMS;
    problems.length = MAX_PROBLEMS;
    problems.push({ ...problems[MAX_PROBLEMS - 1]!, message: `...and ${rest} more problems in this file` });
  }
  return problems;
}

const MAX_PROBLEMS = 50;

/** The whole list as Rule objects (for tests and tools; the server uses scanList). */
export function parseList(file: string, text: string): { rules: Rule[]; problems: Problem[] } {
  const rules: Rule[] = [];
  const problems = scanList(file, Buffer.from(text, 'utf8'), {
    rule: (domain, subdomainsOnly, line) => rules.push({ domain, subdomainsOnly, line }),
    ruleBytes: (b, from, to, line) => rules.push({ domain: b.toString('latin1', from, to), subdomainsOnly: false, line }),
  });
  return { rules, problems };
}

function parseLine(file: string, raw: string, lineNo: number, sink: RuleSink, problems: Problem[]): void {
  // Column of the first non-blank character; comments may also follow a rule after whitespace.
  const start = raw.search(/\S/);
  if (start === -1 || raw[start] === '#' || raw[start] === '!') return;
  const comment = /\s#.*$/.exec(raw.slice(start));
  const body = (comment ? raw.slice(start, start + comment.index) : raw.slice(start)).trimEnd();
  const allowSuffix = comment !== null && comment[0].includes(ALLOW_SUFFIX_MARKER);
  const fail = (col: number, message: string): void => {
    problems.push({ code: 'SH_LIST_SYNTAX', file, line: lineNo, col, message });
  };
  /** Hands a rule on, unless it is a public suffix whose line does not say it is meant. */
  const rule = (domain: string, subdomainsOnly: boolean, col: number): void => {
    if (!allowSuffix && isPublicSuffix(domain)) {
      problems.push({ code: 'SH_LIST_PUBLIC_SUFFIX', file, line: lineNo, col, message: publicSuffixMessage(domain) });
    } else sink.rule(domain, subdomainsOnly, lineNo);
  };
  const tokens = body.split(/\s+/);
  let col = start + 1;
  if (tokens.length > 1) {
    // hosts syntax: ADDRESS NAME [NAME...]
    if (!isIP(tokens[0]!)) {
      fail(col, `expected one rule per line (a domain, ||domain^, *.domain, or "0.0.0.0 domain"), got "${body}"`);
      return;
    }
    let off = start + tokens[0]!.length;
    for (const name of tokens.slice(1)) {
      off = raw.indexOf(name, off);
      if (HOSTS_BOILERPLATE.has(name.toLowerCase())) continue;
      const domain = toRuleDomain(name);
      if (domain) rule(domain, false, off + 1);
      else fail(off + 1, `expected a domain name after the address, got "${name}"`);
      off += name.length;
    }
    return;
  }
  let token = tokens[0]!;
  let subdomainsOnly = false;
  if (token.startsWith('||')) {
    if (!token.endsWith('^')) {
      fail(col, `expected adblock syntax ||domain^ (modifiers such as $important are not supported), got "${token}"`);
      return;
    }
    token = token.slice(2, -1);
    col += 2;
  } else if (token.startsWith('*.')) {
    subdomainsOnly = true;
    token = token.slice(2);
    col += 2;
  }
  const domain = toRuleDomain(token);
  if (!domain) {
    fail(col, `expected a domain name like tiktok.com, got "${token}"`);
    return;
  }
  rule(domain, subdomainsOnly, col);
}
