// What the UDP, TCP and encrypted exchanges share: the RFC 5452 acceptance
// checks, the send errors, and settling exactly once within the deadline.
import { sameQuestion } from '../dns/message.js';

export class UpstreamError extends Error {
  override name = 'UpstreamError';
  constructor(readonly outcome: 'timeout' | 'error', message: string) {
    super(message);
  }
}

/**
 * The query could not leave this host: a send error such as EMSGSIZE (the
 * datagram is too large) or ENOBUFS. The query's fault or this host's, never
 * the upstream's: it is not counted against the upstream's health, and the
 * SERVFAIL it leads to is not remembered for the name (cache.servfailTtl).
 */
export class LocalSendError extends Error {
  override name = 'LocalSendError';
}

/** Send errors that say nothing about the upstream (see LocalSendError). */
const LOCAL_SEND_ERRORS = new Set(['EMSGSIZE', 'ENOBUFS']);

/** A send callback's error as the exchange should settle with it. */
export function sendError(e: Error & { code?: string }, upstream: string): Error {
  return e.code !== undefined && LOCAL_SEND_ERRORS.has(e.code) ? new LocalSendError(e.message) : new UpstreamError('error', `${upstream}: ${e.message}`);
}

export type Settle = (err: Error | undefined, reply?: Buffer) => void;

/** RFC 5452 §9.1: a response (QR=1) with our ID and our question; anything else is ignored. */
export function isOurReply(msg: Buffer, id: number, sent: Buffer, qend: number): boolean {
  return msg.length >= 12 && msg.readUInt16BE(0) === id && (msg[2]! & 0x80) !== 0 && sameQuestion(msg, sent, qend);
}

/**
 * Runs `start`, which opens a socket and returns how to close it, and
 * resolves with the first reply it settles with; a timeout, an error or a
 * late second event can never settle twice, and the socket is always closed.
 */
export function boundedExchange(timeoutMs: number, timeoutText: string, start: (settle: Settle) => () => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let cleanup: (() => void) | undefined;
    const settle: Settle = (err, reply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cleanup?.();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => settle(new UpstreamError('timeout', timeoutText)), timeoutMs);
    cleanup = start(settle);
    if (settled) cleanup();
  });
}
