// The exported zone's serial survives a restart: it is kept in state.dir next
// to the last good policy, with a checksum of the owner names it stood for. At
// start-up the same names keep the same serial (a secondary that is up to date
// stays so, and transfers nothing), and different names get a new one.
// Written as the snapshot is: a temporary file, fsynced, renamed, and the
// folder fsynced (durable.ts), so a crash leaves the old or the new.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { replaceDurably } from '../../durable.js';

export interface SavedSerial {
  zone: string;
  serial: number;
  checksum: string;
}

/** One file per zone name, so two configs sharing a state.dir by mistake do not share a serial. */
export function serialFile(dir: string, zone: string): string {
  return join(dir, `rpz-export-${zone || 'root'}.json`);
}

/** The saved serial, undefined when there is none; throws when the file exists but cannot be read as one. */
export function loadSerial(dir: string, zone: string): SavedSerial | undefined {
  let text: string;
  try {
    text = readFileSync(serialFile(dir, zone), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const x = JSON.parse(text) as Partial<SavedSerial> | null;
  if (!x || x.zone !== zone || typeof x.serial !== 'number' || !Number.isInteger(x.serial) || x.serial < 0 || x.serial > 0xffff_ffff || typeof x.checksum !== 'string') {
    throw new Error(`${serialFile(dir, zone)} is not an RPZ export serial for ${zone}`);
  }
  return x as SavedSerial;
}

export async function saveSerial(dir: string, saved: SavedSerial): Promise<void> {
  await replaceDurably(serialFile(dir, saved.zone), `${JSON.stringify(saved)}\n`);
}
