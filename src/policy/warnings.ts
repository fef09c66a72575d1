// Warnings about exceptions that are valid but probably not what was meant.
// They never stop `serve` or a reload (the policy is well-formed and applies
// as written); `validate` prints them, and `serve` logs them when a policy is
// loaded. Computed apart from the generation because they depend on the clock.
import type { Problem } from '../errors.js';
import { parseCidr, type CidrSet, type Net } from '../net/cidr.js';
import { compileCidrs } from './clients.js';
import type { Exception, Ref } from './exceptions.js';
import type { Generation } from './generation.js';
import { isPublicSuffix } from './publicSuffix.js';

/** IPv4 /0–/8 and IPv6 /0–/32 are whole providers or regions, not a department. */
const WIDE = { v4: 8, v6: 32 };

function warn(code: Problem['code'], at: Ref, message: string): Problem {
  return { code, file: at.file, line: at.line, col: at.col, message: `warning: ${message}` };
}

function describeRange(net: Net): string {
  const bits = (net.v4 ? 32 : 128) - net.prefix;
  return net.v4 ? `${2 ** bits} addresses` : `2^${bits} addresses`;
}

/** The warnings for the exceptions of `g`, as of `now`. Expired and revoked records are history, not warned about. */
export function exceptionWarnings(g: Generation, now: number): Problem[] {
  const allowFrom = compileCidrs(g.config.clients.allowFrom);
  const groups = new Map(g.config.clients.groups.map((gr) => [gr.name, gr.members]));
  const out: Problem[] = [];
  for (const e of g.exceptions) {
    if (now >= e.endsAt) continue;
    for (const c of e.refs.clients) {
      const members = groups.get(c.value);
      for (const text of members ?? [c.value]) {
        const net = parseCidr(text);
        if (typeof net === 'string') continue;
        const what = members ? `group "${c.value}" member ${text}` : text;
        out.push(...clientWarnings(e, c, what, net, allowFrom, g.config.clients.allowFrom));
      }
    }
    for (const a of e.refs.allow) {
      if (!e.allowLists.has(a.value) && isPublicSuffix(a.value)) {
        out.push(warn('SH_EXCEPTION_WIDE', a, `exception ${e.id} allows "${a.value}", a public suffix: every site under .${a.value} that any list blocks`));
      }
    }
    const yearAhead = new Date(now);
    yearAhead.setUTCFullYear(yearAhead.getUTCFullYear() + 1);
    if (e.expiresAt > yearAhead.getTime()) {
      out.push(warn('SH_EXCEPTION_LONG', e.refs.expires, `exception ${e.id} expires ${e.expires}, more than a year away; exceptions are meant to be reviewed, so renew it when due instead`));
    }
  }
  return out;
}

function clientWarnings(e: Exception, at: Ref, what: string, net: Net, allowFrom: CidrSet, allowText: readonly string[]): Problem[] {
  const out: Problem[] = [];
  const coverage = allowFrom.coverage(net);
  if (coverage !== 'all') {
    const effect = coverage === 'none' ? 'it gets REFUSED for every name, so this exception does nothing for it' : 'only part of it may use this resolver';
    out.push(warn('SH_EXCEPTION_OUTSIDE', at, `exception ${e.id}: client ${what} is ${coverage === 'none' ? 'outside' : 'only partly inside'} clients.allowFrom (${allowText.join(', ')}): ${effect}`));
  }
  if (net.prefix <= (net.v4 ? WIDE.v4 : WIDE.v6)) {
    out.push(warn('SH_EXCEPTION_WIDE', at, `exception ${e.id}: client ${what} is /${net.prefix}, ${describeRange(net)}; an exception is meant for named devices or a department's network`));
  }
  return out;
}
