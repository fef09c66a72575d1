// sinkhole.yaml `listen:`: where DNS (UDP/TCP, DoT, DoH), HTTP and the RPZ export are served, the TCP
// limits, the HTTP token and the DoT/DoH certificate. Every problem names file:line:col (config.ts).
import type { Config } from './schema.js';
import { loadTlsFiles, type TlsPaths } from './tlsPair.js';
import { readRpzExport } from './rpzExport.js';
import { CREDENTIAL_PREFIX, credentialNameProblem, DAY, HOUR, parseEndpoint, resolveOptional, resolvePath, type Endpoint } from './values.js';
import type { YamlReader, YNode } from './yamlReader.js';

export function readListen(r: YamlReader, n: YNode, p: string, c: Config): void {
  r.map(n, p, {
    dns: (v, q) => {
      const eps: Endpoint[] = [];
      for (const { value, node } of r.strings(v, q)) {
        const ep = parseEndpoint(value);
        if (typeof ep === 'string') r.fail(node, q, ep);
        else eps.push(ep);
      }
      c.listen.dns = eps;
    },
    http: (v, q) => {
      const s = r.string(v, q);
      const ep = s === undefined ? undefined : parseEndpoint(s);
      if (typeof ep === 'string') r.fail(v, q, ep);
      else c.listen.http = ep;
    },
    tcpIdleTimeout: (v, q) => (c.listen.tcpIdleTimeoutMs = r.duration(v, q, 100, HOUR) ?? c.listen.tcpIdleTimeoutMs),
    tcpMaxConnections: (v, q) => (c.listen.tcpMaxConnections = r.integer(v, q, 1, 1_000_000) ?? c.listen.tcpMaxConnections),
    tcpMaxConnectionsPerClient: (v, q) =>
      (c.listen.tcpMaxConnectionsPerClient = r.integer(v, q, 1, 1_000_000) ?? c.listen.tcpMaxConnectionsPerClient),
    tcpConnectionLifetime: (v, q) => (c.listen.tcpConnectionLifetimeMs = r.duration(v, q, 1000, DAY) ?? c.listen.tcpConnectionLifetimeMs),
    httpToken: (v, q) => {
      const s = r.string(v, q);
      // credential:NAME is read from $CREDENTIALS_DIRECTORY when used (http/token.ts), not resolved as a path.
      if (s?.startsWith(CREDENTIAL_PREFIX)) {
        const problem = credentialNameProblem(s.slice(CREDENTIAL_PREFIX.length));
        if (problem) r.fail(v, q, problem);
        else c.listen.httpToken = s;
      } else c.listen.httpToken = resolveOptional(c.dir, s);
    },
    dot: (v, q) => (c.listen.dot = endpoints(r, v, q)),
    doh: (v, q) => (c.listen.doh = endpoints(r, v, q)),
    tls: (v, q) => (c.listen.tls = readListenTls(r, v, q, c.dir)),
    rpz: (v, q) => (c.listen.rpz = readRpzExport(r, v, q, c.dir)),
  });
}

function endpoints(r: YamlReader, node: YNode, path: string): Endpoint[] {
  const eps: Endpoint[] = [];
  for (const { value, node: n } of r.strings(node, path)) {
    const ep = parseEndpoint(value);
    if (typeof ep === 'string') r.fail(n, path, ep);
    else eps.push(ep);
  }
  return eps;
}

/** listen.tls: both files, readable, and a certificate with its own key (checked here, so `validate` says so). */
function readListenTls(r: YamlReader, node: YNode, path: string, dir: string): TlsPaths | undefined {
  const out: Partial<TlsPaths> = {};
  r.map(node, path, {
    cert: (v, q) => (out.cert = resolvePath(dir, r.string(v, q))),
    key: (v, q) => (out.key = resolvePath(dir, r.string(v, q))),
  });
  if (!out.cert || !out.key) return r.fail(node, path, 'expected both cert and key files (PEM)');
  const loaded = loadTlsFiles(out as TlsPaths);
  if (typeof loaded === 'string') return r.fail(node, path, loaded);
  return out as TlsPaths;
}
