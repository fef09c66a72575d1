// GET /metrics, /healthz, /readyz (and the report API and admin page); anything else is 404.
//
// HTTP shares the thread that answers DNS, so its work is bounded in front
// of every route (issue 8: 400 keep-alive clients looping on /metrics pushed
// DNS p50 to 2.3 s, and a flood of 5 MB reports lost all DNS for 10 s):
// - connections: at most MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT from one
//   address, taken at accept (issue 23: 500 connections from one address made
//   /healthz fail, and a failed kubelet probe restarts the instance); when the
//   table is full a newcomer takes an idle slot of the biggest holder, one
//   still waiting for its headers first (transport/tcpSlots.ts);
// - requests: at most MAX_REQUESTS_PER_CLIENT a second from one address and
//   MAX_REQUESTS_PER_SECOND from all, MAX_IN_FLIGHT at once; a request over
//   budget gets its 503 only after REFUSE_AFTER_MS, so a client looping on
//   a connection asks once a second instead of thousands of times;
// - idle and slow clients: short keep-alive, header and request timeouts;
// - /metrics renders at most once per metricsMaxAgeMs, whoever asks, and in slices (src/slices.ts);
// - JSON routes may answer with text they rendered once (the report's pages).
import { listenOnce } from '../net/listen.js';
import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import { metricsInSlices } from '../metrics/registry.js';
import { CHALLENGE, presentedToken } from './authorization.js';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';
import { Accepted, admitAtAccept, SlotTable } from '../transport/tcpSlots.js';

/** Prometheus and a few admins need a handful; a flood gets no more than this. */
export const MAX_CONNECTIONS = 64;
/**
 * One address cannot crowd out the kubelet's probe; a quarter of the table still lets an admin's burst
 * (`sinkhole report` fetching its pages, a browser) through from the one address everything has on a host install.
 */
export const MAX_CONNECTIONS_PER_CLIENT = 16;
/** Requests being answered at once (a body still being written counts). */
export const MAX_IN_FLIGHT = 32;
/** Requests per second across all clients: Prometheus scrapes every few seconds. */
export const MAX_REQUESTS_PER_SECOND = 100;
/** Requests per second from one client address (a burst of this many is fine: `sinkhole report`, the admin page). */
export const MAX_REQUESTS_PER_CLIENT = 20;
/** How long a request over budget waits for its 503. */
export const REFUSE_AFTER_MS = 1000;
/** Client addresses with a budget of their own; past this the table starts afresh (bounded memory). */
const MAX_TRACKED_CLIENTS = 4096;
/**
 * The admin page lists members' devices: the browser is told to load nothing at all besides the page
 * and its inline style (no script, no frame, no form target), and not to frame it elsewhere.
 */
const PAGE_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};
/** Connections the kernel holds for us to accept (Node's default is 511). */
const ACCEPT_BACKLOG = 32;
const KEEP_ALIVE_MS = 5000;
const HEADERS_TIMEOUT_MS = 5000;
const REQUEST_TIMEOUT_MS = 10_000;
/** How often Node checks the two above (its default, 30 s, let a slowloris hold a slot six times longer). */
const TIMEOUT_CHECK_MS = 1000;

export interface HttpServer {
  address: AddressInfo;
  /** Idle connections closed to make room for another, and connections refused at accept (metrics). */
  readonly evictions: number;
  readonly refused: number;
  close(): Promise<void>;
}

export interface HttpRoutes {
  registry: Registry;
  /** Listeners bound and a policy generation loaded, and not shutting down. */
  ready: () => boolean;
  /** A degraded state to report on /readyz (still 200: DNS is served), e.g. the policy came from the last good snapshot. */
  degraded?: () => string | undefined;
  /**
   * Extra JSON endpoints, e.g. /api/blocked-clients; they get the query string. A string is
   * sent as the JSON text it is (rendered once, served often); anything else is serialised.
   */
  json?: Record<string, (params: URLSearchParams) => unknown>;
  /** Runs before /metrics renders (gathers the counts of the other query threads). */
  beforeMetrics?: () => Promise<void>;
  /** Server-rendered pages, e.g. / (the admin page). */
  html?: Record<string, () => string | Promise<string>>;
  /** listen.httpToken: when set, every path but /healthz, /readyz and /metrics asks for it (Bearer, or Basic with the token as password). */
  token?: () => string | undefined;
  /** How long a rendered /metrics text is served again (default 1 s; 0 renders every time). */
  metricsMaxAgeMs?: number;
}

/**
 * Paths a probe or Prometheus reads without the token: they say nothing about members' devices. The
 * kubelet's and load balancers' probes send no header, so /readyz must be among them.
 */
const OPEN_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/** Constant-time comparison, so the response time does not reveal how much of a guess was right. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(presentedToken(header));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
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

export async function startHttp(endpoint: Endpoint, routes: HttpRoutes, log: Logger): Promise<HttpServer> {
  const maxAge = routes.metricsMaxAgeMs ?? 1000;
  let rendered: { at: number; body: Promise<string> } | undefined;
  /** One render serves every scrape within maxAge: a flood of scrapes costs one render per interval. */
  const metrics = (): Promise<string> => {
    const now = performance.now();
    if (!rendered || now - rendered.at >= maxAge) {
      const body = (routes.beforeMetrics?.() ?? Promise.resolve()).then(() => metricsInSlices(routes.registry));
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
  const slots = new SlotTable<Accepted>(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT);
  let refused = 0;

  const server = http.createServer({ connectionsCheckingInterval: TIMEOUT_CHECK_MS }, (req, res) => {
    // Its headers are in: no longer opening, and busy (not evictable) until answered.
    const slot = slotOf(req.socket);
    slot?.begin();
    res.once('close', () => slot?.end());
    const reply = (status: number, type: string, body: string, headers: Record<string, string> = {}): void => {
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
    const token = routes.token?.();
    if (token !== undefined && !OPEN_PATHS.has(path) && !tokenMatches(req.headers.authorization, token)) {
      return reply(401, 'text/plain', 'the token is required (listen.httpToken): Authorization Bearer, or Basic with any user and the token as password\n', { 'WWW-Authenticate': CHALLENGE });
    }
    if (path === '/healthz') return reply(200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      if (!routes.ready()) return reply(503, 'text/plain', 'not ready\n');
      const degraded = routes.degraded?.();
      return reply(200, 'text/plain', degraded ? `ready, degraded: ${degraded}\n` : 'ready\n');
    }
    if (path === '/metrics') {
      metrics()
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
        .then(() => json(url.searchParams))
        .then((body) => reply(200, 'application/json', typeof body === 'string' ? body : JSON.stringify(body, null, 2) + '\n'))
        .catch((e: unknown) => {
          // A bad query parameter says what it expected (RangeError); anything else is ours.
          if (e instanceof RangeError) return reply(400, 'text/plain', `${e.message}\n`);
          log.error('SH_INTERNAL', 'HTTP route failed', { path, error: String(e) });
          reply(500, 'text/plain', 'failed\n');
        });
      return;
    }
    const html = routes.html?.[path];
    if (html) {
      Promise.resolve()
        .then(html)
        .then((body) => reply(200, 'text/html; charset=utf-8', body, PAGE_HEADERS))
        .catch((e: unknown) => {
          log.error('SH_INTERNAL', 'HTTP page failed', { path, error: String(e) });
          reply(500, 'text/plain', 'failed\n');
        });
      return;
    }
    reply(404, 'text/plain', 'not found\n');
  });
  // Admitted at accept, not with server.maxConnections: Node refuses past that before anything idle can give way.
  const slotOf = admitAtAccept(server, slots, (client, sock) => new Accepted(client, sock), () => refused++);
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  // A short accept queue: connections past it wait in the client's SYN retry, at no cost to us, instead
  // of being accepted in one long burst (hundreds at once) only to be closed for being over the cap.
  const address = await listenOnce(server, { port: endpoint.port, host: endpoint.host, backlog: ACCEPT_BACKLOG });
  return {
    address,
    get evictions() {
      return slots.evictions;
    },
    get refused() {
      return refused;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The URL a command on this machine reaches a server's listen.http at: a wildcard address is asked on
 * its loopback (0.0.0.0 → 127.0.0.1, :: → ::1), and an IPv6 literal goes in brackets (RFC 3986 §3.2.2).
 * One helper for report and health, whose two copies had drifted (one could never reach its :: branch).
 */
export function serverUrl(ep: { host: string; port: number }): string {
  const host = ep.host === '0.0.0.0' ? '127.0.0.1' : ep.host === '::' ? '::1' : ep.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${ep.port}`;
}
