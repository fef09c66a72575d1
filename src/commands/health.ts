// sinkhole health: asks a running sinkhole's /healthz, for Docker's HEALTHCHECK and scripts.
import { loadConfig } from '../config/config.js';
import { SinkholeError } from '../errors.js';
import { serverUrl } from '../http/server.js';
import { reportError, shortPath } from './output.js';

/**
 * For HEALTHCHECK and service probes: GET /healthz on the config's listen.http
 * (an unspecified address is asked on loopback). Any failure is exit 1, which
 * is what Docker reads as unhealthy.
 */
export async function health(configFile: string, url: string | undefined): Promise<number> {
  let target: URL;
  try {
    if (url === undefined) {
      const ep = loadConfig(configFile).listen.http;
      if (!ep) throw new SinkholeError('SH_USAGE', `${shortPath(configFile)} has no listen.http: there is no /healthz to ask (give --url, or set listen.http)`);
      target = new URL('/healthz', serverUrl(ep));
    } else {
      target = new URL('/healthz', url);
    }
  } catch (e) {
    reportError(e);
    return 1;
  }
  let res: Response;
  try {
    res = await fetch(target, { signal: AbortSignal.timeout(3000) });
    await res.arrayBuffer();
  } catch (e) {
    process.stderr.write(`SH_UNREACHABLE cannot fetch ${target.href}: ${(e as Error).message}\n`);
    return 1;
  }
  if (!res.ok) {
    process.stderr.write(`SH_UNHEALTHY ${target.href} answered HTTP ${res.status}\n`);
    return 1;
  }
  process.stdout.write(`healthy: ${target.href} ${res.status}\n`);
  return 0;
}
