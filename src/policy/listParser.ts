// Blocklist files: one rule per line, in the forms admins paste from other
// tools (DESIGN.md §3 "Blocklist files"):
//   tiktok.com          the domain and every name below it
//   ||tiktok.com^       the same, adblock syntax
//   0.0.0.0 tiktok.com  hosts syntax; the address is ignored
//   *.tiktok.com        names below it, not the apex
// `#` and `!` start comments. Anything else is an error at file:line:col.
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import type { Problem } from '../errors.js';

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

export type RuleSink = (domain: string, subdomainsOnly: boolean, line: number) => void;

/**
 * A lower-case plain domain, the form of nearly every line in a large list:
 * validated by one regex, with no splitting or copying (1M rules load in
 * about a second; bench/rules-load.sh).
 */
const DOMAIN = '(?:(?!-)[a-z0-9_-]{1,63}(?<!-)\\.)*(?!-)[a-z0-9_-]{1,63}(?<!-)';
const PLAIN_DOMAIN = new RegExp(`^${DOMAIN}$`);
const STICKY_DOMAIN = new RegExp(DOMAIN, 'y');

/** Parses a list, handing each rule to `onRule`; returns the problems (none when the file is good). */
export function scanList(file: string, text: string, onRule: RuleSink): Problem[] {
  const problems: Problem[] = [];
  let lineNo = 0;
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const next = end + 1;
    if (text.charCodeAt(end - 1) === 13 /* \r */) end--;
    lineNo++;
    // Fast paths for the three common lower-case forms, "name", "||name^" and "0.0.0.0 name":
    // the name is checked in place with a sticky regex, so a rule costs one string slice.
    let a = start;
    let b = end;
    let hosts = false;
    if (text.startsWith('||', a) && text.charCodeAt(b - 1) === 94 /* ^ */) {
      a += 2;
      b--;
    } else if (text.startsWith('0.0.0.0 ', a)) {
      a += 8;
      hosts = true;
    }
    const last = text.charCodeAt(b - 1);
    STICKY_DOMAIN.lastIndex = a;
    // A name ending in a digit might be an IP address, which the slow path rejects.
    if (b - a <= 253 && !(last >= 48 && last <= 57) && STICKY_DOMAIN.test(text) && STICKY_DOMAIN.lastIndex === b) {
      const name = text.slice(a, b);
      if (!hosts || !HOSTS_BOILERPLATE.has(name)) onRule(name, false, lineNo);
    } else {
      parseLine(file, text.slice(start, end), lineNo, onRule, problems);
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
  const problems = scanList(file, text, (domain, subdomainsOnly, line) => rules.push({ domain, subdomainsOnly, line }));
  return { rules, problems };
}

function parseLine(file: string, raw: string, lineNo: number, onRule: RuleSink, problems: Problem[]): void {
  // Column of the first non-blank character; comments may also follow a rule after whitespace.
  const start = raw.search(/\S/);
  if (start === -1 || raw[start] === '#' || raw[start] === '!') return;
  const body = raw.slice(start).replace(/\s+#.*$/, '').trimEnd();
  const fail = (col: number, message: string): void => {
    problems.push({ code: 'SH_LIST_SYNTAX', file, line: lineNo, col, message });
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
      if (domain) onRule(domain, false, lineNo);
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
  onRule(domain, subdomainsOnly, lineNo);
}
