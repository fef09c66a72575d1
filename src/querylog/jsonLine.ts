// Log lines are built by hand rather than with JSON.stringify of a fresh object: the query log
// runs on the query path, and a blocked query costs ~10 µs in all, so a generic serialiser was a
// visible share of it (issue 10: log.queries: blocked must cost ≤ 15 % of QPS). The output is
// the same JSON, field for field.

/** A JSON string literal; names from the wire may hold any byte, so those needing escapes go the slow way. */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || c > 0x7e) return JSON.stringify(s);
  }
  return `"${s}"`;
}

let lastMs = -1;
let lastIso = '';

/** new Date(ms).toISOString(), reusing the string while the millisecond is the same (a burst of lines shares it). */
export function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** `,"key":"value"` for an optional string field, or nothing when it is absent (as JSON.stringify drops undefined). */
export function optionalField(key: string, value: string | undefined): string {
  return value === undefined ? '' : `,"${key}":${jsonString(value)}`;
}
