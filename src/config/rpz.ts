// blocking.rpz (docs/rpz.md): Response Policy Zones from files, or pulled from a primary. One section of
// the config (config.ts maps the keys and checks the names against the lists').
import type { YamlReader, YNode } from './yamlReader.js';
import { normalizeDomain, parseEndpoint, readTsig, resolvePath, type SourceRef, type TsigConfig } from './values.js';

/** An rpz zone's `override:` (RFC draft-vixie-dnsop-dns-rpz §5 "policy override"), what policy/rpz/zone.ts applies. */
export type RpzOverride = 'none' | 'nxdomain' | 'nodata' | 'passthru' | 'drop' | 'disabled';
export const RPZ_OVERRIDES: readonly RpzOverride[] = ['none', 'nxdomain', 'nodata', 'passthru', 'drop', 'disabled'];

/** One blocking.rpz entry. */
export interface RpzSpec {
  name: string;
  /** The zone file; for a zone pulled from a primary, the copy kept under state.dir/rpz/ (policy/rpz/feed.ts). */
  file: string;
  /** The zone's name (its SOA owner), when the file does not say it with $ORIGIN or absolute names; required with primary. */
  zone?: string;
  /** Pulled by AXFR/IXFR from this primary (RFC 5936, RFC 1995), which may NOTIFY us (RFC 1996). */
  primary?: { host: string; port: number };
  /** Transfers (and NOTIFY) signed with this key (RFC 8945). */
  tsig?: TsigConfig;
  override: RpzOverride;
  ref: SourceRef;
}

/** blocking.rpz: [{ name, file, zone?, override? }] (docs/rpz.md). */
export function readRpz(r: YamlReader, node: YNode, path: string, dir: string): RpzSpec[] {
  const out: RpzSpec[] = [];
  r.seq(node, path).forEach((item, i) => {
    const q = `${path}[${i}]`;
    const spec: Partial<RpzSpec> = { override: 'none', ref: { file: r.file, ...r.pos(item) } };
    r.map(item, q, {
      name: (v, p) => {
        const name = r.string(v, p);
        if (name !== undefined && !/^[A-Za-z0-9_-]+$/.test(name)) r.fail(v, p, 'a list name may use letters, digits, - and _ (it is a metric label)');
        else if (name !== undefined && out.some((z) => z.name === name)) r.fail(v, p, `"${name}" is already the name of another zone in blocking.rpz`);
        else spec.name = name;
      },
      file: (v, p) => (spec.file = resolvePath(dir, r.string(v, p))),
      primary: (v, p) => {
        const text = r.string(v, p);
        const ep = text === undefined ? undefined : parseEndpoint(text);
        if (ep === undefined) return;
        if (typeof ep === 'string') r.fail(v, p, `expected the primary as IP:PORT (a zone transfer source), got "${text}": ${ep}`);
        else if (ep.port === 0) r.fail(v, p, "the primary's port must be 1 to 65535, got 0");
        else spec.primary = { host: ep.host, port: ep.port };
      },
      tsig: (v, p) => (spec.tsig = readTsig(r, v, p, dir)),
      zone: (v, p) => {
        const s = r.string(v, p);
        const zone = s === undefined ? '' : normalizeDomain(s);
        if (!zone) r.fail(v, p, `expected the zone's name, like threat-feed.rpz.example., got "${s}"`);
        else spec.zone = zone;
      },
      override: (v, p) => (spec.override = r.oneOf(v, p, RPZ_OVERRIDES) ?? spec.override),
    });
    if (spec.tsig && !spec.primary) r.fail(item, q, 'tsig: signs transfers from a primary; this zone has none');
    else if (spec.primary && spec.file) r.fail(item, q, 'expected file: or primary:, not both (a zone pulled from a primary is kept under state.dir)');
    else if (spec.primary && !spec.zone) r.fail(item, q, 'a zone pulled from a primary needs zone: (its name, as the primary serves it)');
    else if (spec.name && (spec.file || spec.primary)) out.push({ ...spec, file: spec.file ?? '' } as RpzSpec);
    else if (!r.problems.length) r.fail(item, q, 'expected { name: NAME, file: ZONE-FILE } or { name: NAME, primary: IP:PORT, zone: ZONE } (and optionally override:)');
  });
  return out;
}
