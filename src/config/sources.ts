// Where the policy compiler reads its files from. Normally the disk; at a
// start-up whose files do not compile, the last good snapshot (state/snapshot.ts),
// read under the files' real paths, so a generation built from a snapshot
// still names and watches the real files and a fix on disk reloads normally.
import { readFileSync } from 'node:fs';

export interface FileSource {
  /** The file's bytes; throws an ErrnoException (ENOENT, EACCES...) like readFileSync. */
  read(path: string): Buffer;
}

export const diskSource: FileSource = { read: (path) => readFileSync(path) };

/** Reads through another source and keeps what it read, byte for byte: the inputs to snapshot once the generation compiles. */
export class RecordingSource implements FileSource {
  readonly files = new Map<string, Buffer>();

  constructor(private readonly inner: FileSource = diskSource) {}

  read(path: string): Buffer {
    const bytes = this.inner.read(path);
    this.files.set(path, bytes);
    return bytes;
  }
}
