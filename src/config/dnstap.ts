// log.dnstap (issue 20 §2): where the Frame Streams collector listens, and what is sent. One section of
// the config (config.ts maps the keys).
import type { YamlReader, YNode } from './yamlReader.js';
import { parseEndpoint, resolveOptional, type Endpoint } from './values.js';

/** log.dnstap: where the Frame Streams collector listens (exactly one of socket, tcp), and what is sent. */
export interface DnstapConfig {
  socket?: string;
  tcp?: Endpoint;
  /** Dnstap.identity; unset = the host name. */
  identity?: string;
  messages: ('client' | 'forwarder')[];
  /** Messages that may wait for a slow or absent collector before new ones are dropped. */
  queue: number;
}

export function readDnstap(r: YamlReader, node: YNode, path: string, dir: string): DnstapConfig | undefined {
  const d: DnstapConfig = { messages: ['client', 'forwarder'], queue: 10_000 };
  const ok = r.map(node, path, {
    socket: (v, q) => (d.socket = resolveOptional(dir, r.string(v, q))),
    tcp: (v, q) => {
      const s = r.string(v, q);
      const ep = s === undefined ? undefined : parseEndpoint(s);
      if (typeof ep === 'string') r.fail(v, q, ep);
      else if (ep && ep.port === 0) r.fail(v, q, 'the collector\'s port must be 1 to 65535, got 0');
      else d.tcp = ep;
    },
    identity: (v, q) => (d.identity = r.string(v, q)),
    messages: (v, q) => {
      const seen = r.seq(v, q).map((item, i) => r.oneOf(item, `${q}[${i}]`, ['client', 'forwarder'] as const));
      if (!seen.length) r.fail(v, q, 'expected client, forwarder or both');
      d.messages = [...new Set(seen.filter((m) => m !== undefined))];
    },
    queue: (v, q) => (d.queue = r.integer(v, q, 1, 1_000_000) ?? d.queue),
  });
  if (!ok) return undefined;
  if ((d.socket === undefined) === (d.tcp === undefined)) {
    r.fail(node, path, 'expected exactly one of socket: PATH (a unix socket) or tcp: "HOST:PORT"');
    return undefined;
  }
  return d;
}
