// A real headless Chromium for the admin page tests, driven by playwright-core
// (which downloads no browser). Debian's /usr/bin/chromium when the machine has
// it (CI installs it); otherwise the Chromium that the npm package
// @sparticuz/chromium ships inside itself, unpacked to /tmp on first use, so
// that `npm ci && npm test` needs nothing beyond Node and npm.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { peersRequired } from './requires.js';

const DEBIAN_CHROMIUM = '/usr/bin/chromium';
/** No connection of its own anywhere: this machine's network is closed, and a test must not reach off it. */
const QUIET = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
/** @sparticuz/chromium's defaults that would weaken what the page test checks (same-origin and CSP behaviour). */
const NOT_THESE = new Set(['--disable-web-security', '--allow-running-insecure-content']);

async function executable(): Promise<{ path: string; args: string[]; which: string }> {
  if (existsSync(DEBIAN_CHROMIUM)) return { path: DEBIAN_CHROMIUM, args: ['--headless'], which: 'Debian chromium' };
  if (peersRequired()) throw new Error(`SINKHOLE_REQUIRE_PEERS=1 and ${DEBIAN_CHROMIUM} is missing: apt-get install chromium`);
  const sparticuz = (await import('@sparticuz/chromium')).default;
  return { path: await sparticuz.executablePath(), args: sparticuz.args.filter((a) => !NOT_THESE.has(a)), which: '@sparticuz/chromium' };
}

export interface Browser {
  context: BrowserContext;
  /** Which Chromium this is, for the test's output. */
  which: string;
  close(): Promise<void>;
}

/** A fresh headless browser with an empty profile; `headers` go with every request. */
export async function launchBrowser(headers: Record<string, string> = {}, viewport?: { width: number; height: number }): Promise<Browser> {
  const exe = await executable();
  const profile = mkdtempSync(join(tmpdir(), 'sinkhole-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: exe.path,
    headless: true,
    args: [...new Set([...exe.args, ...QUIET])],
    extraHTTPHeaders: headers,
    ...(viewport ? { viewport } : {}),
  });
  return {
    context,
    which: exe.which,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
