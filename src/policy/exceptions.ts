// Approved exceptions: records, not config tweaks (docs/design.md §2). Each names
// who may pass, what, why, who approved it and until when; a revoked one also
// says when and by whom. Expiry is checked on every query against the clock,
// so an exception lapses in the same second without a reload or a timer.
import { isScalar } from 'yaml';
import { YamlReader, type YNode } from '../config/yamlReader.js';
import { parseSelector } from '../net/mac.js';
import { diskSource, type FileSource } from '../config/sources.js';
import { toRuleDomain } from './listParser.js';
import { isZoneName, serverZone, startOfDay } from './zonedDate.js';
import type { Problem } from '../errors.js';

/** Where a value was written, for warnings that point at it. */
export interface Ref {
  file: string;
  line: number;
  col: number;
}

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
  /** The first millisecond at which the exception no longer applies by expiry. */
  expiresAt: number;
  /** The IANA zone date-only values are read in: the record's, the file's, or the server's. */
  timezone: string;
  timezoneFrom: 'record' | 'file' | 'server';
  /** Set when the exception was revoked: the date as written, when it took effect, and by whom. */
  revoked?: string;
  revokedAt?: number;
  revokedBy?: string;
  /** When it stops applying: expiry or revocation, whichever comes first. */
  endsAt: number;
  source: { file: string; line: number };
  /** Where each client, each allow entry and the expiry were written (validate's warnings point there). */
  refs: { clients: (Ref & { value: string })[]; allow: (Ref & { value: string })[]; expires: Ref };
}

export type ExceptionState = 'active' | 'expired' | 'revoked';

/** Checked on every query from a client an exception names: one comparison. */
export function isActive(e: Exception, now: number): boolean {
  return now < e.endsAt;
}

export function stateOf(e: Exception, now: number): ExceptionState {
  if (now < e.endsAt) return 'active';
  return e.revokedAt !== undefined && e.revokedAt <= e.expiresAt ? 'revoked' : 'expired';
}

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** A YYYY-MM-DD that exists (not 2026-02-30), as numbers. */
function calendarDay(text: string): [number, number, number] | undefined {
  const day = DAY.exec(text);
  if (!day) return undefined;
  const [y, m, d] = [Number(day[1]), Number(day[2]), Number(day[3])];
  const check = new Date(Date.UTC(y, m - 1, d));
  return check.getUTCFullYear() === y && check.getUTCMonth() === m - 1 && check.getUTCDate() === d ? [y, m, d] : undefined;
}

function instant(text: string): number | undefined {
  if (!INSTANT.test(text)) return undefined;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

/** Whether a value is a date alone, read in the exception's zone. */
export function isDateOnly(text: string): boolean {
  return DAY.test(text);
}

/**
 * `YYYY-MM-DD` means the end of that day in `zone` (it lapses at the next
 * local midnight there); a full ISO 8601 time with a zone is that instant.
 */
export function parseExpiry(text: string, zone = serverZone()): number | undefined {
  const day = calendarDay(text);
  return day ? startOfDay(day[0], day[1], day[2] + 1, zone) : instant(text);
}

/** `YYYY-MM-DD` means from the start of that day in `zone`: a revoke dated today applies at once. */
export function parseRevoked(text: string, zone = serverZone()): number | undefined {
  const day = calendarDay(text);
  return day ? startOfDay(day[0], day[1], day[2], zone) : instant(text);
}

export interface ExceptionContext {
  lists: ReadonlySet<string>;
  groups: ReadonlySet<string>;
}

const ZONE_EXPECTED = 'expected an IANA time zone name like Europe/London, Pacific/Auckland or UTC';

/**
 * Reads the exceptions from a file (`exceptions: [...]` at the top, and
 * optionally `timezone:` for every record in it) or from the config's inline list.
 */
export function loadExceptions(
  source: { file: string } | { inline: YNode; reader?: YamlReader } | undefined,
  ctx: ExceptionContext,
  files: FileSource = diskSource,
): { exceptions: Exception[]; problems: Problem[] } {
  if (!source) return { exceptions: [], problems: [] };
  if ('file' in source) {
    const r = YamlReader.fromFile(source.file, 'SH_EXCEPTION_INVALID', files);
    const found: { items: YNode; zone?: string } = { items: undefined };
    const root = r.root;
    // An empty file (or `exceptions:` with nothing under it) is no exceptions, not an error.
    if (root !== undefined && root !== null && !(isScalar(root) && root.value === null)) {
      r.map(root, '', {
        timezone: (v, q) => {
          const zone = r.string(v, q);
          if (zone !== undefined && !isZoneName(zone)) r.fail(v, q, `${ZONE_EXPECTED}, got "${zone}"`);
          else found.zone = zone;
        },
        exceptions: (v) => (found.items = v),
      });
    }
    const { items } = found;
    const exceptions = items === undefined || items === null || (isScalar(items) && items.value === null) ? [] : readList(r, items, 'exceptions', ctx, found.zone);
    return { exceptions, problems: r.problems };
  }
  // A config that crossed a thread boundary has no reader; its exceptions were read where it was loaded.
  if (!source.reader) return { exceptions: [], problems: [] };
  const before = source.reader.problems.length;
  const exceptions = readList(source.reader, source.inline, 'exceptions', ctx, undefined);
  return { exceptions, problems: source.reader.problems.slice(before) };
}

const REQUIRED = ['id', 'clients', 'allow', 'reason', 'approvedBy', 'expires'] as const;

function readList(r: YamlReader, node: YNode, path: string, ctx: ExceptionContext, fileZone: string | undefined): Exception[] {
  const out: Exception[] = [];
  const ids = new Set<string>();
  const ref = (n: YNode): Ref => ({ file: r.file, ...r.pos(n) });
  r.seq(node, path).forEach((item, i) => {
    const p = `${path}[${i}]`;
    let id: string | undefined;
    let reason: string | undefined;
    let approvedBy: string | undefined;
    let revokedBy: string | undefined;
    let zone: string | undefined;
    const clients: (Ref & { value: string })[] = [];
    const deviceRefs: Exception['deviceRefs'] = [];
    const allow: (Ref & { value: string })[] = [];
    const allowLists = new Set<string>();
    const allowDomains: string[] = [];
    // Dates are read once the record's zone is known: `timezone:` may come after them.
    const dates: { expires?: { text: string; node: YNode; q: string }; revoked?: { text: string; node: YNode; q: string } } = {};
    let valid = true;
    const fail = (n: YNode, q: string, message: string): void => {
      valid = false;
      r.fail(n, q, message);
    };
    const ok = r.map(item, p, {
      id: (v, q) => {
        id = r.string(v, q);
        if (id !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(id)) {
          fail(v, q, `an id may use letters, digits, ".", "-" and "_" (it becomes a metric label), got "${id}"`);
        } else if (id !== undefined && ids.has(id)) {
          fail(v, q, `duplicate id "${id}"; each exception needs its own`);
        } else if (id !== undefined) ids.add(id);
      },
      clients: (v, q) => {
        for (const { value, node: n } of r.strings(v, q)) {
          const sel = ctx.groups.has(value) ? undefined : parseSelector(value);
          if (typeof sel === 'string') {
            const hint = value.startsWith('mac:') || value.startsWith('host:') ? sel : `"${value}" is neither an IP, a CIDR, nor a group in clients.groups (${[...ctx.groups].join(', ') || 'none defined'}), nor mac:MAC or host:NAME`;
            fail(n, q, hint);
          } else {
            clients.push({ value, ...ref(n) });
            if (sel && sel.kind !== 'net') deviceRefs.push({ client: value, ...ref(n) });
          }
        }
      },
      allow: (v, q) => {
        for (const { value, node: n } of r.strings(v, q)) {
          const domain = value.includes('.') ? toRuleDomain(value) : undefined;
          if (ctx.lists.has(value)) allowLists.add(value);
          else if (domain) allowDomains.push(domain);
          else {
            fail(n, q, `"${value}" is neither a list in blocking.lists (${[...ctx.lists].join(', ')}) nor a domain`);
            continue;
          }
          allow.push({ value: domain ?? value, ...ref(n) });
        }
      },
      reason: (v, q) => (reason = r.string(v, q)),
      approvedBy: (v, q) => (approvedBy = r.string(v, q)),
      expires: (v, q) => {
        const text = r.string(v, q);
        if (text !== undefined) dates.expires = { text, node: v, q };
      },
      timezone: (v, q) => {
        zone = r.string(v, q);
        if (zone !== undefined && !isZoneName(zone)) {
          fail(v, q, `${ZONE_EXPECTED}, got "${zone}"`);
          zone = undefined;
        }
      },
      revoked: (v, q) => {
        const text = r.string(v, q);
        if (text !== undefined) dates.revoked = { text, node: v, q };
      },
      revokedBy: (v, q) => (revokedBy = r.string(v, q)),
    });
    if (!ok) return;
    const timezone = zone ?? fileZone ?? serverZone();
    const timezoneFrom = zone ? 'record' : fileZone ? 'file' : 'server';
    let expiresAt: number | undefined;
    if (dates.expires) {
      expiresAt = parseExpiry(dates.expires.text, timezone);
      if (expiresAt === undefined) fail(dates.expires.node, dates.expires.q, `expected a date like 2026-12-31 or a time like 2026-12-31T18:00:00Z, got "${dates.expires.text}"`);
    }
    let revokedAt: number | undefined;
    if (dates.revoked) {
      revokedAt = parseRevoked(dates.revoked.text, timezone);
      if (revokedAt === undefined) fail(dates.revoked.node, dates.revoked.q, `expected a date like 2026-12-01 or a time like 2026-12-01T09:30:00Z, got "${dates.revoked.text}"`);
    }
    // A revoke is a record too: it says who revoked, as the grant says who approved.
    if (dates.revoked && revokedBy === undefined && !hasKey(item, 'revokedBy')) fail(item, p, 'revoked needs revokedBy: who revoked it');
    if (revokedBy !== undefined && !dates.revoked) fail(item, p, 'revokedBy needs revoked: the date the exception was revoked');
    const present: Record<(typeof REQUIRED)[number], boolean> = {
      id: id !== undefined, clients: clients.length > 0, allow: allowLists.size > 0 || allowDomains.length > 0,
      reason: reason !== undefined, approvedBy: approvedBy !== undefined, expires: dates.expires !== undefined,
    };
    for (const key of REQUIRED) {
      if (!present[key] && !hasKey(item, key)) fail(item, p, `missing "${key}": every exception records id, clients, allow, reason, approvedBy and expires`);
    }
    if (!valid || !REQUIRED.every((k) => present[k]) || expiresAt === undefined) return;
    out.push({
      id: id!, clients: clients.map((c) => c.value), deviceRefs, allowLists, allowDomains, reason: reason!, approvedBy: approvedBy!,
      expires: dates.expires!.text, expiresAt, timezone, timezoneFrom,
      ...(dates.revoked ? { revoked: dates.revoked.text, revokedAt, revokedBy } : {}),
      endsAt: revokedAt === undefined ? expiresAt : Math.min(expiresAt, revokedAt),
      source: { file: r.file, line: r.pos(item).line },
      refs: { clients, allow, expires: ref(dates.expires!.node) },
    });
  });
  return out;
}

function hasKey(node: YNode, key: string): boolean {
  const items = (node as { items?: { key: unknown }[] } | null | undefined)?.items ?? [];
  return items.some((p) => isScalar(p.key) && p.key.value === key);
}
