// Who asked, and which device that is: the one rule that the policy (stages/blocklist.ts), the logs
// (querylog/) and the compliance report (report/) all follow, so that they never disagree about a query.
//
// - Who asked: the client a trusted relay named in its EDNS options (stages/relay.ts: Client Subnet,
//   RFC 7871, and dnsmasq's MAC option), else the packet's source. The stages below the relay see the
//   relayed client in the query itself; the stages above it hold the query as received, and read the
//   relayed client from the outcome.
// - Which device: the MAC a trusted relay sent names it directly; otherwise whoever holds the address in
//   the lease table at that moment.
import type { Query } from '../dns/query.js';
import type { Outcome } from '../pipeline/types.js';
import type { Device, IdentityTable } from './table.js';

/** The client address a log line or the report records for this query. */
export function whoAsked(q: Query, o: Outcome): string {
  const relayed = o.relayed;
  return relayed === undefined ? q.client : relayed.client;
}

/** The MAC a trusted relay sent for this query, or undefined. */
export function macAsked(q: Query, o: Outcome): string | undefined {
  const relayed = o.relayed;
  return relayed === undefined ? q.mac : relayed.mac;
}

/** The device behind a client address (and the relay's MAC, when one was sent) at time `at`. */
export function deviceFor(table: IdentityTable, client: string, mac: string | undefined, at: number): Device | undefined {
  return mac !== undefined ? table.relayed(mac) : table.lookup(client, at);
}
