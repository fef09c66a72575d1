// Real encrypted DNS servers nobody here wrote, started by the test on
// loopback: unbound serving DoT (tls-service-key/pem) from local data, and
// dnsdist serving DoH (addDOHLocal) and DoT (addTLSLocal) in front of it.
// Neither ever sends a packet off the machine: unbound refuses every name
// outside its local zone, and dnsdist's only backend is that unbound, with
// its security poll (a DNS lookup of its own version) turned off.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Pki } from './pki.js';
import { freePort } from './ports.js';


function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface Peer {
  ports: Record<string, number>;
  log(): string;
  stop(): Promise<void>;
}

/** Starts `cmd` with ports from `ports()`, until every port in `ready` accepts; retries with new ports when it dies (a port taken meanwhile). */
async function startWithRetry(
  name: string, make: (ports: Record<string, number>, dir: string) => { args: string[]; ready: string[] }, portNames: string[],
  /** Ports the caller chose already (another server was told of them): used as they are. */
  fixed: Record<string, number> = {},
): Promise<Peer> {
  let lastLog = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), `sinkhole-${name}-`));
    const ports: Record<string, number> = {};
    for (const p of portNames) ports[p] = fixed[p] ?? (await freePort());
    const { args, ready } = make(ports, dir);
    const logFile = join(dir, `${name}.log`);
    const out: Buffer[] = [];
    const child: ChildProcess = spawn(args[0]!, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => out.push(c));
    let exited = false;
    child.once('exit', () => (exited = true));
    const log = (): string => {
      let file = '';
      try {
        file = readFileSync(logFile, 'utf8');
      } catch {}
      return Buffer.concat(out).toString() + file;
    };
    const stop = async (): Promise<void> => {
      if (!exited) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await once(child, 'exit').catch(() => {});
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
    };
    // Bounded wait: 100 probes 50 ms apart.
    for (let i = 0; i < 100 && !exited; i++) {
      const up = await Promise.all(ready.map((p) => accepts(ports[p]!)));
      if (up.every(Boolean)) return { ports, log, stop };
      await new Promise((r) => setTimeout(r, 50));
    }
    lastLog = log();
    await stop();
  }
  throw new Error(`${name} did not start on loopback in 5 attempts:\n${lastLog}`);
}

/** unbound with DoT on `tls` and plain DNS on `dns`, answering only example.test from `localData` lines. */
export function startUnbound(pki: Pki, localData: string[]): Promise<Peer> {
  return startWithRetry(
    'unbound',
    (ports, dir) => {
      const conf = join(dir, 'unbound.conf');
      writeFileSync(
        conf,
        `server:
    interface: 127.0.0.1@${ports.tls}
    interface: 127.0.0.1@${ports.dns}
    tls-port: ${ports.tls}
    tls-service-key: "${pki.server.key}"
    tls-service-pem: "${pki.server.cert}"
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "${dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    # Never recurse: every name outside example.test is REFUSED, so nothing leaves loopback.
    local-zone: "." refuse
    local-zone: "example.test." static
${localData.map((d) => `    local-data: "${d}"`).join('\n')}
remote-control:
    control-enable: no
`,
      );
      return { args: ['unbound', '-d', '-c', conf], ready: ['tls', 'dns'] };
    },
    ['tls', 'dns'],
  );
}

/** dnsdist with DoH on `doh` (/dns-query) and DoT on `dot`, forwarding to `backendPort` on 127.0.0.1. */
export function startDnsdist(pki: Pki, backendPort: number): Promise<Peer> {
  return startWithRetry(
    'dnsdist',
    (ports, dir) => {
      const conf = join(dir, 'dnsdist.conf');
      writeFileSync(
        conf,
        `-- No security poll: it would look dnsdist's own version up through the system resolver.
setSecurityPollSuffix("")
setLocal("127.0.0.1:${ports.plain}")
addDOHLocal("127.0.0.1:${ports.doh}", "${pki.server.cert}", "${pki.server.key}", "/dns-query")
-- maxInFlight: without it, dnsdist 1.7 stalls on queries pipelined on a warm DoT connection.
addTLSLocal("127.0.0.1:${ports.dot}", "${pki.server.cert}", "${pki.server.key}", {maxInFlight=100})
newServer({address="127.0.0.1:${backendPort}", checkName="www.example.test."})
`,
      );
      return { args: ['dnsdist', '--supervised', '--disable-syslog', '-C', conf], ready: ['doh', 'dot'] };
    },
    ['plain', 'doh', 'dot'],
  );
}

/**
 * unbound as a forwarder with Response Policy Zones (issue 21): plain DNS on `dns`, every query
 * forwarded to the fake upstream at 127.0.0.1:`upstreamPort` (never anywhere else), the zones loaded
 * from files with `rpz:` in the given order, as sinkhole's blocking.rpz loads them.
 */
export function startUnboundRpz(
  upstreamPort: number,
  zones: { name: string; file: string }[],
  /**
   * `primaries`: zones transferred from a primary (`rpz: primary:`), NOTIFY allowed from 127.0.0.1 (the RPZ
   * export test, with sinkhole as the primary). `dnsPort`: a port chosen by the caller, who told the primary of it.
   */
  opts: { dnsPort?: number; primaries?: { name: string; primary: string }[] } = {},
): Promise<Peer> {
  return startWithRetry(
    'unbound-rpz',
    (ports, dir) => {
      const conf = join(dir, 'unbound.conf');
      writeFileSync(
        conf,
        `server:
    interface: 127.0.0.1@${ports.dns}
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "${dir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    access-control: 127.0.0.0/8 allow
    # respip applies rpz-ip and rpz-client-ip; no validator: nothing here is signed.
    module-config: "respip iterator"
    do-not-query-localhost: no
    qname-minimisation: no
    prefetch: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@${upstreamPort}
${zones.map((z) => `rpz:\n    name: "${z.name}."\n    zonefile: "${z.file}"\n    rpz-log: no\n`).join('')}\
${(opts.primaries ?? []).map((z) => `rpz:\n    name: "${z.name}."\n    primary: ${z.primary}\n    allow-notify: 127.0.0.1\n    rpz-log: no\n`).join('')}
remote-control:
    control-enable: no
`,
      );
      return { args: ['unbound', '-d', '-c', conf], ready: ['dns'] };
    },
    ['dns'],
    opts.dnsPort ? { dns: opts.dnsPort } : {},
  );
}
