// sinkhole.yaml `upstreams:`: the servers (udp, tcp, tls://, https://, or `system`), conditional
// forwarding, the strategy and limits, and the CA, pins and bootstrap addresses of encrypted upstreams
// (RFC 7858 §4.2). Every problem names file:line:col (config.ts).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { Config } from './schema.js';
import { parseUpstream, systemResolvers, type UpstreamSpec } from './upstreamSpec.js';
import { MINUTE, normalizeDomain, resolvePath } from './values.js';
import type { YamlReader, YNode } from './yamlReader.js';

export function readUpstreams(r: YamlReader, n: YNode, p: string, c: Config): void {
  const bootstrap = new Map<string, string>();
  const upstreamList = (node: YNode, p: string): UpstreamSpec[] => {
    const out: UpstreamSpec[] = [];
    for (const { value, node: n } of r.strings(node, p)) {
      if (value === 'system') {
        const sys = systemResolvers();
        if (!sys.length) r.fail(n, p, '"system" found no nameserver in /etc/resolv.conf');
        out.push(...sys);
        continue;
      }
      const spec = parseUpstream(value, bootstrap);
      if (typeof spec === 'string') r.fail(n, p, spec);
      else out.push(spec);
    }
    if (!out.length && !r.problems.length) r.fail(node, p, 'expected at least one upstream server');
    return out;
  };
    // The server lists are read after the whole block, so upstreams.tls.bootstrap may come after them.
    const lists: { v: YNode; q: string; conditional: boolean }[] = [];
    let tlsNode: { v: YNode; q: string } | undefined;
    r.map(n, p, {
      servers: (v, q) => lists.push({ v, q, conditional: false }),
      conditional: (v, q) => lists.push({ v, q, conditional: true }),
      tls: (v, q) => (tlsNode = { v, q }),
      strategy: (v, q) => (c.upstreams.strategy = r.oneOf(v, q, ['failover', 'random', 'race'] as const) ?? c.upstreams.strategy),
      timeout: (v, q) => (c.upstreams.timeoutMs = r.duration(v, q, 50, MINUTE) ?? c.upstreams.timeoutMs),
      sourcePorts: (v, q) => (c.upstreams.sourcePorts = r.integer(v, q, 1, 16384) ?? c.upstreams.sourcePorts),
      sourcePortReuse: (v, q) => (c.upstreams.sourcePortReuse = r.integer(v, q, 1, 10000) ?? c.upstreams.sourcePortReuse),
      maxInflight: (v, q) => (c.upstreams.maxInflight = r.integer(v, q, 1, 100_000) ?? c.upstreams.maxInflight),
    });
    const pins = tlsNode ? readUpstreamTls(r, tlsNode.v, tlsNode.q, c, bootstrap) : [];
    for (const { v, q, conditional } of lists) {
      if (!conditional) c.upstreams.servers = upstreamList(v, q);
      else {
        c.upstreams.conditional = r.entries(v, q).map(({ key, keyNode, value }) => {
          const domain = normalizeDomain(key);
          if (!domain) r.fail(keyNode, `${q}.${key}`, 'expected a domain name');
          return { domain, servers: upstreamList(value, `${q}.${key}`) };
        });
      }
    }
    // A pin for a name no upstream uses would pin nothing: almost surely a typo.
    const names = new Set(
      [...c.upstreams.servers, ...c.upstreams.conditional.flatMap((x) => x.servers)]
        .filter((s) => s.transport === 'tls' || s.transport === 'https')
        .map((s) => s.authName ?? s.host),
    );
    for (const { name, node, q } of pins) {
      if (!names.has(name)) r.fail(node, q, `no tls:// or https:// upstream is checked against "${name}"; pins are keyed by the #name of an upstream (or its IP when it has none)`);
    }
}

/** SHA-256 digest as RFC 7469 prints it: 32 bytes in base64. */
const PIN = /^sha256\/([A-Za-z0-9+/]{43}=)$/;

/**
 * upstreams.tls: `ca` (a PEM file), `pins` (name → ["sha256/BASE64"]) and
 * `bootstrap` (name → IP). Fills c.upstreams.tls and `bootstrap`; returns
 * the pin names, checked once the upstreams are known.
 */
function readUpstreamTls(
  r: YamlReader, node: YNode, path: string, c: Config, bootstrap: Map<string, string>,
): { name: string; node: YNode; q: string }[] {
  const names: { name: string; node: YNode; q: string }[] = [];
  r.map(node, path, {
    ca: (v, q) => {
      const file = resolvePath(c.dir, r.string(v, q));
      if (!file) return;
      let pem: string;
      try {
        pem = readFileSync(file, 'utf8');
      } catch (e) {
        return r.fail(v, q, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
      if (!blocks.length) return r.fail(v, q, `${file} holds no PEM certificate`);
      for (const [i, b] of blocks.entries()) {
        try {
          new X509Certificate(b);
        } catch (e) {
          return r.fail(v, q, `certificate ${i + 1} in ${file} does not parse: ${(e as Error).message}`);
        }
      }
      c.upstreams.tls.ca = pem;
    },
    pins: (v, q) => {
      for (const { key, keyNode, value } of r.entries(v, q)) {
        const name = key.toLowerCase().replace(/\.$/, '');
        names.push({ name, node: keyNode, q: `${q}.${key}` });
        c.upstreams.tls.pins[name] = r.strings(value, `${q}.${key}`).flatMap(({ value: pin, node: n }) => {
          const m = PIN.exec(pin);
          if (!m || Buffer.from(m[1]!, 'base64').length !== 32) {
            r.fail(n, `${q}.${key}`, `expected "sha256/" and the base64 SHA-256 of the certificate's public key (44 characters), got "${pin}"`);
            return [];
          }
          return [m[1]!];
        });
      }
    },
    bootstrap: (v, q) => {
      for (const { key, value } of r.entries(v, q)) {
        const ip = r.string(value, `${q}.${key}`);
        if (ip === undefined) continue;
        if (!isIP(ip)) r.fail(value, `${q}.${key}`, `expected the IP address of ${key}, got "${ip}"`);
        else bootstrap.set(key.toLowerCase().replace(/\.$/, ''), ip);
      }
    },
  });
  return names;
}
