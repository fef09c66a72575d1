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

/** A server with HTTP on, one list and one exception: the config of the HTTP and metrics tests. */
export const HTTP_CONFIG = {
  listen: { dns: ['127.0.0.1:0'], http: '127.0.0.1:0' },
  blocking: { lists: { tiktok: ['tiktok.txt'] }, enforce: ['tiktok'] },
  clients: { allowFrom: ['127.0.0.0/16'] },
  exceptions: [{ id: 'EX-1', clients: ['127.0.0.7'], allow: ['tiktok'], reason: 'r', approvedBy: 'a', expires: '2999-01-01' }],
};
