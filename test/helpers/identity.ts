// Fixtures shared by the tests of devices known by MAC (test/identity/, and the relay stage in test/stages/):
// three devices, a Kea lease file header, and a config whose exceptions name a MAC, a hostname and a group.
import { buildQuery, exchange, rcodeOf } from './dns.js';
import { T } from './fakeUpstream.js';
import type { Harness } from './sinkhole.js';

export const MAC1 = '02:00:00:00:00:01';
export const MAC2 = '02:00:00:00:00:02';
export const MAC3 = '02:00:00:00:00:03';
export const KEA_HEADER = 'address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n';

export const IDENTITY_CONFIG = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
  clients: { allowFrom: ['127.0.0.0/16'], groups: { 'press-devices': [`mac:${MAC2}`] } },
  identity: { leases: [{ format: 'kea-csv', file: 'leases.csv' }], static: { [MAC3]: 'Speaker-iPad' } },
  exceptions: [
    { id: 'EX-MAC', clients: [`mac:${MAC1}`], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
    { id: 'EX-HOST', clients: ['host:speaker-ipad'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
    { id: 'EX-GROUP', clients: ['press-devices'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' },
  ],
  ...extra,
});

/** The rcode `from` gets for www.tiktok.com: NXDOMAIN when blocked, NOERROR when an exception lets it through. */
export async function askTiktok(h: Harness, from: string, proto: 'udp' | 'tcp' = 'udp', q = buildQuery('www.tiktok.com', T.A)): Promise<number> {
  return rcodeOf(await exchange(proto, h.port, q, from));
}
