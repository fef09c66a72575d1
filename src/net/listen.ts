// Listening once: a server's listen() or a UDP socket's bind() as a promise that rejects on the error
// that stopped it (EADDRINUSE, EACCES), and no longer listens for that error afterwards, so that the
// caller's own 'error' handler (a log line) is the only one left once it serves. Every listener uses
// these: DNS over UDP, TCP, DoT and DoH, HTTP, and the RPZ export.
import type dgram from 'node:dgram';
import type { AddressInfo, ListenOptions, Server } from 'node:net';

/** Resolves with the bound address once `server` listens; rejects with the error that stopped it. */
export function listenOnce(server: Server, options: ListenOptions): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Resolves with the bound address once `sock` is bound; rejects with the error that stopped it. */
export function bindOnce(sock: dgram.Socket, port: number, host: string): Promise<AddressInfo> {
  return new Promise<AddressInfo>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, host, () => {
      sock.off('error', reject);
      resolve(sock.address());
    });
  });
}
