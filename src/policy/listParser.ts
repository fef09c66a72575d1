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

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Normalises a domain (IDN → punycode, lower case, no trailing dot); undefined when invalid. */
export function toRuleDomain(text: string): string | undefined {
  let d = text.endsWith('.') ? text.slice(0, -1) : text;
  if (/[^\x00-\x7f]/.test(d)) d = domainToASCII(d);
  d = d.toLowerCase();
  if (!d || d.length > 253 || isIP(d)) return undefined;
  const labels = d.split('.');
  if (labels.length < 1 || !labels.every((l) => LABEL.test(l))) return undefined;
  return d;
}

export function parseList(file: string, text: string): { rules: Rule[]; problems: Problem[] } {
  const rules: Rule[] = [];
  const problems: Problem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, '');
    const lineNo = i + 1;
    // Column of the first non-blank character; comments may also follow a rule after whitespace.
    const start = raw.search(/\S/);
    if (start === -1 || raw[start] === '#' || raw[start] === '!') continue;
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
        continue;
      }
      let off = start + tokens[0]!.length;
      for (const name of tokens.slice(1)) {
        off = raw.indexOf(name, off);
        if (HOSTS_BOILERPLATE.has(name.toLowerCase())) continue;
        const domain = toRuleDomain(name);
        if (domain) rules.push({ domain, subdomainsOnly: false, line: lineNo });
        else fail(off + 1, `expected a domain name after the address, got "${name}"`);
        off += name.length;
      }
      continue;
    }
    let token = tokens[0]!;
    let subdomainsOnly = false;
    if (token.startsWith('||')) {
      if (!token.endsWith('^')) {
        fail(col, `expected adblock syntax ||domain^ (modifiers such as $important are not supported), got "${token}"`);
        continue;
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
      continue;
    }
    rules.push({ domain, subdomainsOnly, line: lineNo });
  }
  return { rules, problems };
}
