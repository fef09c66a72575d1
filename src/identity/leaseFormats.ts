// Readers for DHCP lease files. Each turns a file's text into lease records,
// or names every line it cannot read as file:line:col (the caller then keeps
// the source's last good version: a broken file never changes who is who).
// Formats:
//   kea-csv  ISC Kea memfile (append-only; the last row for an address wins;
//            valid_lifetime 0 marks a deleted lease, state ≠ 0 a declined,
//            reclaimed or released one)
//   dnsmasq  dnsmasq's leases file: "expiry mac ip hostname clientid"
//   dhcpd    ISC dhcpd's dhcpd.leases: "lease IP { ... }" blocks
//   csv      a plain export "ip,mac,hostname" (Windows Server DHCP, Infoblox)
//
// Over 400 lines on purpose (docs/design.md §5): four readers and the kit they share (field splitting,
// address and MAC checks, file:line:col problems), kept in one file so that each format's rules are read
// beside the others' and fixed the same way.
import { isIP } from 'node:net';
import type { Problem } from '../errors.js';
import { normalizeAddress } from '../net/cidr.js';
import { normalizeHost, normalizeMac } from '../net/mac.js';

import type { LeaseFormat } from '../config/values.js';
export type { LeaseFormat } from '../config/values.js';

export interface Lease {
  /** Normalised address (IPv4 dotted quad, or IPv6). */
  ip: string;
  /** Canonical MAC, or '' when the source has none (an IPv6 lease keyed by DUID). */
  mac: string;
  /** Lower-case hostname, or ''. */
  hostname: string;
  /** When the lease began (ms); 0 when the format does not say. */
  start: number;
  /** The first ms at which it no longer holds; Infinity for a lease without an end. */
  end: number;
  /** false for a released, declined, expired or deleted lease: it maps nothing from `start` on. */
  active: boolean;
}

export interface ParsedLeases {
  leases: Lease[];
  problems: Problem[];
}

/**
 * Formats whose writers only ever append rows (Kea's memfile; a CSV export that is appended to), so
 * a change can be read from where the last read stopped. dnsmasq and dhcpd rewrite their file whole
 * (dhcpd appends too, but its blocks span lines and it rewrites the file every hour): read whole.
 */
export type AppendFormat = 'kea-csv' | 'csv';
export function isAppendFormat(f: LeaseFormat): f is AppendFormat {
  return f === 'kea-csv' || f === 'csv';
}

/** What the rows after a header need to know of it: Kea's column positions, or a CSV export's. */
export type HeaderState = { kind: 'kea'; cols: ReadonlyMap<string, number> } | { kind: 'csv'; idx: CsvColumns };

export interface ResumedLeases extends ParsedLeases {
  /** The header as known after these lines (undefined: none seen yet). Use it only when problems is empty. */
  header: HeaderState | undefined;
}

export function parseLeases(format: LeaseFormat, file: string, text: string): ParsedLeases {
  switch (format) {
    case 'kea-csv':
    case 'csv':
      return parseAppended(format, file, text, 1, undefined);
    case 'dnsmasq':
      return parseDnsmasq(file, text);
    case 'dhcpd':
      return parseDhcpd(file, text);
  }
}

/**
 * The complete lines of `text`, the part of an append-only file after what was read before:
 * `firstLine` is the number of its first line in the file (for file:line:col), and `header` what
 * the earlier lines said about the columns. Rows cannot be read without the header, so a read
 * that starts mid-file needs the header state the read before it returned.
 */
export function parseAppended(format: AppendFormat, file: string, text: string, firstLine: number, header: HeaderState | undefined): ResumedLeases {
  return format === 'kea-csv' ? parseKea(file, text, firstLine, header) : parsePlainCsv(file, text, firstLine, header);
}

interface Line {
  text: string;
  no: number;
}

/**
 * The complete lines of a file. A last line without its newline is being
 * written right now (Kea and dnsmasq append or rewrite as they go): it is
 * left for the next read, which the file watcher triggers.
 */
function completeLines(text: string, firstLine = 1): Line[] {
  const parts = text.split('\n');
  parts.pop(); // '' after a final newline, or the unterminated tail
  return parts.map((t, i) => ({ text: t.endsWith('\r') ? t.slice(0, -1) : t, no: i + firstLine }));
}

class Collector {
  readonly leases: Lease[] = [];
  readonly problems: Problem[] = [];
  constructor(private readonly file: string) {}
  fail(line: number, col: number, message: string): void {
    // A wholly wrong file would otherwise log 50k lines: the first few say enough.
    if (this.problems.length < 20) this.problems.push({ code: 'SH_LEASES_INVALID', file: this.file, line, col, message });
  }
  result(header: HeaderState | undefined): ResumedLeases {
    return { leases: this.leases, problems: this.problems, header };
  }
}

function address(text: string): string | undefined {
  const a = normalizeAddress(text.trim());
  return isIP(a) ? a : undefined;
}

/** Splits a CSV line; fields may be "quoted" (with "" for a quote). Returns each field and its column. */
function csvFields(line: string): { value: string; col: number }[] {
  const out: { value: string; col: number }[] = [];
  let i = 0;
  for (;;) {
    const col = i + 1;
    let value = '';
    if (line[i] === '"') {
      i++;
      for (; i < line.length; i++) {
        if (line[i] === '"') {
          if (line[i + 1] === '"') {
            value += '"';
            i++;
          } else {
            i++;
            break;
          }
        } else value += line[i];
      }
      const comma = line.indexOf(',', i);
      i = comma === -1 ? line.length : comma;
    } else {
      const comma = line.indexOf(',', i);
      const end = comma === -1 ? line.length : comma;
      value = line.slice(i, end);
      i = end;
    }
    out.push({ value: value.trim(), col });
    if (i >= line.length) return out;
    i++; // the comma
  }
}

function parseKea(file: string, text: string, firstLine: number, header: HeaderState | undefined): ResumedLeases {
  const c = new Collector(file);
  const lines = completeLines(text, firstLine);
  let cols: ReadonlyMap<string, number> | undefined = header?.kind === 'kea' ? header.cols : undefined;
  let at: KeaColumns | undefined;
  const result = (): ResumedLeases => c.result(cols && { kind: 'kea', cols });
  for (const { text: line, no } of lines) {
    if (!line.trim()) continue;
    // Kea never quotes: it escapes commas inside a field as "&#x2c", so a plain split is exact. This
    // loop runs for every row of a file read whole (50k rows and more): no closure or object per field.
    const parts = line.split(',');
    if (!cols) {
      // The memfile starts with its header; its column set differs between Kea versions and v4/v6.
      const named = new Map(parts.map((x, i) => [x.trim(), i]));
      const missing = ['address', 'hwaddr', 'valid_lifetime', 'expire'].filter((k) => !named.has(k));
      if (missing.length) {
        c.fail(no, 1, `expected a Kea memfile header with address, hwaddr, valid_lifetime, expire; missing ${missing.join(', ')}`);
        return result();
      }
      cols = named;
      at = keaColumns(cols);
      continue;
    }
    at ??= keaColumns(cols);
    const addrText = field(parts, at.address);
    const ip = addrText === undefined ? undefined : address(addrText);
    if (!ip) {
      c.fail(no, colOf(parts, at.address), `expected an IP address in column "address", got "${addrText ?? ''}"`);
      continue;
    }
    const hw = field(parts, at.hwaddr) ?? '';
    const mac = hw ? normalizeMac(hw) : '';
    if (mac === undefined) {
      c.fail(no, colOf(parts, at.hwaddr), `expected a MAC address in column "hwaddr", got "${hw}"`);
      continue;
    }
    const vl = field(parts, at.lifetime) ?? '';
    const ex = field(parts, at.expire) ?? '';
    const lifetime = DIGITS.test(vl) ? Number(vl) : NaN;
    const expire = DIGITS.test(ex) ? Number(ex) : NaN;
    if (Number.isNaN(lifetime)) {
      c.fail(no, colOf(parts, at.lifetime), `expected whole seconds in column "valid_lifetime", got "${vl}"`);
      continue;
    }
    if (Number.isNaN(expire)) {
      c.fail(no, colOf(parts, at.expire), `expected a Unix time in column "expire", got "${ex}"`);
      continue;
    }
    const state = field(parts, at.state) ?? '0';
    // Kea escapes commas in text fields as "&#x2c".
    const host = field(parts, at.hostname) ?? '';
    const hostname = host === '' ? '' : normalizeHost(host.includes('&#x2c') ? host.replace(/&#x2c/g, ',') : host);
    c.leases.push({
      ip, mac, hostname,
      start: (expire - lifetime) * 1000,
      end: expire * 1000,
      // valid_lifetime 0: Kea's record of a deleted lease. state 1 declined, 2 expired-reclaimed, 3 released.
      active: lifetime > 0 && (state === '0' || state === ''),
    });
  }
  return result();
}

const DIGITS = /^\d+$/;

/** Where the Kea columns this reader uses are (-1: not in this file's header). */
interface KeaColumns {
  address: number;
  hwaddr: number;
  lifetime: number;
  expire: number;
  state: number;
  hostname: number;
}

function keaColumns(cols: ReadonlyMap<string, number>): KeaColumns {
  const at = (k: string): number => cols.get(k) ?? -1;
  return { address: at('address'), hwaddr: at('hwaddr'), lifetime: at('valid_lifetime'), expire: at('expire'), state: at('state'), hostname: at('hostname') };
}

/** Field i of a split row, trimmed; undefined when the row is shorter or the column absent. */
function field(parts: readonly string[], i: number): string | undefined {
  const v = i < 0 ? undefined : parts[i];
  return v === undefined ? undefined : v.trim();
}

/** The 1-based column where field i starts (for file:line:col); 1 when absent. */
function colOf(parts: readonly string[], i: number): number {
  if (i < 0 || i >= parts.length) return 1;
  let col = 1;
  for (let k = 0; k < i; k++) col += parts[k]!.length + 1;
  return col;
}

function parseDnsmasq(file: string, text: string): ParsedLeases {
  const c = new Collector(file);
  let v6 = false;
  for (const { text: line, no } of completeLines(text)) {
    if (!line.trim()) continue;
    const f = line.split(' ');
    if (f[0] === 'duid') {
      v6 = true; // the server's DUID; the lines after it are DHCPv6 leases, keyed by IAID, not MAC
      continue;
    }
    if (f.length < 4) {
      c.fail(no, 1, `expected "expiry mac ip hostname clientid", got ${f.length} fields`);
      continue;
    }
    const [expiryText, hw, ipText, host] = f as [string, string, string, string];
    if (!/^\d+$/.test(expiryText)) {
      c.fail(no, 1, `expected the lease expiry as a Unix time, got "${expiryText}"`);
      continue;
    }
    const ipCol = expiryText.length + hw.length + 3;
    const ip = address(ipText);
    if (!ip) {
      c.fail(no, ipCol, `expected an IP address, got "${ipText}"`);
      continue;
    }
    // dnsmasq writes other hardware types as longer hex strings; those, and v6 IAIDs, identify no MAC.
    const mac = v6 ? '' : (normalizeMac(hw) ?? '');
    const expiry = Number(expiryText);
    c.leases.push({ ip, mac, hostname: host === '*' ? '' : normalizeHost(host), start: 0, end: expiry === 0 ? Infinity : expiry * 1000, active: true });
  }
  return c.result(undefined);
}

/** A token of dhcpd.leases: a word, a "string", or one of { } ; with where it starts. */
interface Token {
  t: string;
  line: number;
  col: number;
  quoted: boolean;
}

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < text.length; ) {
    const ch = text[i]!;
    if (ch === '\n') {
      line++;
      lineStart = ++i;
    } else if (ch === ' ' || ch === '\t' || ch === '\r') i++;
    else if (ch === '#') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (ch === '{' || ch === '}' || ch === ';') {
      out.push({ t: ch, line, col: i - lineStart + 1, quoted: false });
      i++;
    } else if (ch === '"') {
      const col = i - lineStart + 1;
      let s = '';
      for (i++; i < text.length && text[i] !== '"'; i++) {
        if (text[i] === '\\' && i + 1 < text.length) i++;
        if (text[i] === '\n') {
          line++;
          lineStart = i + 1;
        }
        s += text[i];
      }
      i++;
      out.push({ t: s, line, col, quoted: true });
    } else {
      const col = i - lineStart + 1;
      const start = i;
      while (i < text.length && !/[\s{};"#]/.test(text[i]!)) i++;
      out.push({ t: text.slice(start, i), line, col, quoted: false });
    }
  }
  return out;
}

/** "4 2026/11/26 10:00:00" (UTC, dhcpd's default) or "epoch 1764151200" (db-time-format local). */
function dhcpdTime(words: string[]): number | undefined {
  if (words[0] === 'never') return Infinity;
  if (words[0] === 'epoch' && words[1] && /^\d+$/.test(words[1])) return Number(words[1]) * 1000;
  const m = words.length >= 3 && /^\d$/.test(words[0]!) ? /^(\d{4})\/(\d{1,2})\/(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2})$/.exec(`${words[1]} ${words[2]}`) : null;
  if (!m) return undefined;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

function parseDhcpd(file: string, text: string): ParsedLeases {
  const c = new Collector(file);
  const toks = tokenize(text);
  let i = 0;
  // Statements are "words... ;" or "words... { statements }"; only "lease IP { ... }" matters here.
  const skipStatement = (): boolean => {
    let depth = 0;
    for (; i < toks.length; i++) {
      const t = toks[i]!.t;
      if (t === '{') depth++;
      else if (t === '}') {
        if (--depth <= 0) {
          i++;
          return true;
        }
      } else if (t === ';' && depth === 0) {
        i++;
        return true;
      }
    }
    return false;
  };
  while (i < toks.length) {
    const head = toks[i]!;
    if (head.t !== 'lease' || head.quoted) {
      if (!skipStatement()) break; // an unfinished block at the end: dhcpd is writing it
      continue;
    }
    const ipTok = toks[i + 1];
    const ip = ipTok && address(ipTok.t);
    if (!ipTok || !ip || toks[i + 2]?.t !== '{') {
      if (toks.length > i + 2) c.fail(head.line, head.col, `expected "lease ADDRESS {", got "lease ${ipTok?.t ?? ''} ${toks[i + 2]?.t ?? ''}"`);
      if (!skipStatement()) break;
      continue;
    }
    i += 3;
    let start = 0;
    let end = Infinity;
    let state = 'active';
    let mac = '';
    let hostname = '';
    let closed = false;
    while (i < toks.length) {
      if (toks[i]!.t === '}') {
        closed = true;
        i++;
        break;
      }
      const first = toks[i]!;
      const words: Token[] = [];
      let j = i;
      for (; j < toks.length && toks[j]!.t !== ';' && toks[j]!.t !== '}' && toks[j]!.t !== '{'; j++) words.push(toks[j]!);
      if (toks[j]?.t === '{') {
        i = j; // a nested block (e.g. on commit { }): skipped whole
        skipStatement();
        continue;
      }
      if (toks[j]?.t !== ';') break; // unfinished
      i = j + 1;
      const w = words.map((x) => x.t);
      if (w[0] === 'starts' || w[0] === 'ends') {
        const at = dhcpdTime(w.slice(1));
        if (at === undefined) c.fail(first.line, first.col, `expected "${w[0]} W YYYY/MM/DD HH:MM:SS;", "${w[0]} epoch N;" or "${w[0]} never;"`);
        else if (w[0] === 'starts') start = at;
        else end = at;
      } else if (w[0] === 'binding' && w[1] === 'state' && w[2]) state = w[2];
      else if (w[0] === 'hardware' && w[1] && w[2]) {
        const m = normalizeMac(w[2]);
        if (m === undefined && w[1] === 'ethernet') c.fail(words[2]!.line, words[2]!.col, `expected a MAC address, got "${w[2]}"`);
        mac = m ?? '';
      } else if (w[0] === 'client-hostname' && w[1] !== undefined) hostname = normalizeHost(w[1]);
    }
    if (!closed) break; // the last block is still being written
    // dhcpd appends each change as a new block: the last one for an address wins.
    c.leases.push({ ip, mac, hostname, start, end, active: state === 'active' || state === 'static' });
  }
  return c.result(undefined);
}

const IP_NAMES = new Set(['ip', 'ipaddress', 'address', 'ip address']);
const MAC_NAMES = new Set(['mac', 'macaddress', 'mac address', 'hwaddr', 'clientid', 'client id', 'hardware address']);
const HOST_NAMES = new Set(['hostname', 'host', 'name', 'host name']);

/** Where a CSV export keeps the address, the MAC and the hostname (-1: no hostname column). */
export interface CsvColumns {
  ip: number;
  mac: number;
  host: number;
}
const CSV_DEFAULT: CsvColumns = { ip: 0, mac: 1, host: 2 };

function parsePlainCsv(file: string, text: string, firstLine: number, header: HeaderState | undefined): ResumedLeases {
  const c = new Collector(file);
  // The first row decides: a header names the columns, an address means "ip,mac,hostname" rows.
  let idx: CsvColumns | undefined = header?.kind === 'csv' ? header.idx : undefined;
  const result = (): ResumedLeases => c.result(idx && { kind: 'csv', idx });
  for (const { text: line, no } of completeLines(text, firstLine)) {
    if (!line.trim() || line.startsWith('#')) continue;
    const f = csvFields(line);
    if (!idx) {
      if (!address(f[0]?.value ?? '')) {
        // A header row: find the columns by name, so an export with more columns reads as well.
        const names = f.map((x) => x.value.toLowerCase());
        const find = (set: Set<string>): number => names.findIndex((n) => set.has(n));
        const named = { ip: find(IP_NAMES), mac: find(MAC_NAMES), host: find(HOST_NAMES) };
        if (named.ip < 0 || named.mac < 0) {
          c.fail(no, 1, 'expected "ip,mac,hostname" rows, or a header naming the ip and mac columns');
          return result();
        }
        idx = named;
        continue;
      }
      idx = CSV_DEFAULT;
    }
    const ipf = f[idx.ip];
    const ip = ipf && address(ipf.value);
    if (!ip) {
      c.fail(no, ipf?.col ?? 1, `expected an IP address, got "${ipf?.value ?? ''}"`);
      continue;
    }
    const mf = f[idx.mac];
    const mac = mf?.value ? normalizeMac(mf.value) : undefined;
    if (!mac) {
      c.fail(no, mf?.col ?? line.length + 1, `expected a MAC address like aa:bb:cc:dd:ee:ff, got "${mf?.value ?? ''}"`);
      continue;
    }
    c.leases.push({ ip, mac, hostname: idx.host >= 0 ? normalizeHost(f[idx.host]?.value ?? '') : '', start: 0, end: Infinity, active: true });
  }
  return result();
}
