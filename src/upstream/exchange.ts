// What the UDP and TCP exchanges share: a fresh query ID, the RFC 5452
// acceptance checks, and settling exactly once within the deadline.
import { sameQuestion } from '../dns/message.js';
import { randomId } from './random.js';

export class UpstreamError extends Error {
  override name = 'UpstreamError';
  constructor(readonly outcome: 'timeout' | 'error', message: string) {
    super(message);
  }
}

export type Settle = (err: Error | undefined, reply?: Buffer) => void;

/** A copy of the query with a fresh, unpredictable ID (RFC 5452 §9.2). */
export function withFreshId(query: Buffer): { out: Buffer; id: number } {
  const out = Buffer.from(query);
  const id = randomId();
  out.writeUInt16BE(id, 0);
  return { out, id };
}

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
