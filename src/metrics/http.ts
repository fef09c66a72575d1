// GET /metrics, /healthz, /readyz (and the report API and admin page); anything else is 404.
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';

export interface HttpRoutes {
  registry: Registry;
  /** Listeners bound and a policy generation loaded, and not shutting down. */
  ready: () => boolean;
  /** A degraded state to report on /readyz (still 200: DNS is served), e.g. the policy came from the last good snapshot. */
  degraded?: () => string | undefined;
  /** Extra JSON endpoints, e.g. /api/blocked-clients. */
  json?: Record<string, () => unknown>;
  /** Runs before /metrics renders (gathers the counts of the other query threads). */
  beforeMetrics?: () => Promise<void>;
  /** Server-rendered pages, e.g. / (the admin page). */
  html?: Record<string, () => string | Promise<string>>;
  /** listen.httpToken: when set, every path but /healthz and /metrics asks for `Authorization: Bearer <token>`. */
  token?: () => string | undefined;
}

/** Paths a probe or Prometheus reads without the token: they say nothing about members' devices. */
const OPEN_PATHS = new Set(['/healthz', '/metrics']);

/** Constant-time comparison, so the response time does not reveal how much of a guess was right. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header?.startsWith('Bearer ') ? header.slice(7).trim() : '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

export async function startHttp(endpoint: Endpoint, routes: HttpRoutes, log: Logger): Promise<{ address: AddressInfo; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const reply = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
    const token = routes.token?.();
    if (token !== undefined && !OPEN_PATHS.has(path) && !tokenMatches(req.headers.authorization, token)) {
      res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Bearer realm="sinkhole"', 'Cache-Control': 'no-store' });
      return res.end('a bearer token is required (listen.httpToken)\n');
    }
    if (path === '/healthz') return reply(200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      if (!routes.ready()) return reply(503, 'text/plain', 'not ready\n');
      const degraded = routes.degraded?.();
      return reply(200, 'text/plain', degraded ? `ready, degraded: ${degraded}\n` : 'ready\n');
    }
    if (path === '/metrics') {
      (routes.beforeMetrics?.() ?? Promise.resolve())
        .then(() => routes.registry.metrics())
        .then((text) => reply(200, routes.registry.contentType, text))
        .catch((e: unknown) => {
          log.error('SH_METRICS', 'metrics scrape failed', { error: String(e) });
          reply(500, 'text/plain', 'metrics failed\n');
        });
      return;
    }
    const json = routes.json?.[path];
    if (json) {
      // A route may answer later (the PostgreSQL report); a failure is a 500, never an unhandled rejection.
      Promise.resolve()
        .then(json)
        .then((body) => reply(200, 'application/json', JSON.stringify(body, null, 2) + '\n'))
        .catch((e: unknown) => {
          log.error('SH_INTERNAL', 'HTTP route failed', { path, error: String(e) });
          reply(500, 'text/plain', 'failed\n');
        });
      return;
    }
    const html = routes.html?.[path];
    if (html) {
      Promise.resolve()
        .then(html)
        .then((body) => reply(200, 'text/html; charset=utf-8', body))
        .catch((e: unknown) => {
          log.error('SH_INTERNAL', 'HTTP page failed', { path, error: String(e) });
          reply(500, 'text/plain', 'failed\n');
        });
      return;
    }
    reply(404, 'text/plain', 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(endpoint.port, endpoint.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
