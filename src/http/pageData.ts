// The admin page's data (http/page.ts renders it), gathered from the parts start() owns: the policy
// in force, the last reload's problems, the lease sources, the compliance report, the last hour's
// counts and the upstreams' health. Read when the page is asked for, never on the query path.
import type { Announcer } from '../events/announcer.js';
import type { IdentitySources } from '../identity/sources.js';
import { stateOf } from '../policy/exceptions.js';
import type { Generation } from '../policy/generation.js';
import { isZoneName, serverZone } from '../policy/zonedDate.js';
import type { ReportPages } from '../report/pages.js';
import { mergeHealth, type UpstreamHealth } from '../upstream/forwarder.js';
import { VERSION } from '../version.js';
import type { PageData } from './page.js';
import type { RecentTotals, Totals } from './recent.js';

export interface PageSources {
  generation: Generation;
  now: number;
  /** The last rejected reload's problems (empty when the last reload compiled). */
  lastProblems: readonly string[];
  identity: IdentitySources;
  reportPages: ReportPages;
  /** Events waiting in the spool while the shared report store is unreachable. */
  spooled: () => number;
  recent: RecentTotals;
  totals: () => Totals;
  /** Each query thread's upstream health, merged here. */
  upstreams: () => UpstreamHealth[][];
  announcer: Announcer | undefined;
}

export async function adminPageData(s: PageSources): Promise<PageData> {
  const g = s.generation;
  const now = s.now;
  const degraded = [
    ...(g.degraded ? [`serving the last good policy saved ${g.degraded.snapshotTakenAt}: the files on disk do not compile`] : []),
    ...s.lastProblems.slice(0, 3).map((p) => `last reload rejected, generation ${g.number} stays in force: ${p}`),
    ...s.identity.sources().filter((src) => src.problems.length).map((src) => `lease file ${src.file}: ${src.problems[0]}`),
  ];
  const r = await s.reportPages.snapshot();
  if (r.source !== 'memory' && r.source !== 'postgres') degraded.push(`report store unreachable: ${s.spooled()} events spooled`);
  // With workers, the counts are as of the last minute's sample (or /metrics scrape): a page view asks no thread.
  const last = s.recent.since(now, s.totals());
  const upstreams = mergeHealth(s.upstreams()).map((u) => ({ ...u, ...(last?.upstreams[u.label] ?? { ok: 0, failed: 0 }) }));
  // The zone as the admin set it (TZ=Asia/Kolkata), not ICU's canonical alias for it (Asia/Calcutta).
  const tz = process.env.TZ;
  return {
    now, version: VERSION, report: r, timeZone: tz && isZoneName(tz) ? tz : serverZone(), upstreams,
    recent: last && { ms: last.ms, queries: last.queries, blocked: last.blocked },
    // The same stateOf as DNS, the CLI and /metrics: a revoked record is never shown as active.
    exceptions: g.exceptions.map((e) => ({
      id: e.id, state: stateOf(e, now), clients: e.clients, allow: [...e.allowLists, ...e.allowDomains], expires: e.expires,
      endsAt: e.endsAt, approvedBy: e.approvedBy, reason: e.reason, revoked: e.revoked, revokedBy: e.revokedBy,
    })),
    policy: {
      generation: g.number, degraded,
      lists: g.config.blocking.lists.map((l) => ({ name: l.name, rules: g.ruleCounts.get(l.name) ?? 0, enforced: g.config.blocking.enforce.includes(l.name) })),
    },
    identity: { devices: s.identity.holder.current.size, sources: s.identity.sources().map((src) => ({ ...src, ok: !src.problems.length })) },
    announced: s.announcer && (await s.announcer.recent(50)),
  };
}
