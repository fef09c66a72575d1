// Durable writes: a file on the disk, not in the page cache, before anything says it is saved. The one
// durable-write path of the last good snapshot (state/snapshot.ts), the report state, the event
// spools, RPZ copies and the export serial. A leaf, so that any floor may use it (docs/design.md §1).
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Writes a file and waits until it is on the disk. */
export async function writeDurable(path: string, data: Uint8Array | string, mode?: number): Promise<void> {
  const fh = await open(path, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces `file` so that a crash leaves the old content or the new, never a mix: a temporary file
 * beside it, fsynced, renamed over it, and the folder fsynced (the one durable-write path of the
 * report state, the event spools, RPZ copies and the export serial).
 */
export async function replaceDurably(file: string, data: Uint8Array | string, mode?: number): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeDurable(tmp, data, mode);
  await rename(tmp, file);
  await syncDir(dir);
}

/** fsync of a folder makes the names in it (a rename) durable, not only the files' contents. */
export async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
