// What a reload cannot apply: settings that bind sockets, size tables or open stores at start-up. A reload
// applies everything else and says, for these, that they take effect on restart (SH_RESTART_NEEDED).
import { isDeepStrictEqual } from 'node:util';
import type { Config } from './schema.js';

/** One note per group of changed settings that only a restart applies; empty when there is none. */
export function restartNotes(next: Config, previous: Config): string[] {
  const notes: string[] = [];
  // The sinks, the spool bound and turning events on or off; threshold, window and cooldown apply at once.
  const sinksOf = (c: Config): unknown => c.events && { syslog: c.events.syslog, webhook: c.events.webhook, spool: c.events.spool };
  if (!isDeepStrictEqual(sinksOf(next), sinksOf(previous))) notes.push('events (on or off, its sinks, spool) take effect on restart');
  if (!isDeepStrictEqual(next.report.store, previous.report.store) || next.state.dir !== previous.state.dir) {
    notes.push('report.store and state.dir take effect on restart');
  }
  // Everything under listen but the token binds sockets or sizes their tables at start-up.
  const restartOnly = [
    ...([...new Set([...Object.keys(next.listen), ...Object.keys(previous.listen)])] as (keyof Config['listen'])[])
      .filter((k) => k !== 'httpToken' && !isDeepStrictEqual(next.listen[k], previous.listen[k]))
      .map((k) => `listen.${k}`),
    ...(next.workers !== previous.workers ? ['workers'] : []),
  ];
  if (restartOnly.length) notes.push(`${restartOnly.join(', ')} changed; they take effect on restart`);
  return notes;
}
