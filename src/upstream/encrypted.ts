// Builds the transport of a tls:// or https:// upstream from its spec and
// upstreams.tls; the forwarder calls this once per upstream and then only
// `exchange`.
import type { UpstreamTls } from '../config/config.js';
import { DohUpstream } from './https.js';
import type { UpstreamSpec } from '../config/upstreamSpec.js';
import { DotUpstream } from './tls.js';
import { systemTrust, type TlsTrust } from './tlsDial.js';
import type { TransportContext, UpstreamTransport } from './transport.js';

export function encryptedTransport(spec: UpstreamSpec, tls: UpstreamTls | undefined, ctx: Omit<TransportContext, 'label'>): UpstreamTransport | undefined {
  if (spec.transport !== 'tls' && spec.transport !== 'https') return undefined;
  const trust: TlsTrust = {
    ca: tls?.ca ?? systemTrust(),
    // Pins are keyed by the name the certificate is checked against, or the IP when there is none.
    pins: tls?.pins[spec.authName ?? spec.host] ?? [],
  };
  const target = { host: spec.host, port: spec.port, authName: spec.authName, alpn: spec.transport === 'tls' ? ['dot'] : ['h2'] };
  const full = { ...ctx, label: spec.label };
  return spec.transport === 'tls' ? new DotUpstream(target, trust, full) : new DohUpstream(target, spec.path ?? '/dns-query', trust, full);
}
