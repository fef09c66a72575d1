// Calendar dates in a named time zone. An exception that "expires 2026-12-07"
// must lapse at the same instant whatever zone the process runs in: a
// container runs in UTC, the admin who wrote the date in Pacific/Auckland, 13
// hours apart. So a date-only value is read in an IANA zone (the record's
// `timezone:`, else the server's), never in the process's local time.

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** The zone the server runs in: TZ if set, else the system's (/etc/localtime). */
export function serverZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** Whether `name` is an IANA zone name this runtime knows (Europe/London, UTC, America/Argentina/Salta). */
export function isZoneName(name: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(name)) return false;
  try {
    formatter(name);
    return true;
  } catch {
    return false;
  }
}

/** Wall-clock date and time at instant `t` in `zone`, as if it were UTC (ms). */
function wallClock(t: number, zone: string): number {
  const p: Record<string, number> = {};
  for (const part of formatter(zone).formatToParts(t)) if (part.type !== 'literal') p[part.type] = Number(part.value);
  return Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!);
}

/**
 * The first instant of local date y-m-d in `zone` (ms since the epoch):
 * midnight, or the end of the gap when the clocks skip midnight (some zones
 * move to summer time at 00:00). `d` may overflow (d + 1 = the next day).
 */
export function startOfDay(y: number, m: number, d: number, zone: string): number {
  const target = Date.UTC(y, m - 1, d); // local midnight, read as if it were UTC
  // The zone's offset at that day is one of those seen a day either side: try each, keep the
  // earliest instant that is already on the target date.
  let best = Infinity;
  for (const probe of [target - 86_400_000, target, target + 86_400_000]) {
    const offset = wallClock(probe, zone) - Math.floor(probe / 1000) * 1000;
    const candidate = target - offset;
    if (wallClock(candidate, zone) >= target && candidate < best) best = candidate;
  }
  return best;
}

/** The local date of instant `t` in `zone`, as YYYY-MM-DD. */
export function localDate(t: number, zone: string): string {
  return new Date(wallClock(t, zone)).toISOString().slice(0, 10);
}
