// The certificate and key of the DoT/DoH listeners (listen.tls). Read at
// start-up and again on SIGHUP, so a renewed certificate (certbot, an
// internal CA) is served without a restart; a bad pair is refused and the
// one in use stays. The pair is read and checked by config/tlsPair.ts.
import type tls from 'node:tls';
import { loadTlsFiles, type TlsMaterial, type TlsPaths } from '../config/tlsPair.js';

/**
 * The pair in force, shared by every DoT and DoH server. `reload()` reads the
 * files again (SIGHUP) and gives every server the new pair; a broken pair is
 * reported and the old one keeps serving.
 */
export class Certificate {
  private readonly servers = new Set<tls.Server>();

  constructor(
    readonly paths: TlsPaths,
    public current: TlsMaterial,
  ) {}

  /** Loads the pair or throws the problem (start-up: config validation has already read it once). */
  static load(paths: TlsPaths): Certificate {
    const m = loadTlsFiles(paths);
    if (typeof m === 'string') throw new Error(m);
    return new Certificate(paths, m);
  }

  /** The server starts with the current pair and gets every reloaded one. */
  attach(server: tls.Server): void {
    this.servers.add(server);
    server.once('close', () => this.servers.delete(server));
  }

  /** Re-reads the files: the new pair applies to new connections; undefined, or why it was refused. */
  reload(): string | undefined {
    const m = loadTlsFiles(this.paths);
    if (typeof m === 'string') return m;
    this.current = m;
    for (const s of this.servers) s.setSecureContext({ cert: m.cert, key: m.key });
    return undefined;
  }
}
