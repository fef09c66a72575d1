// One catalogue of stable error codes (as Fastify does). Logs, the CLI and
// tests match on `code`, never on message text; docs/errors.md documents
// every entry and a test keeps the two in step.
export const ERROR_CODES = {
  SH_CONFIG_SYNTAX: 'the YAML of a config or exceptions file does not parse',
  SH_CONFIG_INVALID: 'a config value has the wrong type, is out of range or is an unknown key',
  SH_CONFIG_READ: 'a config, list or exceptions file cannot be read',
  SH_LIST_SYNTAX: 'a blocklist line is not a rule in any accepted form',
  SH_LIST_PUBLIC_SUFFIX: 'a blocklist rule is a public suffix (com, co.uk, github.io) and its line does not say it is meant',
  SH_LIST_EMPTY: 'a blocklist has no rules (take it out of blocking.enforce instead)',
  SH_RPZ_SYNTAX: 'an RPZ zone file line is not a record, or its record is not an RPZ trigger or action (the zone\'s last good version stays in force)',
  SH_RPZ_TRANSFER: 'warning: an RPZ zone could not be transferred from its primary (refused, unreachable, malformed, or its copy not written); the zone in force stays and is retried at the SOA retry interval',
  SH_RPZ_EXPIRED: 'warning: an RPZ zone has not reached its primary for longer than its SOA expire; it stays in force (a policy zone is never dropped)',
  SH_RPZ_UNSUPPORTED: 'warning: an RPZ zone holds NSDNAME/NSIP triggers or CNAME *.domain actions, which a forwarder cannot apply: counted, not applied',
  SH_EXCEPTION_INVALID: 'an exception record is incomplete or names an unknown group, list or date',
  // Warnings: validate prints them and serve logs them, but they never stop a policy from loading.
  SH_EXCEPTION_OUTSIDE: 'warning: an exception names a client outside clients.allowFrom (it gets REFUSED, so the exception does nothing for it)',
  SH_EXCEPTION_WIDE: 'warning: an exception covers a very wide range (IPv4 /0-/8, IPv6 /0-/32) or allows a public suffix',
  SH_EXCEPTION_DEVICE: 'warning: an exception names a mac: or host: that no lease file nor identity.static knows (it applies to nothing yet)',
  SH_EXCEPTION_LONG: 'warning: an exception expires more than a year from now',
  SH_LISTEN: 'a listener could not bind its address (in use, or not permitted)',
  SH_USAGE: 'the command line is not understood',
  SH_LEASES_INVALID: 'a DHCP lease file has a line that is not a lease in its format (its last good version stays in force)',
  SH_LEASES_READ: 'a DHCP lease file cannot be read (its last good version stays in force)',
  SH_REPORT_STORE: 'the report store (the state file, or PostgreSQL) cannot be read or written; events wait in a bounded spool',
  SH_HTTP_TOKEN: 'listen.httpToken names a file that cannot be read or is empty, or credential:NAME without $CREDENTIALS_DIRECTORY',
  SH_CONN_ABUSE: 'warning: a client connection was closed for abuse (HTTP/2 stream resets over budget, CVE-2023-44487); its address is refused for a while',
  SH_UNREACHABLE: 'a running server could not be reached over HTTP (report, health)',
  SH_UNAUTHORIZED: 'a running server answered 401: the token is missing or is not the one in its listen.httpToken (report)',
  SH_UNHEALTHY: 'a running server answered /healthz with something other than 200 (health)',
  SH_STATE_NONE: 'there is no last good policy for this config file (a new install, or a snapshot saved for another config): serve exits 2 until the files compile',
  SH_DNSTAP: 'warning: the dnstap collector (log.dnstap) cannot be reached or closed the stream; it is retried with backoff (0.5-30 s) and messages past the bounded queue are dropped and counted (DNS is not affected)',
  SH_EVENT_SINK: 'warning: a compliance-event sink (events.syslog, events.webhook) cannot be reached, refused an event, or its spool in state.dir cannot be written; events wait in the bounded spool and are retried with backoff (0.5-30 s); past the bound the oldest are dropped and counted (DNS is not affected)',
  SH_EVENT_ARBITER: 'warning: the PostgreSQL announcements table (events with report.store: postgres://) cannot be reached; this instance announces on its own until it answers (a device may then be announced once per instance)',
  SH_RUNTIME: 'the Node runtime is older than the supported LTS line (24)',
  // RPZ export (listen.rpz, docs/rpz.md "Serving sinkhole's lists as RPZ").
  SH_RPZ_EXPORT: 'info: the RPZ export is listening, its zone changed (new serial), a transfer was served, or a secondary answered a NOTIFY',
  SH_RPZ_EXPORT_REFUSED: 'warning: a request to listen.rpz was refused: the client is outside listen.rpz.allow, its transfer is unsigned while listen.rpz.tsig is set, or maxTransfers are running',
  SH_RPZ_EXPORT_TSIG: 'warning: a request to listen.rpz carried a TSIG that does not verify (unknown key, wrong MAC, clock skew): answered NOTAUTH with the TSIG error',
  SH_RPZ_EXPORT_TRANSFER: 'warning: a transfer from listen.rpz did not complete (the secondary closed the connection, or the transfer deadline passed); the secondary retries',
  SH_RPZ_EXPORT_NOTIFY: 'warning: a secondary in listen.rpz.notify did not answer a NOTIFY after every resend (it sees the new serial at its next SOA refresh)',
  SH_RPZ_EXPORT_STATE: 'warning: the RPZ export serial cannot be read or saved in state.dir (the serial is then taken from the clock, so it still increases)',
  SH_RPZ_EXPORT_NAME: 'warning: rules left out of the RPZ export because, with the zone name appended, they exceed 255 octets',
  SH_INTERNAL: 'a query failed inside sinkhole (SERVFAIL and a counter), or a command hit an unexpected error',
  SH_WATCH: 'warning: a file cannot be watched (SIGHUP still reloads it)',
  SH_WORKER: 'a query thread or the identity thread died; it is restarted, and the others go on',
  SH_LOG_WRITE: 'warning: a log target (query log, audit trail) cannot be written; lines are counted as dropped until it can',
  SH_LOG_BACKLOG: 'warning: a log target is too slow; lines past its bounded backlog are dropped and counted',
  SH_RESTART_NEEDED: 'warning: a setting changed on reload takes effect only on restart (listen addresses, workers, report.store, state.dir, events sinks)',
  SH_DRAIN_TIMEOUT: 'warning: the drain at shutdown ran out of time; queries still in flight were dropped',
  SH_POLICY_DEGRADED: 'warning: the files on disk do not compile at start-up, and the last good policy is served',
  SH_STATE_WRITE: 'warning: the last good policy cannot be saved in state.dir, or state.dir cannot be written at all (DNS is not affected)',
  SH_STATE_INVALID: 'warning: the last good policy in state.dir is damaged or no longer compiles, so it is not used',
  SH_RATELIMIT: 'warning: a client is over clients.rateLimit (logged once a minute per client)',
  SH_TLS_CERT: 'warning: the listen.tls certificate or key could not be re-read on SIGHUP (the one in use stays)',
  SH_UPSTREAM_TLS: 'warning: a TLS handshake with an encrypted upstream failed (at most every 30 s per upstream)',
  SH_UDP: 'warning: a UDP listener socket reported an error, or a reply could not be sent (the socket goes on serving)',
  SH_TCP: 'warning: a TCP, DoT or DoH server reported an error (the listener goes on serving)',
  SH_METRICS: 'a /metrics scrape failed while it was rendered (the next scrape starts afresh)',
} as const;

/** Every code a log line or an error can carry: the one catalogue above, which docs/errors.md documents. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Where in a file a problem is; line and col are 1-based, as editors show them. */
export interface Problem {
  code: ErrorCode;
  file: string;
  line: number;
  col: number;
  message: string;
}

export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

export class SinkholeError extends Error {
  // tap's t.throws compares the class name, so every error names itself (PACKAGES.md §5).
  override name = 'SinkholeError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly problems: readonly Problem[] = [],
  ) {
    super(message);
  }
}

/** Problems listed per file, as compilers do: past this, one line says how many more there are. */
export const MAX_PROBLEMS_PER_FILE = 100;

/**
 * The first MAX_PROBLEMS_PER_FILE problems of each file, then one line per file for the rest
 * (`… and 49,900 more problems in this file`), at the first one not listed. A file of 50,000
 * mistakes is still one screen, and every consumer (CLI, log, /readyz) gets the same bounded list.
 */
export function boundPerFile(problems: readonly Problem[]): Problem[] {
  const shown = new Map<string, number>();
  const over = new Map<string, Problem & { more: number }>();
  const out: Problem[] = [];
  for (const p of problems) {
    const n = shown.get(p.file) ?? 0;
    if (n < MAX_PROBLEMS_PER_FILE) {
      shown.set(p.file, n + 1);
      out.push(p);
      continue;
    }
    const summary = over.get(p.file);
    if (summary) summary.more++;
    else {
      const first = { ...p, more: 1 };
      over.set(p.file, first);
      out.push(first);
    }
  }
  for (const summary of over.values()) {
    summary.message = `… and ${summary.more.toLocaleString('en-US')} more problems in this file (the first ${MAX_PROBLEMS_PER_FILE} are listed)`;
    delete (summary as Partial<typeof summary>).more;
  }
  return out;
}

/** Thrown when a config, list or exceptions file fails to compile: carries every problem found (bounded per file). */
export class PolicyError extends SinkholeError {
  override name = 'PolicyError';
  constructor(all: readonly Problem[]) {
    const problems = boundPerFile(all);
    const first = problems[0];
    super(first ? first.code : 'SH_CONFIG_INVALID', problems.map(formatProblem).join('\n'), problems);
  }
}
