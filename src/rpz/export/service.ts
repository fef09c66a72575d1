// listen.rpz as a whole: the zone built from each policy generation, its
// serial (persisted), the listener and the NOTIFYs. app.ts makes one at start
// and hands it every generation the reloader swaps in.
import type { AddressInfo } from 'node:net';
import type { RpzExportConfig } from '../../config/rpzExport.js';
import { tsigKeyOf } from '../../config/values.js';
import type { TsigKey } from '../../dns/tsig.js';
import type { Logger } from '../../log.js';
import { compileCidrs } from '../../policy/clients.js';
import type { Generation } from '../../policy/generation.js';
import { nextSerial, ZoneJournal } from './journal.js';
import { Notifier, type NotifyCounts } from './notify.js';
import { exportedOwners, ownersChecksum } from './owners.js';
import { loadSerial, saveSerial } from './serialState.js';
import { RpzExportServer, TRANSFER_KINDS, TRANSFER_RESULTS } from './server.js';
import type { ZoneShape } from './wire.js';

/**
 * SOA timers. With NOTIFY a secondary hears of a change at once; refresh is for the NOTIFY that was
 * lost. Expire is long on purpose: a secondary whose primary has been unreachable that long drops the
 * zone, and with it the ban, so a short outage of sinkhole must never get there.
 */
const TIMERS = { refresh: 600, retry: 60, expire: 14 * 86_400 };

export interface ExportMetrics {
  zone: string;
  serial: number;
  records: number;
  /** [kind, result, count] for every kind and result. */
  transfers: [string, string, number][];
  notifies: NotifyCounts;
}

export class RpzExport {
  private checksum: string;
  private shapeNow: ZoneShape;
  private readonly journal: ZoneJournal;
  private readonly server: RpzExportServer;
  private readonly notifier: Notifier;
  private saving: Promise<void> = Promise.resolve();
  private notifying: Promise<void> = Promise.resolve();
  address: AddressInfo | undefined;

  private constructor(
    private readonly config: RpzExportConfig,
    private readonly stateDir: string,
    g: Generation,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    const owners = this.owners(g);
    this.shapeNow = shapeOf(config, g);
    this.checksum = checksumOf(owners, this.shapeNow);
    let saved: ReturnType<typeof loadSerial>;
    try {
      saved = loadSerial(stateDir, config.zone);
    } catch (e) {
      log.warn('SH_RPZ_EXPORT_STATE', 'cannot read the RPZ export serial in state.dir; a new one is taken from the clock', { dir: stateDir, error: (e as Error).message });
    }
    const same = saved !== undefined && saved.checksum === this.checksum;
    const serial = same ? saved!.serial : nextSerial(saved?.serial, Math.floor(now() / 1000));
    this.journal = new ZoneJournal({ serial, names: owners });
    if (!same) this.persist(serial);
    let key: TsigKey | undefined;
    if (config.tsig) key = tsigKeyOf(config.tsig);
    this.server = new RpzExportServer(
      { host: config.address.host, port: config.address.port, allow: compileCidrs(config.allow), key, maxTransfers: config.maxTransfers, deadlineMs: config.transferTimeoutMs },
      () => ({ shape: this.shapeNow, journal: this.journal }),
      log,
    );
    this.notifier = new Notifier(config.notify, key, log);
    this.changedAtStart = !same;
  }

  private readonly changedAtStart: boolean;

  /** Builds the zone from `g`, binds listen.rpz.address and, when the zone is new or changed since the last run, sends NOTIFY. */
  static async start(config: RpzExportConfig, stateDir: string, g: Generation, log: Logger, now: () => number = Date.now): Promise<RpzExport> {
    const x = new RpzExport(config, stateDir, g, log, now);
    x.address = await x.server.start();
    log.info('RPZ export listening', {
      code: 'SH_RPZ_EXPORT', address: `${x.address.address}:${x.address.port}`, zone: `${config.zone}.`, serial: x.journal.current.serial, records: x.journal.current.names.length,
    });
    if (x.changedAtStart) x.sendNotify();
    return x;
  }

  private owners(g: Generation): string[] {
    const { names, tooLong } = exportedOwners(g, this.config.zone);
    if (tooLong.length) {
      this.log.warn('SH_RPZ_EXPORT_NAME', 'rules left out of the RPZ export: with the zone name appended they exceed 255 octets', {
        zone: this.config.zone, count: tooLong.length, first: tooLong.slice(0, 3).join(','),
      });
    }
    return names;
  }

  /** A new generation is in force: a new serial and NOTIFY when the exported names (or their TTL) changed. */
  update(g: Generation): void {
    const owners = this.owners(g);
    const shape = shapeOf(this.config, g);
    const checksum = checksumOf(owners, shape);
    if (checksum === this.checksum) return;
    const serial = nextSerial(this.journal.current.serial, Math.floor(this.now() / 1000));
    const diff = this.journal.advance(owners, serial);
    this.shapeNow = shape;
    this.checksum = checksum;
    this.log.info('RPZ export zone changed', { code: 'SH_RPZ_EXPORT', zone: `${this.config.zone}.`, serial, added: diff.added.length, removed: diff.removed.length, records: owners.length });
    this.persist(serial);
    this.sendNotify();
  }

  private persist(serial: number): void {
    const saved = { zone: this.config.zone, serial, checksum: this.checksum };
    this.saving = this.saving.then(() =>
      saveSerial(this.stateDir, saved).catch((e: unknown) => {
        this.log.warn('SH_RPZ_EXPORT_STATE', 'cannot save the RPZ export serial in state.dir; after a restart the serial is taken from the clock', {
          dir: this.stateDir, error: (e as NodeJS.ErrnoException).code ?? String(e),
        });
      }),
    );
  }

  private sendNotify(): void {
    if (!this.config.notify.length) return;
    this.notifying = this.notifier.notify(this.shapeNow, this.journal.current.serial);
  }

  get serial(): number {
    return this.journal.current.serial;
  }

  /** Resolves when the serial is on disk and the last round of NOTIFYs is done (tests). */
  async idle(): Promise<void> {
    await Promise.all([this.saving, this.notifying]);
  }

  metrics(): ExportMetrics {
    const transfers: [string, string, number][] = [];
    for (const k of TRANSFER_KINDS) for (const r of TRANSFER_RESULTS) transfers.push([k, r, this.server.counts.get(`${k}|${r}`) ?? 0]);
    return {
      zone: this.config.zone, serial: this.journal.current.serial,
      // SOA and NS at the apex, and one CNAME per owner name.
      records: this.journal.current.names.length + 2,
      transfers, notifies: { ...this.notifier.counts },
    };
  }

  async close(): Promise<void> {
    this.notifier.close();
    await this.server.close();
    await this.saving;
  }
}

function shapeOf(config: RpzExportConfig, g: Generation): ZoneShape {
  const ttl = g.config.blocking.ttl;
  return { origin: config.zone, ttl, timers: { ...TIMERS, minimum: ttl } };
}

function checksumOf(owners: readonly string[], shape: ZoneShape): string {
  return `${ownersChecksum(owners)}-ttl${shape.ttl}`;
}
