// Who holds the TCP listener's connection slots. One client must not hold
// them all: a client that reopens every closed connection, or drips one
// frame just inside the idle timeout, used to keep tcpMaxConnections busy
// while 28 of 31 fresh clients got nothing. So each client may hold at most
// `perClient` slots, and when the table is full a newcomer takes the slot of
// an idle connection of the biggest holder instead of being refused
// (RFC 7766 §6.2.3 lets a server close idle connections whenever it must).

import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { normalizeAddress } from '../net/cidr.js';

export interface Holder {
  readonly client: string;
  /** performance.now() of the last complete query (or of the connection's start). */
  readonly lastActive: number;
  /** No query of this connection is waiting for its answer: closing it loses nothing. */
  readonly idle: boolean;
  /**
   * Has not finished its first request yet (a TLS handshake, HTTP headers). Once it has been so for
   * STALLED_MS it is the first of its holder's idle connections to go (slowloris, a silent handshake);
   * before that it is the newest, and goes last (its request is likely on the way).
   */
  readonly opening?: boolean;
  /** Closes the connection at once; the table has already forgotten it. */
  evict(): void;
}

/** An opening connection older than this is stalled: a real client's handshake or headers take milliseconds. */
export const STALLED_MS = 1000;

export class SlotTable<H extends Holder> {
  private readonly byClient = new Map<string, Set<H>>();
  private count = 0;
  /** Connections closed to make room, for the metrics. */
  evictions = 0;

  constructor(
    private readonly max: number,
    private readonly perClient: number,
  ) {}

  get size(): number {
    return this.count;
  }

  /**
   * Whether a connection from `client` may take a slot, making room when it
   * can: at its own cap a client loses its own least recently active idle
   * connection; with the table full, the biggest holder loses one. The
   * caller then add()s the new connection.
   */
  admit(client: string): boolean {
    const mine = this.byClient.get(client);
    if (mine && mine.size >= this.perClient) return this.evictFrom(mine);
    if (this.count < this.max) return true;
    return this.evictFrom(this.biggestWithIdle());
  }

  add(h: H): void {
    let set = this.byClient.get(h.client);
    if (!set) this.byClient.set(h.client, (set = new Set()));
    set.add(h);
    this.count++;
  }

  /** Forgets a connection; safe to call twice (evicted, then its close event). */
  remove(h: H): void {
    const set = this.byClient.get(h.client);
    if (!set?.delete(h)) return;
    this.count--;
    if (set.size === 0) this.byClient.delete(h.client);
  }

  *all(): Generator<H> {
    for (const set of this.byClient.values()) yield* set;
  }

  /** The holder of the most slots that has an idle one to give; O(clients), run only when the table is full. */
  private biggestWithIdle(): Set<H> | undefined {
    let best: Set<H> | undefined;
    for (const set of this.byClient.values()) {
      if (best && set.size <= best.size) continue;
      for (const h of set) {
        if (h.idle) {
          best = set;
          break;
        }
      }
    }
    return best;
  }

  private evictFrom(set: Set<H> | undefined): boolean {
    let victim: H | undefined;
    const now = performance.now();
    for (const h of set ?? []) if (h.idle && (!victim || before(h, victim, now))) victim = h;
    if (!victim) return false;
    this.remove(victim);
    this.evictions++;
    victim.evict();
    return true;
  }
}

/** Which idle connection goes first: a stalled one, then the least recently active. */
function before(a: Holder, b: Holder, now: number): boolean {
  const stalledA = !!a.opening && now - a.lastActive > STALLED_MS;
  const stalledB = !!b.opening && now - b.lastActive > STALLED_MS;
  if (stalledA !== stalledB) return stalledA;
  return a.lastActive < b.lastActive;
}

/**
 * A connection admitted when it was accepted, before TLS or HTTP read a byte of it: opening until
 * its first request (or the connection that takes over its slot) arrives, idle when nothing is in flight.
 */
export class Accepted implements Holder {
  lastActive = performance.now();
  opening = true;
  /** Requests being answered on it. */
  inflight = 0;

  constructor(
    readonly client: string,
    readonly socket: net.Socket,
  ) {}

  get idle(): boolean {
    return this.inflight === 0;
  }

  evict(): void {
    this.socket.destroy(); // the TLS socket or HTTP/2 session on top closes with it
  }

  /** A request began (its headers are in): busy until its end(). */
  begin(): void {
    this.opening = false;
    this.inflight++;
    this.lastActive = performance.now();
  }

  end(): void {
    this.inflight--;
  }
}

/** The peer of a socket, the key that finds its slot again from the TLS socket or HTTP/2 session on top of it. */
export const peerKey = (s: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string => `${s.remoteAddress}|${s.remotePort}`;

/**
 * Admits every connection of `server` into `slots` at accept: tls.Server and http.Server emit
 * 'connection' for the raw socket before any handshake or header is read, so a client that never
 * finishes either holds a slot only until someone else needs it. `server.maxConnections` must stay
 * unset: Node refuses over it before this runs, eviction or not. Returns the slot of a peer.
 */
export function admitAtAccept<H extends Holder>(
  server: net.Server,
  slots: SlotTable<H>,
  make: (client: string, socket: net.Socket) => H,
  refused: () => void,
  /** An address turned away before the slots are asked (nothing evicted for it). */
  turnAway: (client: string) => boolean = () => false,
): (peer: { remoteAddress?: string | undefined; remotePort?: number | undefined }) => H | undefined {
  const byPeer = new Map<string, H>();
  server.on('connection', (socket: net.Socket) => {
    const client = normalizeAddress(socket.remoteAddress ?? '');
    if (!server.listening || turnAway(client) || !slots.admit(client)) {
      refused();
      socket.destroy();
      return;
    }
    const h = make(client, socket);
    const key = peerKey(socket);
    slots.add(h);
    byPeer.set(key, h);
    socket.once('close', () => {
      slots.remove(h);
      if (byPeer.get(key) === h) byPeer.delete(key);
    });
  });
  return (peer) => byPeer.get(peerKey(peer));
}
