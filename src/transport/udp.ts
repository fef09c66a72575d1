// The UDP listener: one socket per address, node:dgram directly (a bare
// dgram server answers ~113k QPS here, dns2's server ~47k; BASELINE.md).
import { bindOnce } from '../net/listen.js';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import { NO_LOCAL, decodeQuery, type LocalAddress, type Query } from '../dns/query.js';
import { truncatedReply, udpLimit } from '../dns/reply.js';
import { normalizeAddress } from '../net/cidr.js';
import { literalLookup } from '../net/lookup.js';
import { isPromise, type Handler, type Outcome } from '../pipeline/types.js';
import type { Endpoint } from '../config/config.js';
import type { Logger } from '../log.js';

/** How long close() waits for replies still queued in libuv (a full send buffer) before it closes anyway. */
const SEND_QUEUE_WAIT_MS = 2000;

export class UdpListener {
  private sock: dgram.Socket | undefined;
  private closing = false;
  private drained: (() => void) | undefined;
  /** The bound address, for dnstap's response_address. */
  private local: LocalAddress = NO_LOCAL;
  inflight = 0;

  constructor(
    private readonly endpoint: Endpoint,
    private readonly handler: Handler,
    private readonly log: Logger,
  ) {}

  /** `reusePort`: several query threads bind the same address and the kernel spreads datagrams over them (SO_REUSEPORT). */
  async start(port = this.endpoint.port, reusePort = false): Promise<AddressInfo> {
    this.closing = false; // a listener retried after a failed bind (app.ts bindPair) serves again
    const sock = dgram.createSocket({
      type: isIPv6(this.endpoint.host) ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20, lookup: literalLookup, reusePort,
    });
    await bindOnce(sock, port, this.endpoint.host);
    sock.on('error', (e) => this.log.warn('SH_UDP', 'UDP socket error', { error: e.message }));
    sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    this.sock = sock;
    const bound = sock.address();
    this.local = { address: normalizeAddress(bound.address), port: bound.port };
    return bound;
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closing) return; // shutting down: no new queries, in-flight ones still get their reply
    // Port 0 cannot be answered (send() throws ERR_SOCKET_BAD_PORT): such a packet is forged.
    if (rinfo.port === 0) return;
    let q: Query | undefined;
    try {
      q = decodeQuery(msg, normalizeAddress(rinfo.address), 'udp', performance.now(), rinfo.port, this.local);
      if (!q) return; // not a query: dropped (see decodeQuery)
      const r = this.handler(q);
      if (isPromise(r)) {
        this.inflight++;
        const query = q;
        r.then((o) => this.answered(query, o, rinfo), this.lost);
      } else {
        this.send(q, r, rinfo);
      }
    } catch (e) {
      // The pipeline's recover stage answers its own errors; this guards the socket loop itself.
      this.log.error('SH_INTERNAL', 'UDP query dropped', { error: String(e) });
    }
  }

  /** An answer that was not ready at once (a cache miss): sent, and no longer in flight. */
  private answered(q: Query, o: Outcome, rinfo: dgram.RemoteInfo): void {
    this.send(q, o, rinfo);
    if (--this.inflight === 0) this.drained?.();
  }

  /** The pipeline failed without an outcome (its recover stage answers its own errors, so this is a guard): no reply. */
  private readonly lost = (): void => {
    if (--this.inflight === 0) this.drained?.();
  };

  /**
   * No send callback: node:dgram answers each one with a process.nextTick even when the datagram left
   * at once, a tick per cache miss for nothing (issue 22). What a callback would tell is not used (a
   * reply that fails to leave is lost, as a dropped datagram is), and close() waits for libuv's send
   * queue instead.
   */
  private send(q: Query, o: Outcome, rinfo: dgram.RemoteInfo): void {
    if (o.wire.length === 0) return; // NO_REPLY: a rate-limited query dropped (clients.rateLimit.slip)
    const wire = o.wire.length > udpLimit(q) ? truncatedReply(q, o.wire) : o.wire;
    try {
      this.sock?.send(wire, rinfo.port, rinfo.address);
    } catch (e) {
      // send() throws synchronously on a bad destination; on the async path that would be an
      // unhandled rejection, which ends a Node 20 process.
      this.log.warn('SH_UDP', 'reply not sent', { error: String(e) });
    }
  }

  /** Stops taking queries, sends the replies still in flight, then closes the socket. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.inflight > 0) await new Promise<void>((r) => (this.drained = r));
    const sock = this.sock;
    this.sock = undefined;
    if (!sock) return;
    // A reply the kernel could not take at once (a full send buffer) waits in libuv's queue, and closing
    // the socket would cancel it: wait until the queue is empty, for at most SEND_QUEUE_WAIT_MS.
    for (const until = performance.now() + SEND_QUEUE_WAIT_MS; sock.getSendQueueCount() > 0 && performance.now() < until; ) {
      await new Promise((r) => setTimeout(r, 1));
    }
    return new Promise((resolve) => sock.close(() => resolve()));
  }
}
