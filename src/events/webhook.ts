// The webhook sink: an HTTPS POST of the event as JSON, signed so that the
// receiver (a NAC's REST endpoint, or a small adapter in front of it) can
// tell it came from sinkhole and was not replayed:
//   X-Sinkhole-Timestamp: unix seconds at this attempt
//   X-Sinkhole-Signature: sha256=HEX(HMAC-SHA256(secret, timestamp + "." + body))
//   Idempotency-Key:      the event id, the same on every retry and after a restart
// The receiver recomputes the HMAC over the raw body, compares in constant
// time, rejects a timestamp more than 5 minutes away, and keeps the keys it
// has seen (docs/events.md). A 2xx is delivery; anything else,
// or no answer within 10 s, is a failure retried with backoff.
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { WebhookSinkConfig } from '../config/config.js';
import { eventJson, type ComplianceEvent } from './event.js';
import type { Sink } from './delivery.js';

const TIMEOUT_MS = 10_000;

export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export class WebhookSink implements Sink {
  readonly label: string;
  private readonly secret: string;
  private readonly ca: Buffer | undefined;
  private readonly agent: https.Agent;

  constructor(
    private readonly cfg: WebhookSinkConfig,
    private readonly now: () => number = Date.now,
  ) {
    const u = new URL(cfg.url);
    // The label is a metric label and a log field: no query string (it may carry a token).
    this.label = `webhook:${u.origin}${u.pathname}`;
    this.secret = readFileSync(cfg.secretFile, 'utf8').trim();
    this.ca = cfg.ca ? readFileSync(cfg.ca) : undefined;
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  }

  send(e: ComplianceEvent): Promise<void> {
    const body = JSON.stringify(eventJson(e));
    const timestamp = String(Math.floor(this.now() / 1000));
    return new Promise((resolve, reject) => {
      const req = https.request(
        this.cfg.url,
        {
          method: 'POST',
          agent: this.agent,
          ca: this.ca,
          timeout: TIMEOUT_MS,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'user-agent': 'sinkhole',
            'idempotency-key': e.id,
            'x-sinkhole-timestamp': timestamp,
            'x-sinkhole-signature': signature(this.secret, timestamp, body),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve();
            else reject(new Error(`HTTP ${status}`));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
