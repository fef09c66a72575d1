// Approved exceptions: records, not config tweaks (DESIGN.md §2). Each names
// who may pass, what, why, who approved it and until when. Expiry is checked
// on every query against the clock, so an exception lapses in the same second
// without a reload or a timer.
import { isScalar } from 'yaml';
import { YamlReader, type YNode } from '../config/yamlReader.js';
import { parseSelector } from '../identity/mac.js';
import { toRuleDomain } from './listParser.js';
import type { Problem } from '../errors.js';
import { diskSource, type FileSource } from './sources.js';

export interface Exception {
  id: string;
  /** As written: IPs, CIDRs, group names, mac:... and host:... */
  clients: string[];
  /** Where each mac:/host: client is written, for validate's "in no source" warning. */
  deviceRefs: { client: string; line: number; col: number }[];
  /** List names this exception lets through. */
  allowLists: ReadonlySet<string>;
  /** Domains (suffix rules) this exception lets through, whatever list they are on. */
  allowDomains: readonly string[];
  reason: string;
  approvedBy: string;
  /** As written, e.g. "2026-12-31". */
  expires: string;
  /** The first millisecond at which the exception no longer applies. */
  expiresAt: number;
  source: { file: string; line: number };
}

export function isActive(e: Exception, now: number): boolean {
  return now < e.expiresAt;
}

/**
 * `YYYY-MM-DD` means the end of that day in server local time (it lapses at
 * the next local midnight); a full ISO 8601 time with a zone is that instant.
 */
export function parseExpiry(text: string): number | undefined {
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (day) {
    const [y, m, d] = [Number(day[1]), Number(day[2]), Number(day[3])];
    const date = new Date(y, m - 1, d + 1, 0, 0, 0, 0);
    // Reject 2026-02-30 and friends: the day must round-trip.
    const check = new Date(y, m - 1, d);
    if (check.getFullYear() !== y || check.getMonth() !== m - 1 || check.getDate() !== d) return undefined;
    return date.getTime();
  }
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) return undefined;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

export interface ExceptionContext {
  lists: ReadonlySet<string>;
  groups: ReadonlySet<string>;
}

/** Reads the exceptions from a file (`exceptions: [...]` at the top) or from the config's inline list. */
export function loadExceptions(
  source: { file: string } | { inline: YNode; reader?: YamlReader } | undefined,
  ctx: ExceptionContext,
  files: FileSource = diskSource,
): { exceptions: Exception[]; problems: Problem[] } {
  if (!source) return { exceptions: [], problems: [] };
  if ('file' in source) {
    const r = YamlReader.fromFile(source.file, 'SH_EXCEPTION_INVALID', files);
    const found: { items: YNode } = { items: undefined };
    const root = r.root;
    // An empty file (or `exceptions:` with nothing under it) is no exceptions, not an error.
    if (root !== undefined && root !== null && !(isScalar(root) && root.value === null)) {
      r.map(root, '', { exceptions: (v) => (found.items = v) });
    }
    const { items } = found;
    const exceptions = items === undefined || items === null || (isScalar(items) && items.value === null) ? [] : readList(r, items, 'exceptions', ctx);
    return { exceptions, problems: r.problems };
  }
  // A config that crossed a thread boundary has no reader; its exceptions were read where it was loaded.
  if (!source.reader) return { exceptions: [], problems: [] };
  const before = source.reader.problems.length;
  const exceptions = readList(source.reader, source.inline, 'exceptions', ctx);
  return { exceptions, problems: source.reader.problems.slice(before) };
}

function readList(r: YamlReader, node: YNode, path: string, ctx: ExceptionContext): Exception[] {
  const out: Exception[] = [];
  const ids = new Set<string>();
  r.seq(node, path).forEach((item, i) => {
    const p = `${path}[${i}]`;
    const e: Partial<Exception> & { allowLists: Set<string>; allowDomains: string[]; clients: string[]; deviceRefs: Exception['deviceRefs'] } = {
      allowLists: new Set(),
      allowDomains: [],
      clients: [],
      deviceRefs: [],
    };
    const ok = r.map(item, p, {
      id: (v, q) => {
        e.id = r.string(v, q);
        if (e.id !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(e.id)) {
          r.fail(v, q, `an id may use letters, digits, ".", "-" and "_" (it becomes a metric label), got "${e.id}"`);
        } else if (e.id !== undefined && ids.has(e.id)) {
          r.fail(v, q, `duplicate id "${e.id}"; each exception needs its own`);
        } else if (e.id !== undefined) ids.add(e.id);
      },
      clients: (v, q) => {
        for (const { value, node: n } of r.strings(v, q)) {
          const sel = ctx.groups.has(value) ? undefined : parseSelector(value);
          if (typeof sel === 'string') {
            const hint = value.startsWith('mac:') || value.startsWith('host:') ? sel : `"${value}" is neither an IP, a CIDR, nor a group in clients.groups (${[...ctx.groups].join(', ') || 'none defined'}), nor mac:MAC or host:NAME`;
            r.fail(n, q, hint);
          } else {
            e.clients.push(value);
            if (sel && sel.kind !== 'net') e.deviceRefs.push({ client: value, ...r.pos(n) });
          }
        }
      },
      allow: (v, q) => {
        for (const { value, node: n } of r.strings(v, q)) {
          if (ctx.lists.has(value)) e.allowLists.add(value);
          else if (value.includes('.') && toRuleDomain(value)) e.allowDomains.push(toRuleDomain(value)!);
          else r.fail(n, q, `"${value}" is neither a list in blocking.lists (${[...ctx.lists].join(', ')}) nor a domain`);
        }
      },
      reason: (v, q) => (e.reason = r.string(v, q)),
      approvedBy: (v, q) => (e.approvedBy = r.string(v, q)),
      expires: (v, q) => {
        const text = r.string(v, q);
        if (text === undefined) return;
        const at = parseExpiry(text);
        if (at === undefined) r.fail(v, q, `expected a date like 2026-12-31 or a time like 2026-12-31T18:00:00Z, got "${text}"`);
        e.expires = text;
        e.expiresAt = at;
      },
    });
    if (!ok) return;
    for (const key of ['id', 'clients', 'allow', 'reason', 'approvedBy', 'expires'] as const) {
      const missing = key === 'clients' ? !e.clients.length : key === 'allow' ? !e.allowLists.size && !e.allowDomains.length : e[key] === undefined;
      if (missing && !hasKey(item, key)) r.fail(item, p, `missing "${key}": every exception records id, clients, allow, reason, approvedBy and expires`);
    }
    if (e.id && e.clients.length && (e.allowLists.size || e.allowDomains.length) && e.reason && e.approvedBy && e.expiresAt !== undefined) {
      out.push({
        id: e.id, clients: e.clients, deviceRefs: e.deviceRefs, allowLists: e.allowLists, allowDomains: e.allowDomains, reason: e.reason,
        approvedBy: e.approvedBy, expires: e.expires!, expiresAt: e.expiresAt, source: { file: r.file, line: r.pos(item).line },
      });
    }
  });
  return out;
}

function hasKey(node: YNode, key: string): boolean {
  const items = (node as { items?: { key: unknown }[] } | null | undefined)?.items ?? [];
  return items.some((p) => isScalar(p.key) && p.key.value === key);
}
