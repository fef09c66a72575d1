// listen.rpz: serve the enforced lists as a Response Policy Zone to other
// resolvers (docs/rpz.md "Serving sinkhole's lists as RPZ"). Read here, in its
// own module, so that config.ts only names the key.
import { parseCidr } from '../net/cidr.js';
import type { YamlReader, YNode } from './yamlReader.js';
import { normalizeDomain, parseEndpoint, readTsig, type Endpoint, type TsigConfig } from './values.js';

export interface RpzExportConfig {
  address: Endpoint;
  /** The zone's name, lower-case, without the trailing dot. */
  zone: string;
  /** Who may query and transfer the zone; default loopback only. */
  allow: string[];
  /** When set, transfers must be signed with this key (RFC 8945), and NOTIFYs are. */
  tsig?: TsigConfig;
  /** Secondaries told of each new serial (RFC 1996), as IP:port. */
  notify: Endpoint[];
  /** Transfers served at once; past it a request is refused (REFUSED) until one ends. */
  maxTransfers: number;
  /** A connection is closed this long after it opened, whatever it is doing. */
  transferTimeoutMs: number;
}

const HOUR = 3_600_000;

export function readRpzExport(r: YamlReader, node: YNode, path: string, dir: string): RpzExportConfig | undefined {
  const out: Partial<RpzExportConfig> = { allow: ['127.0.0.0/8', '::1/128'], notify: [], maxTransfers: 10, transferTimeoutMs: 60_000 };
  const ok = r.map(node, path, {
    address: (v, q) => {
      const s = r.string(v, q);
      const ep = s === undefined ? undefined : parseEndpoint(s);
      if (typeof ep === 'string') r.fail(v, q, ep);
      else out.address = ep;
    },
    zone: (v, q) => {
      const s = r.string(v, q);
      const zone = s === undefined ? '' : normalizeDomain(s);
      if (!zone) r.fail(v, q, `expected the zone's name, like tiktok.rpz.sinkhole., got "${s}"`);
      else out.zone = zone;
    },
    allow: (v, q) => {
      out.allow = r.strings(v, q).flatMap(({ value, node: n }) => {
        const net = parseCidr(value);
        if (typeof net === 'string') {
          r.fail(n, q, net);
          return [];
        }
        return [value];
      });
    },
    tsig: (v, q) => (out.tsig = readTsig(r, v, q, dir)),
    notify: (v, q) => {
      out.notify = r.strings(v, q).flatMap(({ value, node: n }) => {
        const ep = parseEndpoint(value);
        if (typeof ep === 'string') {
          r.fail(n, q, ep);
          return [];
        }
        if (ep.port === 0) {
          r.fail(n, q, `a secondary's port must be 1 to 65535, got 0`);
          return [];
        }
        return [ep];
      });
    },
    maxTransfers: (v, q) => (out.maxTransfers = r.integer(v, q, 1, 1000) ?? out.maxTransfers),
    transferTimeout: (v, q) => (out.transferTimeoutMs = r.duration(v, q, 1000, HOUR) ?? out.transferTimeoutMs),
  });
  if (!ok) return undefined;
  if (!out.address || !out.zone) {
    if (!r.problems.length) r.fail(node, path, 'expected at least { address: "HOST:PORT", zone: ZONE-NAME }');
    return undefined;
  }
  return out as RpzExportConfig;
}
