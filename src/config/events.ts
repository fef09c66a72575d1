// events: (issue 20 §1, docs/events.md): the threshold, window and cooldown of compliance events, and
// their sinks (syslog over UDP/TCP/TLS, signed webhooks). One section of the config (config.ts maps the keys).
import { readFileSync } from 'node:fs';
import type { YamlReader, YNode } from './yamlReader.js';
import { DAY, HOUR, MINUTE, readableFile } from './values.js';

/** events: when a device is announced, and where the announcement goes (src/events/). */
export interface EventsConfig {
  threshold: number;
  windowMs: number;
  cooldownMs: number;
  /** (device, list) pairs tracked at once; past this a new pair is dropped and counted. */
  maxTracked: number;
  /** Undelivered events kept per sink (in state.dir/events/); past this the oldest are dropped and counted. */
  spool: number;
  syslog: SyslogSinkConfig[];
  webhook: WebhookSinkConfig[];
}

export interface SyslogSinkConfig {
  transport: 'udp' | 'tcp' | 'tls';
  host: string;
  port: number;
  /** As written, for labels and logs. */
  address: string;
  ca?: string;
  cert?: string;
  key?: string;
  format: 'cef';
}

export interface WebhookSinkConfig {
  url: string;
  secretFile: string;
  /** PEM file of trusted CAs; default: the system's trust store. */
  ca?: string;
}

export function readEvents(r: YamlReader, node: YNode, path: string, dir: string): EventsConfig | undefined {
  const e: EventsConfig = { threshold: 20, windowMs: 10 * MINUTE, cooldownMs: HOUR, maxTracked: 100_000, spool: 10_000, syslog: [], webhook: [] };
  const ok = r.map(node, path, {
    // The threshold sizes a ring of timestamps per tracked pair (8 bytes each), hence its bound.
    threshold: (v, q) => (e.threshold = r.integer(v, q, 1, 10_000) ?? e.threshold),
    window: (v, q) => (e.windowMs = r.duration(v, q, 1000, DAY) ?? e.windowMs),
    cooldown: (v, q) => (e.cooldownMs = r.duration(v, q, 1000, 7 * DAY) ?? e.cooldownMs),
    maxTracked: (v, q) => (e.maxTracked = r.integer(v, q, 1, 10_000_000) ?? e.maxTracked),
    spool: (v, q) => (e.spool = r.integer(v, q, 1, 1_000_000) ?? e.spool),
    syslog: (v, q) => {
      e.syslog = r.seq(v, q).flatMap((item, i) => {
        const iq = `${q}[${i}]`;
        const s: Partial<SyslogSinkConfig> & { format: 'cef' } = { format: 'cef' };
        let addressNode: YNode | undefined;
        r.map(item, iq, {
          address: (x, xq) => {
            addressNode = x;
            const text = r.string(x, xq);
            if (text === undefined) return;
            const m = /^(udp|tcp|tls):\/\/(.+)$/.exec(text);
            const ep = m ? parseHostPort(m[2]!) : undefined;
            if (!m || !ep) r.fail(x, xq, `expected udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT, got "${text}"`);
            else Object.assign(s, { transport: m[1] as SyslogSinkConfig['transport'], host: ep.host, port: ep.port, address: text });
          },
          ca: (x, xq) => (s.ca = readableFile(r, x, xq, dir)),
          cert: (x, xq) => (s.cert = readableFile(r, x, xq, dir)),
          key: (x, xq) => (s.key = readableFile(r, x, xq, dir)),
          format: (x, xq) => (s.format = r.oneOf(x, xq, ['cef'] as const) ?? 'cef'),
        });
        if (!s.transport) {
          if (!addressNode) r.fail(item, iq, 'expected address: udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT');
          return [];
        }
        if (s.transport !== 'tls' && (s.ca || s.cert || s.key)) r.fail(item, iq, 'ca, cert and key are for tls:// only');
        if ((s.cert === undefined) !== (s.key === undefined)) r.fail(item, iq, 'a client certificate needs both cert and key');
        return [s as SyslogSinkConfig];
      });
    },
    webhook: (v, q) => {
      e.webhook = r.seq(v, q).flatMap((item, i) => {
        const iq = `${q}[${i}]`;
        const w: Partial<WebhookSinkConfig> = {};
        r.map(item, iq, {
          url: (x, xq) => {
            const text = r.string(x, xq);
            if (text === undefined) return;
            // HTTPS only: the body names devices, and the signature authenticates it but does not hide it.
            if (!/^https:\/\//.test(text) || !URL.canParse(text)) r.fail(x, xq, `expected an https:// URL, got "${text}"`);
            else w.url = text;
          },
          secretFile: (x, xq) => {
            const f = readableFile(r, x, xq, dir);
            if (f === undefined) return;
            if (readFileSync(f, 'utf8').trim().length < 16) r.fail(x, xq, `${f} must hold a secret of at least 16 characters`);
            else w.secretFile = f;
          },
          ca: (x, xq) => (w.ca = readableFile(r, x, xq, dir)),
        });
        if (!w.url || !w.secretFile) {
          if (!r.problems.length) r.fail(item, iq, 'expected { url: https://..., secretFile: FILE }');
          return [];
        }
        return [w as WebhookSinkConfig];
      });
    },
  });
  return ok ? e : undefined;
}

/** "host:port" or "[v6]:port" where host may be a name (a SIEM is often named, unlike an upstream). */
function parseHostPort(text: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]/]+):(\d+)$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: m[1]!, port } : undefined;
}
