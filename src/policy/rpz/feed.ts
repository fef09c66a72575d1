// RPZ zones pulled from a primary (blocking.rpz[].primary): the secondary side of RFC 1995/5936/1996.
// Each zone is kept as a master-file copy under state.dir/rpz/NAME.zone, written durably after every
// transfer that changed it. That file is the zone's `file` in the config, so everything a zone file
// gets, the transferred zone gets too: it is watched and reloaded, compiled with file:line:col
// problems (a transfer that does not compile leaves the last good policy in force, fail-closed as
// lists are), saved with the last good snapshot, and still enforced after a restart while the
// primary is down.
// Timing follows the zone's SOA (RFC 1035 §3.3.13): a check every `refresh`, every `retry` after a
// failure; a NOTIFY from the primary (RFC 1996) checks at once. Past `expire` without a successful
// check, a secondary name server stops serving the zone; a policy zone is not dropped (that would
// fail open): it stays in force, and SH_RPZ_EXPIRED says so until the primary answers.
import { existsSync, readFileSync } from 'node:fs';
import type { RpzSpec } from '../../config/config.js';
import type { Logger } from '../../log.js';
import { replaceDurably } from '../../durable.js';
import { transfer, type TransferOutcome, type TransferRequest } from './transfer.js';
import { sign, splitTsig, verify, TSIG_ERROR_NAME, type TsigKey } from '../../dns/tsig.js';
import { tsigKeyOf } from '../../config/values.js';
import type { TsigConfig } from '../../config/config.js';

/** Per-exchange deadline; a 1M-record zone comes in well within it on a LAN. */
const TRANSFER_TIMEOUT_MS = 60_000;
/** The first transfer of a zone with no copy, which the start waits for. */
const FIRST_TRANSFER_MS = 10_000;
/** Bounds on the SOA's timers, so a zone cannot ask for a check every millisecond, or never. */
const MIN_CHECK_S = 1;
const MAX_CHECK_S = 86_400;
/** Before the first SOA is known. */
const DEFAULT_TIMERS = { refresh: 3600, retry: 600, expire: 604_800 };

/** What a feed did, for metrics. */
export interface FeedStats {
  zone: string;
  primary: string;
  serial: number | undefined;
  transfers: { full: number; incremental: number; current: number; failed: number };
  lastSuccess: number | undefined;
  expired: boolean;
}

/**
 * Signing for one transfer (RFC 8945 §5.3): the request is signed; the first response message must be
 * signed over the request's MAC, and each later signed one over the previous MAC and the unsigned
 * messages since (at most 99 in a row, §5.3.1); the last one must be signed.
 */
export function tsigExchange(cfg: TsigConfig): Pick<TransferRequest, 'sign' | 'verify' | 'end'> {
  const key = tsigKeyOf(cfg);
  let requestMac: Buffer | undefined;
  let priorMac: Buffer | undefined;
  let pending: Buffer[] = [];
  return {
    sign: (query) => {
      const signed = sign(query, key);
      requestMac = signed.mac;
      return signed.wire;
    },
    verify: (message, index) => {
      const split = splitTsig(message);
      if (split === 'malformed') return 'a malformed TSIG record';
      if (!split) {
        if (index === 0) return 'the first message is not signed, and tsig is configured';
        pending.push(message);
        return pending.length > 99 ? 'more than 99 unsigned messages in a row (RFC 8945 §5.3.1)' : undefined;
      }
      const unsigned = Buffer.concat([...pending, split.unsigned]);
      pending = [];
      const v = verify({ unsigned, tsig: split.tsig }, [key], index === 0 ? { requestMac } : { priorMac });
      if (!v.ok) return `TSIG ${TSIG_ERROR_NAME[v.error] ?? v.error}: ${v.reason}`;
      priorMac = v.mac;
      return undefined;
    },
    end: () => (pending.length ? 'the transfer did not end with a signed message' : undefined),
  };
}

const keys = new Map<string, { read: number; key: TsigKey | undefined }>();
/** A TSIG key from its secret file, re-read at most once a minute (a query thread checks NOTIFYs with it). */
function keyOf(cfg: TsigConfig): TsigKey | undefined {
  const cached = keys.get(cfg.secretFile);
  if (cached && Date.now() - cached.read < 60_000) return cached.key;
  let key: TsigKey | undefined;
  try {
    key = tsigKeyOf(cfg);
  } catch {
    key = undefined;
  }
  keys.set(cfg.secretFile, { read: Date.now(), key });
  return key;
}

/** The key of a record for IXFR: owner, class, type and RDATA, without the TTL (RFC 1995 §4 deletes by these). */
function recordKey(line: string): string {
  const [owner, , ...rest] = line.split(' ');
  return `${owner} ${rest.join(' ')}`;
}

export class RpzFeed {
  private soa: string | undefined;
  private serial: number | undefined;
  private timers = DEFAULT_TIMERS;
  private readonly records = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private failing = false;
  readonly stats: FeedStats;

  constructor(
    readonly spec: RpzSpec & { primary: { host: string; port: number }; zone: string },
    private readonly log: Logger,
    private readonly timeoutMs = TRANSFER_TIMEOUT_MS,
    private readonly changed: () => void = () => {},
  ) {
    this.stats = {
      zone: spec.name, primary: `${spec.primary.host}:${spec.primary.port}`, serial: undefined,
      transfers: { full: 0, incremental: 0, current: 0, failed: 0 }, lastSuccess: undefined, expired: false,
    };
  }

  /** Reads the copy a previous run kept, so an IXFR can start from it; false when there is none (or it is not ours). */
  load(): boolean {
    if (!existsSync(this.spec.file)) return false;
    try {
      const lines = readFileSync(this.spec.file, 'utf8').split('\n').filter((l) => l && !l.startsWith(';'));
      const soa = lines[0]?.split(' ');
      if (!soa || soa[3] !== 'SOA' || soa.length !== 11) return false;
      this.soa = lines[0];
      this.serial = Number(soa[6]);
      this.timers = { refresh: Number(soa[7]), retry: Number(soa[8]), expire: Number(soa[9]) };
      for (const l of lines.slice(1)) this.records.set(recordKey(l), l);
      this.stats.serial = this.serial;
      return true;
    } catch {
      return false;
    }
  }

  /** Checks the primary now (coalesced with a check in flight); resolves when that check is done. */
  check(why: string, timeoutMs = this.timeoutMs): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    clearTimeout(this.timer);
    this.running = this.exchange(why, timeoutMs).finally(() => {
      this.running = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        void this.check('a NOTIFY during the last check');
      }
    });
    return this.running;
  }

  private async exchange(why: string, timeoutMs: number): Promise<void> {
    const { host, port } = this.spec.primary;
    const zone = this.spec.zone;
    let outcome: TransferOutcome;
    try {
      outcome = await transfer({ host, port, zone, serial: this.serial, timeoutMs, ...(this.spec.tsig ? tsigExchange(this.spec.tsig) : {}) });
    } catch (e) {
      this.stats.transfers.failed++;
      this.log.warn('SH_RPZ_TRANSFER', 'RPZ zone transfer failed; the zone in force stays', {
        zone: this.spec.name, primary: this.stats.primary, serial: this.serial ?? 'none', why, error: (e as Error).message,
      });
      this.failing = true;
      this.checkExpiry();
      this.schedule(this.timers.retry);
      return;
    }
    this.stats.transfers[outcome.kind]++;
    this.stats.lastSuccess = Date.now();
    if (this.stats.expired) this.log.info('RPZ zone checked again after it expired', { zone: this.spec.name, primary: this.stats.primary });
    this.stats.expired = false;
    if (this.failing) this.log.info('RPZ primary answers again', { zone: this.spec.name, primary: this.stats.primary });
    this.failing = false;
    if (outcome.kind !== 'current') {
      if (outcome.kind === 'full') {
        this.records.clear();
        for (const l of outcome.records) this.records.set(recordKey(l), l);
      } else {
        for (const d of outcome.deltas) {
          for (const l of d.removed) this.records.delete(recordKey(l));
          for (const l of d.added) this.records.set(recordKey(l), l);
        }
      }
      this.soa = outcome.soa.line;
      this.serial = outcome.soa.serial;
      this.timers = outcome.soa.timers ?? DEFAULT_TIMERS;
      this.stats.serial = this.serial;
      try {
        await this.write();
      } catch (e) {
        this.log.warn('SH_RPZ_TRANSFER', 'RPZ zone transferred but its copy cannot be written; the zone in force stays', {
          zone: this.spec.name, file: this.spec.file, error: String(e),
        });
        this.schedule(this.timers.retry);
        return;
      }
      this.log.info('RPZ zone transferred', {
        zone: this.spec.name, primary: this.stats.primary, serial: this.serial ?? 0, kind: outcome.kind === 'full' ? 'axfr' : 'ixfr',
        records: this.records.size, ...(outcome.skipped ? { skipped: outcome.skipped } : {}), why,
      });
      this.changed();
    }
    this.schedule(this.timers.refresh);
  }

  /** The zone as a master file, written durably (tmp, fsync, rename, fsync the folder): the reload picks it up. */
  private async write(): Promise<void> {
    const text = [
      `; sinkhole: zone ${this.spec.zone} from ${this.stats.primary}, serial ${this.serial}, ${new Date().toISOString()}`,
      `; a copy kept by sinkhole (blocking.rpz "${this.spec.name}"); edits here are replaced by the next transfer`,
      this.soa!,
      ...this.records.values(),
      '',
    ].join('\n');
    await replaceDurably(this.spec.file, text);
  }

  private checkExpiry(): void {
    const since = this.stats.lastSuccess;
    if (since === undefined || this.stats.expired || Date.now() - since < this.timers.expire * 1000) return;
    this.stats.expired = true;
    this.log.warn('SH_RPZ_EXPIRED', 'RPZ zone past its SOA expire without reaching the primary; it stays in force (a policy zone is not dropped)', {
      zone: this.spec.name, primary: this.stats.primary, serial: this.serial ?? 'none',
    });
  }

  private schedule(seconds: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    const s = Math.min(MAX_CHECK_S, Math.max(MIN_CHECK_S, seconds || DEFAULT_TIMERS.retry));
    this.timer = setTimeout(() => void this.check('SOA refresh'), s * 1000).unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }
}

/**
 * Whether this entry pulls `zone` from the address `from`. Both names are in one form: the config's
 * zone: is normalized (lower case, no trailing dot), and so is a decoded query name.
 */
function pulls(spec: RpzSpec, zone: string, from: string): boolean {
  return spec.primary !== undefined && spec.zone === zone && spec.primary.host === from;
}

/** The feeds of a config, by zone name (for NOTIFY). */
export class RpzFeeds {
  private feeds: RpzFeed[] = [];
  /** Called after a transfer rewrote a zone's copy (app.ts reloads the policy). */
  onChange: () => void = () => {};

  constructor(private readonly log: Logger) {}

  /**
   * Starts (or, on reload, replaces) the feeds for these zones. A zone with no copy yet is
   * transferred before this resolves, so the first policy can include it; one with a copy is
   * checked in the background (the copy is enforced meanwhile).
   */
  async configure(specs: readonly RpzSpec[]): Promise<void> {
    const wanted = specs.filter((s): s is RpzFeed['spec'] => s.primary !== undefined && s.zone !== undefined);
    const key = (s: RpzSpec): string => `${s.name}|${s.primary?.host}|${s.primary?.port}|${s.zone}|${s.file}`;
    const keep = new Map(this.feeds.map((f) => [key(f.spec), f]));
    const next: RpzFeed[] = [];
    const first: Promise<void>[] = [];
    for (const spec of wanted) {
      const existing = keep.get(key(spec));
      if (existing) {
        keep.delete(key(spec));
        next.push(existing);
        continue;
      }
      const feed = new RpzFeed(spec, this.log, undefined, () => this.onChange());
      next.push(feed);
      if (feed.load()) void feed.check('start');
      // DNS does not answer until this is done: a primary that drops packets may hold the start up
      // for FIRST_TRANSFER_MS at most, not the whole transfer deadline.
      else first.push(feed.check('start, no copy yet', FIRST_TRANSFER_MS));
    }
    for (const gone of keep.values()) gone.close();
    this.feeds = next;
    await Promise.all(first);
  }

  /**
   * A NOTIFY (RFC 1996 §3.7) for `zone` from `from`: whether it names a zone we pull from that
   * address (then it is checked at once). Anyone else's NOTIFY is refused and does nothing.
   */
  notify(zone: string, from: string): boolean {
    // From a query thread: the stage has checked it against its own copy of the config.
    const feed = this.feeds.find((f) => pulls(f.spec, zone, from));
    if (!feed) return false;
    void feed.check('NOTIFY');
    return true;
  }

  /**
   * Whether a NOTIFY for this zone from this address is taken: `false` when not, else how to sign the
   * answer (RFC 8945 §5.3; `undefined` without TSIG). With `tsig:` configured the NOTIFY must carry a
   * valid signature by that key (the query threads answer NOTIFY themselves, so this is static).
   */
  static accepts(specs: readonly RpzSpec[], zone: string, from: string, message: Buffer): false | { sign?: (reply: Buffer) => Buffer } {
    const spec = specs.find((s) => pulls(s, zone, from));
    if (!spec) return false;
    if (!spec.tsig) return {};
    const key = keyOf(spec.tsig);
    const split = splitTsig(message);
    if (!key || !split || split === 'malformed') return false;
    const v = verify(split, [key]);
    if (!v.ok) return false;
    return { sign: (reply) => sign(reply, key, { requestMac: v.mac }).wire };
  }

  stats(): FeedStats[] {
    return this.feeds.map((f) => f.stats);
  }

  close(): void {
    for (const f of this.feeds) f.close();
    this.feeds = [];
  }
}
