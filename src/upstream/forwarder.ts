// Chooses upstreams for a query and runs the exchange: conditional
// forwarding by domain, the failover/random/race strategies, simple health,
// TCP retry on truncation, and one overall deadline.
import { performance } from 'node:perf_hooks';
import { EDNS_UDP_PAYLOAD, FLAG_AA, FLAG_RA, RCODE } from '../dns/constants.js';
import { upstreamQuery } from '../dns/ownQuery.js';
import { scanReply, type ScannedReply } from '../dns/message.js';
import type { Query } from '../dns/query.js';
import type { Stats, UpstreamStats } from '../metrics/stats.js';
import type { UpstreamSpec } from '../config/upstreamSpec.js';
import type { UpstreamTls, UpstreamsConfig } from '../config/config.js';
import type { Logger } from '../log.js';
import { encryptedTransport } from './encrypted.js';
import type { TransportContext, UpstreamTransport } from './transport.js';
import { TcpUpstream } from './tcp.js';
import { UpstreamError } from './exchange.js';
import { UdpUpstream } from './udp.js';
import { Later } from '../later.js';

/** After this many failures in a row an upstream is tried last ... */
const UNHEALTHY_AFTER = 3;
/** ... for this long, then it gets its place back and a chance to prove itself. */
const UNHEALTHY_FOR_MS = 30_000;

/** One upstream's health as this thread's forwarder sees it: a read-only copy for the admin page. */

/**
 * The forwarder's hook: one call when a query goes upstream, one when its reply comes back (a
 * truncated UDP reply retried over TCP is two exchanges). `transport` is the one used (udp, tcp, tls,
 * https); times are performance.now() values.
 */
export interface ForwarderTap {
  forwarderQuery(query: Buffer, u: UpstreamSpec, transport: string, at: number): void;
  forwarderResponse(reply: Buffer, u: UpstreamSpec, transport: string, sent: number, at: number): void;
}

export interface UpstreamHealth {
  label: string;
  /** up: last exchange ok; failing: failures in a row, still tried in order; down: tried last (UNHEALTHY_AFTER). */
  state: 'up' | 'failing' | 'down';
  failuresInRow: number;
  /** ms since the epoch; undefined when it never failed. */
  lastFailure: number | undefined;
}

const WORST: Readonly<Record<UpstreamHealth['state'], number>> = { up: 0, failing: 1, down: 2 };

/** Every query thread has its own forwarder: per upstream, the worst any thread saw. */
export function mergeHealth(threads: readonly (readonly UpstreamHealth[])[]): UpstreamHealth[] {
  const out = new Map<string, UpstreamHealth>();
  for (const list of threads) {
    for (const h of list) {
      const m = out.get(h.label);
      if (!m) {
        out.set(h.label, { ...h });
        continue;
      }
      if (WORST[h.state] > WORST[m.state]) m.state = h.state;
      m.failuresInRow = Math.max(m.failuresInRow, h.failuresInRow);
      if (h.lastFailure !== undefined && (m.lastFailure === undefined || h.lastFailure > m.lastFailure)) m.lastFailure = h.lastFailure;
    }
  }
  return [...out.values()];
}

export class Upstream {
  private failures = 0;
  private lastFailure = 0;
  readonly stats: UpstreamStats;
  /** tls:// and https:// upstreams: their connection pool or HTTP/2 session (upstream/encrypted.ts). */
  transport: UpstreamTransport | undefined;
  /** Plain TCP to this upstream (tcp://, or a truncated UDP answer): a pool of pipelined connections, made on first use. */
  tcp: TcpUpstream | undefined;

  constructor(readonly spec: UpstreamSpec, stats: Stats) {
    this.stats = stats.upstream(spec.label);
  }

  get healthy(): boolean {
    return this.failures < UNHEALTHY_AFTER || Date.now() - this.lastFailure > UNHEALTHY_FOR_MS;
  }

  succeeded(): void {
    this.failures = 0;
  }

  health(): UpstreamHealth {
    return {
      label: this.spec.label,
      state: this.failures === 0 ? 'up' : this.failures < UNHEALTHY_AFTER || this.healthy ? 'failing' : 'down',
      failuresInRow: this.failures,
      lastFailure: this.lastFailure || undefined,
    };
  }

  failed(): void {
    this.failures++;
    this.lastFailure = Date.now();
  }
}

/** The config's upstreams section; tls may be left out where no tls:// or https:// upstream is used (tests, benches). */
export type ForwarderOptions = Omit<UpstreamsConfig, 'tls'> & { tls?: UpstreamTls };

/** A reply checked from end to end (scanReply), with what the scan found. */
export interface Accepted {
  wire: Buffer;
  scan: ScannedReply;
}

/**
 * No reply. `local`: no upstream was at fault — the query never left this
 * host (maxInflight, a send error such as EMSGSIZE) — so the SERVFAIL must
 * not be remembered for the name; otherwise every upstream tried failed.
 */
export interface Failed {
  wire?: undefined;
  local: boolean;
}

const UPSTREAM_FAILED: Failed = { local: false };
const LOCAL_FAILURE: Failed = { local: true };

export class Forwarder {
  private readonly defaults: Upstream[];
  private readonly conditional = new Map<string, Upstream[]>();
  private readonly udp: UdpUpstream;
  private inflight = 0;
  private readonly contexts = new Map<Upstream, TransportContext>();
  /** dnstap FORWARDER_QUERY/RESPONSE (log.dnstap); undefined when off, the one check per exchange. */
  tap: ForwarderTap | undefined;

  constructor(
    private readonly opts: ForwarderOptions,
    private readonly stats: Stats,
    log?: Logger,
  ) {
    // One Upstream per configured label, so health and metrics are shared where a server is listed twice.
    const byLabel = new Map<string, Upstream>();
    const get = (s: UpstreamSpec): Upstream => {
      let u = byLabel.get(s.label);
      if (!u) {
        byLabel.set(s.label, (u = new Upstream(s, stats)));
        u.transport = encryptedTransport(s, opts.tls, { handshakeTimeoutMs: opts.timeoutMs, stats: u.stats, log });
        this.contexts.set(u, { handshakeTimeoutMs: opts.timeoutMs, stats: u.stats, log, label: s.label });
      }
      return u;
    };
    this.defaults = opts.servers.map(get);
    this.udp = new UdpUpstream({ ports: opts.sourcePorts, maxUses: opts.sourcePortReuse });
    for (const c of opts.conditional) this.conditional.set(c.domain, c.servers.map(get));
  }


  /** The upstreams for a name: the longest matching conditional domain, else the defaults. */
  candidates(qname: string): Upstream[] {
    if (this.conditional.size) {
      let name = qname;
      for (;;) {
        const hit = this.conditional.get(name);
        if (hit) return hit;
        const dot = name.indexOf('.');
        if (dot === -1) break;
        name = name.slice(dot + 1);
      }
    }
    return this.defaults;
  }

  /**
   * The upstream's reply with the client's ID, or why there is none.
   * One async function for the whole exchange: a miss pays for one promise chain, not one per layer.
   */
  async forward(q: Query): Promise<Accepted | Failed> {
    // A flood of random names while upstreams are slow must not exhaust sockets and descriptors
    // (dnsmasq's dns-forward-max, unbound's num-queries-per-thread do the same).
    if (this.inflight >= this.opts.maxInflight) {
      this.stats.upstreamOverloads++;
      return LOCAL_FAILURE;
    }
    this.inflight++;
    try {
      const deadline = performance.now() + this.opts.timeoutMs;
      const all = this.candidates(q.qname);
      // Our own query, never the client's OPT (dns/ownQuery.ts).
      const wire = upstreamQuery(q);
      const local = { failed: false };
      let reply: Accepted | undefined;
      if (all.length === 1) {
        reply = await this.attempt(all[0]!, wire, q.qend, deadline, local);
      } else {
        const order = all.filter((u) => u.healthy).concat(all.filter((u) => !u.healthy));
        if (this.opts.strategy === 'random') shuffleHealthyPrefix(order, all.filter((u) => u.healthy).length);
        if (this.opts.strategy === 'race') {
          reply = await Promise.any(order.map((u) => this.attempt(u, wire, q.qend, deadline, local).then((r) => r ?? Promise.reject(new Error('failed'))))).catch(
            () => undefined,
          );
        } else {
          // A query that cannot leave this host fails the same way for every upstream: stop there.
          for (let i = 0; i < order.length && !reply && !local.failed; i++) {
            const remaining = deadline - performance.now();
            if (remaining <= 0) break;
            // Split what is left among the upstreams still to try, so the last one gets a fair share too.
            reply = await this.attempt(order[i]!, wire, q.qend, performance.now() + remaining / (order.length - i), local);
          }
        }
      }
      if (!reply) return this.failure(local.failed);
      return forClients(q, reply);
    } finally {
      this.inflight--;
    }
  }

  /**
   * forward(q).then(to), in one step. In the common case (one plain UDP upstream, no dnstap) a miss
   * waits on its UDP exchange's own promise and on nothing else: each async layer between the reply
   * and the stage that reads it was one more promise to settle and one more microtask, ~0.4 µs of a
   * ~30 µs miss each (issue 22, bench/RESULTS.md "Fewer promises in a miss"). The rest goes through
   * forward(); both judge a reply with the same judge() and finish it with the same forClients().
   */
  forwardThen<R>(q: Query, to: (reply: Accepted | Failed) => R): Promise<R> {
    // The short path's steps are Laters (later.ts), from the UDP exchange on: no microtask between them.
    const all = this.candidates(q.qname);
    const u = all[0]!;
    if (all.length !== 1 || u.transport !== undefined || u.spec.transport !== 'udp' || this.tap !== undefined || this.inflight >= this.opts.maxInflight) {
      return this.forward(q).then(to);
    }
    this.inflight++;
    const wire = upstreamQuery(q);
    const started = performance.now();
    const deadline = started + this.opts.timeoutMs;
    let exchange: Promise<Buffer>;
    try {
      exchange = this.udp.exchange(u.spec.host, u.spec.port, wire, q.qend, this.opts.timeoutMs);
    } catch {
      // No socket to send from (EMFILE...): our failure, as in attempt().
      this.inflight--;
      return Later.of(this.failure(true)).then(to);
    }
    const failed = (e: unknown): R => {
      this.inflight--;
      return to(this.failure(this.blame(u, e)));
    };
    return exchange.then((reply) => {
      if ((reply[2]! & 0x02) !== 0) {
        // RFC 7766 §5: a truncated UDP answer is retried over TCP, as in attempt().
        u.stats.outcomes.truncated++;
        let retried: Promise<Buffer>;
        try {
          retried = this.tcp(u).exchange(wire, q.qend, Math.max(1, deadline - performance.now()));
        } catch (e) {
          return failed(e); // never leave the exchange counted in flight
        }
        return retried.then((tcpReply) => this.accepted(q, u, tcpReply, started, to), failed);
      }
      return this.accepted(q, u, reply, started, to);
    }, failed);
  }

  /** The fast path's end: the reply judged, finished for clients, and handed to `to`. */
  private accepted<R>(q: Query, u: Upstream, reply: Buffer, started: number, to: (reply: Accepted | Failed) => R): R {
    this.inflight--;
    const judged = this.judge(u, reply, started);
    if (judged instanceof UpstreamError) return to(this.failure(this.blame(u, judged)));
    return to(forClients(q, judged));
  }

  /** No reply: counted, and said whose fault it was (`local`: ours, never remembered for the name). */
  private failure(local: boolean): Failed {
    if (local) this.stats.localSendErrors++;
    return local ? LOCAL_FAILURE : UPSTREAM_FAILED;
  }

  /**
   * Counts a failed exchange: an UpstreamError is the upstream's (its outcome counted, its health
   * lowered); anything else is our own (a send error), which counts against no upstream. True when ours.
   */
  private blame(u: Upstream, e: unknown): boolean {
    if (!(e instanceof UpstreamError)) return true;
    u.stats.outcomes[e.outcome]++;
    u.failed();
    return false;
  }

  /**
   * A reply that came back, judged whole before it is accepted (issue 8): SERVFAIL or REFUSED is this
   * upstream unable to answer, and one whose names or records cannot be decoded is this upstream
   * failing (either way another may answer, also under race); an accepted one is counted as ok.
   */
  private judge(u: Upstream, reply: Buffer, started: number): Accepted | UpstreamError {
    const rcode = reply[3]! & 0x0f;
    // Counted as an error, not a timeout.
    if (rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) return new UpstreamError('error', `rcode ${rcode}`);
    const scan = scanReply(reply);
    if (!scan) return new UpstreamError('error', 'malformed reply');
    u.stats.outcomes.ok++;
    u.stats.latency.observe((performance.now() - started) / 1000);
    u.succeeded();
    return { wire: reply, scan };
  }

  /**
   * One upstream, UDP then TCP on truncation; undefined on failure (already counted). A failure of
   * our own (LocalSendError, or any error that is not the upstream's) sets `local.failed` instead,
   * and counts neither as the upstream's outcome nor against its health.
   */
  private async attempt(u: Upstream, query: Buffer, qend: number, deadline: number, local: { failed: boolean }): Promise<Accepted | undefined> {
    const { host, port, transport } = u.spec;
    const started = performance.now();
    const tap = this.tap;
    // dnstap: the query is written once its reply says which ID went on the wire (the transports pick
    // their own, RFC 5452 §9.2), or as it was when no reply came.
    let untapped = tap !== undefined;
    let tapProto = transport;
    let tapAt = started;
    try {
      let reply: Buffer;
      if (u.transport) {
        // tls:// and https://: the transport keeps its own connections, IDs and padding.
        reply = await u.transport.exchange(query, qend, deadline - started);
      } else if (transport === 'tcp') {
        reply = await this.tcp(u).exchange(query, qend, deadline - started);
      } else {
        reply = await this.udp.exchange(host, port, query, qend, deadline - started);
        if ((reply[2]! & 0x02) !== 0) {
          // RFC 7766 §5: a truncated UDP answer is retried over TCP. dnstap sees two exchanges, as they were.
          u.stats.outcomes.truncated++;
          const retried = performance.now();
          if (tap !== undefined) {
            tap.forwarderQuery(withIdOf(query, reply), u.spec, 'udp', started);
            tap.forwarderResponse(reply, u.spec, 'udp', started, retried);
          }
          [tapProto, tapAt] = ['tcp', retried];
          reply = await this.tcp(u).exchange(query, qend, Math.max(1, deadline - retried));
          if (tap !== undefined) {
            untapped = false;
            tap.forwarderQuery(withIdOf(query, reply), u.spec, 'tcp', retried);
            tap.forwarderResponse(reply, u.spec, 'tcp', retried, performance.now());
          }
        }
      }
      if (tap !== undefined && untapped) {
        untapped = false;
        tap.forwarderQuery(withIdOf(query, reply), u.spec, transport, started);
        tap.forwarderResponse(reply, u.spec, transport, started, performance.now());
      }
      const judged = this.judge(u, reply, started);
      if (judged instanceof UpstreamError) throw judged;
      return judged;
    } catch (e) {
      if (tap !== undefined && untapped) tap.forwarderQuery(query, u.spec, tapProto, tapAt);
      if (this.blame(u, e)) local.failed = true;
      return undefined;
    }
  }

  private tcp(u: Upstream): TcpUpstream {
    return (u.tcp ??= new TcpUpstream(u.spec.host, u.spec.port, this.contexts.get(u)!));
  }

  /** Each configured upstream (defaults, then conditional ones), once. */
  health(): UpstreamHealth[] {
    return [...new Set([...this.defaults, ...[...this.conditional.values()].flat()])].map((u) => u.health());
  }

  /** Sockets in the UDP source-port pool now. */
  get sourcePortsOpen(): number {
    return this.udp.openSockets;
  }

  /**
   * Releases the upstream sockets (replaced on reload, or shutdown): the UDP source ports and the
   * encrypted upstreams' connections close once the queries in flight on them are answered.
   */
  close(): void {
    this.udp.close();
    for (const u of new Set([...this.defaults, ...[...this.conditional.values()].flat()])) {
      u.transport?.close();
      u.tcp?.close();
    }
  }
}

/** An accepted reply made the clients': their ID, our flags, our OPT. */
function forClients(q: Query, reply: Accepted): Accepted {
  const out = reply.wire;
  out.writeUInt16BE(q.id, 0);
  // We offer recursion and are not the authority for what we relay (RFC 1035 §4.1.1):
  // set RA, clear AA, whatever the upstream said (an authoritative conditional upstream sets AA).
  out[2] = out[2]! & ~FLAG_AA;
  out[3] = out[3]! | FLAG_RA;
  // The OPT answers our query and goes to our clients: it advertises our UDP size (RFC 6891 §6.2.3)
  // and echoes the client's DO bit (RFC 3225 §3; DO is in the cache key, so every client of this entry set it alike).
  const opt = reply.scan.opt;
  if (opt >= 0) {
    out.writeUInt16BE(EDNS_UDP_PAYLOAD, opt + 3);
    out[opt + 7] = (out[opt + 7]! & 0x7f) | (q.dnssecOk ? 0x80 : 0);
  }
  return reply;
}

function shuffleHealthyPrefix(order: Upstream[], n: number): void {
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
}

/** The query as it went on the wire: its bytes with the ID its reply carries (dnstap only, so a copy). */
function withIdOf(query: Buffer, reply: Buffer): Buffer {
  if (reply.length < 2 || reply.readUInt16BE(0) === query.readUInt16BE(0)) return query;
  const q = Buffer.from(query);
  q.writeUInt16BE(reply.readUInt16BE(0), 0);
  return q;
}
