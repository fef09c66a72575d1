// The identity thread: one for the whole server, started with the first lease source and kept.
// It owns the lease files (watching, reading, parsing) and the lease model, and posts each change
// as a small delta (reader.ts). The main thread applies it and passes the same delta to every
// query thread (workers.ts); none of them ever reads or parses a lease file.
import type { ErrorCode } from '../errors.js';
import { parentPort } from 'node:worker_threads';
import { LeaseReader, type IdentityUpdate } from './reader.js';
import type { LeaseSourceConfig } from './leaseFile.js';
import { packDelta } from './table.js';

export type ToIdentity =
  | { type: 'configure'; id: number; sources: LeaseSourceConfig[]; statics: [string, string][] }
  | { type: 'reload'; id: number }
  | { type: 'watch' };

export type FromIdentity = ({ type: 'update' } & IdentityUpdate) | { type: 'warn'; code: ErrorCode; message: string; fields: Record<string, unknown> };

const port = parentPort!;
const reader = new LeaseReader(
  // A big delta crosses packed in one shared buffer (table.ts), which the main thread passes on to the query threads as is.
  (u) => port.postMessage({ type: 'update', ...u, delta: packDelta(u.delta) } satisfies FromIdentity),
  (code, message, fields) => port.postMessage({ type: 'warn', code, message, fields } satisfies FromIdentity),
);

port.on('message', (m: ToIdentity) => {
  switch (m.type) {
    case 'configure':
      reader.configure(m.id, m.sources, new Map(m.statics));
      break;
    case 'reload':
      reader.reload(m.id);
      break;
    case 'watch':
      reader.watch();
      break;
  }
});
