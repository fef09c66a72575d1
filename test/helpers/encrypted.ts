// The setup of the tests of the encrypted listeners (DoT, DoH, and DDR, which names them): the
// test list and a server pair from the test PKI, and a config that listens on all of them.
import type { Pki } from './pki.js';
import { TIKTOK_LIST } from './sinkhole.js';

/** The files the config below names: the test list and the server's certificate pair. */
export function encryptedFiles(pki: Pki): Record<string, string> {
  return { 'tiktok.txt': TIKTOK_LIST, 'tls.crt': pki.server.certPem, 'tls.key': pki.server.keyPem };
}

/** DNS, DoT, DoH and HTTP on 127.0.0.1 port 0, the tiktok list enforced; `listen` adds or overrides listen keys. */
export function encryptedConfig(listen: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: { dns: ['127.0.0.1:0'], dot: ['127.0.0.1:0'], doh: ['127.0.0.1:0'], http: '127.0.0.1:0', tls: { cert: 'tls.crt', key: 'tls.key' }, ...listen },
    blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
    clients: { allowFrom: ['127.0.0.0/16'] },
  };
}
