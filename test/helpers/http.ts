// HTTP on a running sinkhole's listen.http, shared by the metrics, HTTP, query-log and report tests:
// a plain GET, and Prometheus text parsed into samples.
import type { Harness } from './sinkhole.js';

export async function get(h: Harness, path: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`http://127.0.0.1:${h.running.http!.port}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

/** Parses Prometheus text into `name{labels}` → value. */
export function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
