// What the exported zone holds: one RPZ QNAME trigger per enforced list rule
// (draft-vixie-dnsop-dns-rpz §4.1.1), all with the action `CNAME .`
// (NXDOMAIN, §4.3.1). The rules come from the compiled matcher, so every
// guard rail of the compiler has already been applied: a public suffix is in
// it only when its line says `sinkhole:allow-public-suffix`, and a list that
// did not compile never reaches a generation at all.
//
//   tiktok.com        → tiktok.com  and  *.tiktok.com   (the name and everything below it)
//   *.tiktok.com      → *.tiktok.com                     (below it only)
//
// Imported RPZ zones (blocking.rpz) are not re-exported: their triggers and
// actions are richer than `CNAME .`, and a secondary can pull the feed itself.
import type { Generation } from '../../policy/generation.js';

/** RFC 1035 §2.3.4: 255 octets on the wire, length bytes and the root included. */
const MAX_NAME_OCTETS = 255;

export interface Owners {
  /** Owner names relative to the zone's origin, lower-case, no trailing dot, each once, in rule order. */
  names: string[];
  /** Rules whose owner, with the origin appended, would not fit in a DNS name (left out, and logged). */
  tooLong: string[];
}

/** Octets `rel` + `origin` take as a wire name. */
function wireLength(rel: string, originOctets: number): number {
  return rel.length + 1 + originOctets;
}

/** Every owner name the zone `origin` (no trailing dot) serves for the generation's enforced lists. */
export function exportedOwners(g: Generation, origin: string): Owners {
  const d = g.matcher.data;
  const originOctets = origin ? origin.length + 2 : 1;
  const seen = new Set<string>();
  const names: string[] = [];
  const tooLong: string[] = [];
  const add = (name: string): void => {
    if (seen.has(name)) return; // the same rule in two lists, or in two files
    seen.add(name);
    names.push(name);
  };
  for (let r = 0; r < d.start.length; r++) {
    if (!g.enforced[d.listOf[r]!]) continue;
    const s = d.start[r]!;
    const name = Buffer.from(d.bytes.buffer, d.bytes.byteOffset + s, d.len[r]!).toString('latin1');
    // `*.name` is the longer of the two: if it does not fit, neither is served, so that a secondary
    // never blocks a name without the names below it (the rule's meaning would change).
    if (wireLength(`*.${name}`, originOctets) > MAX_NAME_OCTETS) {
      tooLong.push(d.subOnly[r] ? `*.${name}` : name);
      continue;
    }
    if (!d.subOnly[r]) add(name);
    add(`*.${name}`);
  }
  return { names, tooLong };
}

/**
 * An order-independent checksum of a set of names: whether the zone changed across a restart is
 * decided by it (state/serial.ts keeps it next to the serial), without keeping the names on disk.
 * Two FNV-1a variants summed over the names, plus the count: a change that leaves all three equal
 * has odds of about 2^-64.
 */
export function ownersChecksum(names: readonly string[]): string {
  let a = 0;
  let b = 0;
  for (const n of names) {
    let h1 = 0x811c9dc5 | 0;
    let h2 = 0x050c5d1f | 0;
    for (let i = 0; i < n.length; i++) {
      const c = n.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x01000193) ^ (h2 >>> 15);
    }
    a = (a + (h1 >>> 0)) % 0x1_0000_0000;
    b = (b + (h2 >>> 0)) % 0x1_0000_0000;
  }
  return `${names.length}-${a.toString(16)}-${b.toString(16)}`;
}
