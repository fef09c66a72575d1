// Who holds the TCP listener's connection slots. One client must not hold
// them all: a client that reopens every closed connection, or drips one
// frame just inside the idle timeout, used to keep tcpMaxConnections busy
// while 28 of 31 fresh clients got nothing. So each client may hold at most
// `perClient` slots, and when the table is full a newcomer takes the slot of
// an idle connection of the biggest holder instead of being refused
// (RFC 7766 §6.2.3 lets a server close idle connections whenever it must).

export interface Holder {
  readonly client: string;
  /** performance.now() of the last complete query (or of the connection's start). */
  readonly lastActive: number;
  /** No query of this connection is waiting for its answer: closing it loses nothing. */
  readonly idle: boolean;
  /** Closes the connection at once; the table has already forgotten it. */
  evict(): void;
}

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
    for (const h of set ?? []) if (h.idle && (!victim || h.lastActive < victim.lastActive)) victim = h;
    if (!victim) return false;
    this.remove(victim);
    this.evictions++;
    victim.evict();
    return true;
  }
}
