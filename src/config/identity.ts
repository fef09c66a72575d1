// sinkhole.yaml `identity:`: the DHCP lease files that name devices, and static names for MACs with
// reserved addresses. Every problem names file:line:col (config.ts).
import { resolve } from 'node:path';
import { normalizeMac } from '../net/mac.js';
import type { Config } from './schema.js';
import { LEASE_FORMATS, type LeaseFormat } from './values.js';
import type { YamlReader, YNode } from './yamlReader.js';

export function readIdentity(r: YamlReader, n: YNode, p: string, c: Config): void {
  r.map(n, p, {
    leases: (v, q) => {
      c.identity.leases = r.seq(v, q).flatMap((item, i) => {
        const src: { format?: LeaseFormat; file?: string } = {};
        r.map(item, `${q}[${i}]`, {
          format: (x, xq) => (src.format = r.oneOf(x, xq, LEASE_FORMATS)),
          file: (x, xq) => {
            const f = r.string(x, xq);
            if (f !== undefined) src.file = resolve(c.dir, f);
          },
        });
        if (src.format && src.file) return [{ format: src.format, file: src.file }];
        if (!r.problems.length) r.fail(item, `${q}[${i}]`, 'expected { format: kea-csv | dnsmasq | dhcpd | csv, file: PATH }');
        return [];
      });
    },
    static: (v, q) => {
      const m = new Map<string, string>();
      for (const { key, keyNode, value } of r.entries(v, q)) {
        const mac = normalizeMac(key);
        const name = r.string(value, `${q}.${key}`);
        if (!mac) r.fail(keyNode, `${q}.${key}`, `expected a MAC address like aa:bb:cc:dd:ee:ff as the key`);
        else if (name !== undefined) m.set(mac, name.trim().toLowerCase());
      }
      c.identity.static = m;
    },
  });
}
