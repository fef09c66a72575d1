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
import { isIP } from 'node:net';
import type { Problem } from '../errors.js';
import { normalizeAddress } from '../policy/cidr.js';
import { normalizeHost, normalizeMac } from './mac.js';

export const LEASE_FORMATS = ['kea-csv', 'dnsmasq', 'dhcpd', 'csv'] as const;
export type LeaseFormat = (typeof LEASE_FORMATS)[number];

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

export function parseLeases(format: LeaseFormat, file: string, text: string): ParsedLeases {
  switch (format) {
    case 'kea-csv':
      return parseKea(file, text);
    case 'dnsmasq':
      return parseDnsmasq(file, text);
    case 'dhcpd':
      return parseDhcpd(file, text);
    case 'csv':
      return parsePlainCsv(file, text);
  }
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
function completeLines(text: string): Line[] {
  const parts = text.split('\n');
  parts.pop(); // '' after a final newline, or the unterminated tail
  return parts.map((t, i) => ({ text: t.endsWith('\r') ? t.slice(0, -1) : t, no: i + 1 }));
}

class Collector {
  readonly leases: Lease[] = [];
  readonly problems: Problem[] = [];
  constructor(private readonly file: string) {}
  fail(line: number, col: number, message: string): void {
    // A wholly wrong file would otherwise log 50k lines: the first few say enough.
    if (this.problems.length < 20) this.problems.push({ code: 'SH_LEASES_INVALID', file: this.file, line, col, message });
  }
  result(): ParsedLeases {
    return { leases: this.leases, problems: this.problems };
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

function parseKea(file: string, text: string): ParsedLeases {
  const c = new Collector(file);
  const lines = completeLines(text);
  let cols: Map<string, number> | undefined;
  for (const { text: line, no } of lines) {
    if (!line.trim()) continue;
    // Kea never quotes: it escapes commas inside a field as "&#x2c", so a plain split is exact (and cheap
    // enough for a 50k-row file read on every change).
    const parts = line.split(',');
    const colOf = (i: number): number => parts.slice(0, i).reduce((n, p) => n + p.length + 1, 1);
    if (!cols) {
      // The memfile starts with its header; its column set differs between Kea versions and v4/v6.
      cols = new Map(parts.map((x, i) => [x.trim(), i]));
      const missing = ['address', 'hwaddr', 'valid_lifetime', 'expire'].filter((k) => !cols!.has(k));
      if (missing.length) {
        c.fail(no, 1, `expected a Kea memfile header with address, hwaddr, valid_lifetime, expire; missing ${missing.join(', ')}`);
        return c.result();
      }
      continue;
    }
    const get = (k: string): { value: string; col: number } | undefined => {
      const i = cols!.get(k);
      const value = i === undefined ? undefined : parts[i];
      return value === undefined ? undefined : { value: value.trim(), get col() { return colOf(i!); } };
    };
    const addr = get('address');
    const ip = addr && address(addr.value);
    if (!ip) {
      c.fail(no, addr?.col ?? 1, `expected an IP address in column "address", got "${addr?.value ?? ''}"`);
      continue;
    }
    const hw = get('hwaddr')!;
    const mac = hw?.value ? normalizeMac(hw.value) : '';
    if (mac === undefined) {
      c.fail(no, hw.col, `expected a MAC address in column "hwaddr", got "${hw.value}"`);
      continue;
    }
    const vl = get('valid_lifetime');
    const ex = get('expire');
    const lifetime = vl && /^\d+$/.test(vl.value) ? Number(vl.value) : NaN;
    const expire = ex && /^\d+$/.test(ex.value) ? Number(ex.value) : NaN;
    if (Number.isNaN(lifetime)) {
      c.fail(no, vl?.col ?? 1, `expected whole seconds in column "valid_lifetime", got "${vl?.value ?? ''}"`);
      continue;
    }
    if (Number.isNaN(expire)) {
      c.fail(no, ex?.col ?? 1, `expected a Unix time in column "expire", got "${ex?.value ?? ''}"`);
      continue;
    }
    const state = get('state')?.value ?? '0';
    // Kea escapes commas in text fields as "&#x2c".
    const hostname = normalizeHost((get('hostname')?.value ?? '').replace(/&#x2c/g, ','));
    c.leases.push({
      ip, mac, hostname,
      start: (expire - lifetime) * 1000,
      end: expire * 1000,
      // valid_lifetime 0: Kea's record of a deleted lease. state 1 declined, 2 expired-reclaimed, 3 released.
      active: lifetime > 0 && (state === '0' || state === ''),
    });
  }
  return c.result();
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
  return c.result();
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
  return c.result();
}

const IP_NAMES = new Set(['ip', 'ipaddress', 'address', 'ip address']);
const MAC_NAMES = new Set(['mac', 'macaddress', 'mac address', 'hwaddr', 'clientid', 'client id', 'hardware address']);
const HOST_NAMES = new Set(['hostname', 'host', 'name', 'host name']);

function parsePlainCsv(file: string, text: string): ParsedLeases {
  const c = new Collector(file);
  let idx = { ip: 0, mac: 1, host: 2 };
  let first = true;
  for (const { text: line, no } of completeLines(text)) {
    if (!line.trim() || line.startsWith('#')) continue;
    const f = csvFields(line);
    if (first) {
      first = false;
      if (!address(f[0]?.value ?? '')) {
        // A header row: find the columns by name, so an export with more columns reads as well.
        const names = f.map((x) => x.value.toLowerCase());
        const find = (set: Set<string>): number => names.findIndex((n) => set.has(n));
        idx = { ip: find(IP_NAMES), mac: find(MAC_NAMES), host: find(HOST_NAMES) };
        if (idx.ip < 0 || idx.mac < 0) {
          c.fail(no, 1, 'expected "ip,mac,hostname" rows, or a header naming the ip and mac columns');
          return c.result();
        }
        continue;
      }
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
  return c.result();
}
