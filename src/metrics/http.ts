// GET /metrics, /healthz, /readyz (and the report API); anything else is 404.
//
// HTTP shares the thread that answers DNS, so its work is bounded in front
// of every route (issue 8: 400 keep-alive clients looping on /metrics pushed
// DNS p50 to 2.3 s, and a flood of 5 MB reports lost all DNS for 10 s):
// - connections: at most MAX_CONNECTIONS; more are closed at accept;
// - requests: at most MAX_REQUESTS_PER_CLIENT a second from one address and
//   MAX_REQUESTS_PER_SECOND from all, MAX_IN_FLIGHT at once; a request over
//   budget gets its 503 only after REFUSE_AFTER_MS, so a client looping on
//   a connection asks once a second instead of thousands of times;
// - idle and slow clients: short keep-alive, header and request timeouts;
// - /metrics renders at most once per metricsMaxAgeMs, whoever asks;
// - JSON routes page their answers (the compliance report: querylog/report.ts).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';

/** Prometheus and a few admins need a handful; a flood gets no more than this. */
export const MAX_CONNECTIONS = 64;
/** Requests being answered at once (a body still being written counts). */
export const MAX_IN_FLIGHT = 32;
/** Requests per second across all clients: Prometheus scrapes every few seconds. */
export const MAX_REQUESTS_PER_SECOND = 100;
/** Requests per second from one client address (a burst of this many is fine: `sinkhole report` pages). */
export const MAX_REQUESTS_PER_CLIENT = 20;
/** How long a request over budget waits for its 503. */
export const REFUSE_AFTER_MS = 1000;
/** Client addresses with a budget of their own; past this the table starts afresh (bounded memory). */
const MAX_TRACKED_CLIENTS = 4096;
const KEEP_ALIVE_MS = 5000;
const HEADERS_TIMEOUT_MS = 5000;
const REQUEST_TIMEOUT_MS = 10_000;

export interface HttpRoutes {
  registry: Registry;
  /** Listeners bound and a policy generation loaded, and not shutting down. */
  ready: () => boolean;
  /** Lines added to the /readyz body: what is degraded while still serving (a failing audit trail). */
  readyNotes?: () => string[];
  /** Extra JSON endpoints, e.g. /api/blocked-clients: given the query string, they return the JSON text (render it once, serve it often). */
  json?: Record<string, (params: URLSearchParams) => string>;
  /** How long a rendered /metrics text is served again (default 1 s; 0 renders every time). */
  metricsMaxAgeMs?: number;
}

/** A token bucket: `rate` tokens a second, holding at most `rate`. */
class RateLimit {
  private tokens: number;
  private last = performance.now();

  constructor(private readonly rate: number) {
    this.tokens = rate;
  }

  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

export async function startHttp(endpoint: Endpoint, routes: HttpRoutes, log: Logger): Promise<{ address: AddressInfo; close(): Promise<void> }> {
  const maxAge = routes.metricsMaxAgeMs ?? 1000;
  let rendered: { at: number; body: Promise<Buffer> } | undefined;
  /** One render serves every scrape within maxAge: a flood of scrapes costs one render per interval. */
  const metrics = (): Promise<Buffer> => {
    const now = performance.now();
    if (!rendered || now - rendered.at >= maxAge) {
      const body = routes.registry.metrics().then((text) => Buffer.from(text));
      rendered = { at: now, body };
      body.catch(() => {
        if (rendered?.body === body) rendered = undefined;
      });
    }
    return rendered.body;
  };
  const everyone = new RateLimit(MAX_REQUESTS_PER_SECOND);
  const perClient = new Map<string, RateLimit>();
  const withinBudget = (address: string): boolean => {
    let mine = perClient.get(address);
    if (!mine) {
      if (perClient.size >= MAX_TRACKED_CLIENTS) perClient.clear();
      perClient.set(address, (mine = new RateLimit(MAX_REQUESTS_PER_CLIENT)));
    }
    return mine.take() && everyone.take();
  };
  let inFlight = 0;

  const server = http.createServer((req, res) => {
    const reply = (status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void => {
      if (res.destroyed) return;
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    // The bounds come before any route. What is over them waits, then gets a few bytes: one
    // timer, no work, and a client that loops on its connection is slowed to one request a second.
    if (inFlight >= MAX_IN_FLIGHT || !withinBudget(req.socket.remoteAddress ?? '')) {
      const timer = setTimeout(() => reply(503, 'text/plain', 'busy; try again shortly\n', { 'Retry-After': '1' }), REFUSE_AFTER_MS);
      res.once('close', () => clearTimeout(timer));
      return;
    }
    inFlight++;
    res.once('close', () => inFlight--);
    const url = new URL(req.url ?? '/', 'http://sinkhole');
    const path = url.pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'method not allowed\n');
    if (path === '/healthz') return reply(200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      const notes = routes.readyNotes?.() ?? [];
      const body = notes.map((n) => `${n}\n`).join('');
      return routes.ready() ? reply(200, 'text/plain', `ready\n${body}`) : reply(503, 'text/plain', `not ready\n${body}`);
    }
    if (path === '/metrics') {
      metrics()
        .then((body) => reply(200, routes.registry.contentType, body))
        .catch((e: unknown) => {
          log.error('SH_METRICS', 'metrics scrape failed', { error: String(e) });
          reply(500, 'text/plain', 'metrics failed\n');
        });
      return;
    }
    const json = routes.json?.[path];
    if (json) {
      try {
        return reply(200, 'application/json', `${json(url.searchParams)}\n`);
      } catch (e) {
        // A bad query parameter: the handler says what it expected.
        return reply(400, 'text/plain', `${(e as Error).message}\n`);
      }
    }
    reply(404, 'text/plain', 'not found\n');
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
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
