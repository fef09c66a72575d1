// The command line's grammar: each subcommand declares its options with a
// line of help each, and gets exactly those. Help is generated from the same
// table, so it cannot drift from what is accepted. Mistakes are usage errors
// that say what would have been accepted, with a "did you mean" when a
// command or option is one or two keystrokes away.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SinkholeError } from './errors.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Shown in help, e.g. PATH or IP. */
  arg?: string;
  default?: string | boolean;
  help: string;
}

export interface CommandSpec {
  summary: string;
  /** Positional arguments, e.g. [{ name: 'NAME', help: '...' }]; none when empty. */
  args: { name: string; help: string }[];
  options: Record<string, OptionSpec>;
  /** What the exit codes mean, one line. */
  exit: string;
}

const DEFAULT_CONFIG = 'sinkhole.yaml';
const CONFIG: OptionSpec = { type: 'string', short: 'c', arg: 'PATH', default: DEFAULT_CONFIG, help: 'the config file; lists and exceptions are found relative to it' };
const JSON_OUT: OptionSpec = { type: 'boolean', help: 'print one JSON value instead of text' };

/** Every command, its options and their help: `sinkhole COMMAND --help` is generated from this table. */
export const COMMANDS: Record<string, CommandSpec> = {
  serve: {
    summary: 'Run the resolver. SIGHUP reopens the log files and reloads; SIGTERM/SIGINT drain and exit.',
    args: [],
    options: { config: CONFIG },
    exit: '0 after a clean stop; 1 when a listener cannot bind; 2 on a bad config',
  },
  validate: {
    summary: 'Check the config, every list and the exceptions: one "CODE file:line:col: message" line per problem or warning.',
    args: [],
    options: { config: CONFIG },
    exit: '0 valid (warnings allowed); 1 invalid; 2 on a usage error',
  },
  check: {
    summary: 'Say what the policy would do with a query from a client at a time, without sending anything.',
    args: [{ name: 'NAME', help: 'a domain name, a URL (https://www.tiktok.com/@x) or host:port; its host is checked' }],
    options: {
      client: { type: 'string', arg: 'IP|MAC', default: '127.0.0.1', help: 'the client address the query comes from, or a device by its MAC (see Identity)' },
      type: { type: 'string', arg: 'TYPE', default: 'A', help: 'the query type: A, AAAA, HTTPS, ... or TYPE65' },
      at: { type: 'string', arg: 'ISO-TIME', help: 'the time to judge exceptions at, e.g. 2026-12-31T23:59:59Z (default: now)' },
      answer: { type: 'string', arg: 'IP', help: 'an address the upstream answer would hold: RPZ response-IP rules are checked against it' },
      config: CONFIG,
      json: JSON_OUT,
    },
    exit: '0 answered normally (allowed or excepted); 1 blocked or refused; 2 on an error',
  },
  exceptions: {
    summary: 'List every exception with its state (active, expired, revoked), expiry, time zone and time left.',
    args: [],
    options: { config: CONFIG, json: JSON_OUT },
    exit: '0; 2 on an error',
  },
  report: {
    summary: 'Print the compliance report (devices that sent blocked queries) from a running server.',
    args: [],
    options: {
      config: CONFIG,
      url: { type: 'string', arg: 'URL', help: "ask this address instead of the config's listen.http (the token, if any, still comes from the config)" },
      json: JSON_OUT,
      since: { type: 'string', arg: 'DURATION|ISO', help: 'only devices seen since then: 2h, 1d, or 2026-11-28T00:00:00Z (counts still cover report.window)' },
      format: { type: 'string', arg: 'FORMAT', help: 'table (default), json, csv (RFC 4180), or cef (one CEF line per device and list, for a SIEM import)' },
    },
    exit: '0; 2 when the server cannot be reached',
  },
  health: {
    summary: "Ask a running server's /healthz (at listen.http from the config): for container and service health checks.",
    args: [],
    options: {
      config: CONFIG,
      url: { type: 'string', arg: 'URL', help: 'ask this address instead of the config\'s listen.http' },
    },
    exit: '0 healthy; 1 not healthy, unreachable, or no listen.http to ask',
  },
};

export type Values = Record<string, string | boolean | undefined>;

export type Parsed =
  | { kind: 'run'; command: string; values: Values; positionals: string[] }
  | { kind: 'help'; text: string }
  | { kind: 'version' };

const HELP: OptionSpec = { type: 'boolean', short: 'h', help: 'show this help and exit' };

/** Edit distance (Levenshtein), for "did you mean". */
export function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length]!;
}

/** The closest candidate within two edits, or one that the word starts (serv → serve). */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 3 ? 1 : distance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function optionUsage(name: string, o: OptionSpec): string {
  return `${o.short ? `-${o.short}, ` : '    '}--${name}${o.arg ? ` ${o.arg}` : ''}`;
}

export function commandUsage(name: string, c: CommandSpec): string {
  const opts = Object.entries(c.options).map(([n, o]) => `[--${n}${o.arg ? ` ${o.arg}` : ''}]`);
  return `sinkhole ${name}${c.args.map((a) => ` ${a.name}`).join('')}${opts.length ? ` ${opts.join(' ')}` : ''}`;
}

export function commandHelp(name: string, c: CommandSpec): string {
  const rows: [string, string][] = [
    ...c.args.map((a): [string, string] => [`    ${a.name}`, a.help]),
    ...Object.entries({ ...c.options, help: HELP }).map(([n, o]): [string, string] => [
      optionUsage(n, o),
      `${o.help}${o.default !== undefined && o.default !== false ? ` (default: ${String(o.default)})` : ''}`,
    ]),
  ];
  const width = Math.max(...rows.map(([l]) => l.length));
  return [
    `usage: ${commandUsage(name, c)}`,
    '',
    c.summary,
    '',
    ...(c.args.length ? ['arguments and options:'] : ['options:']),
    ...rows.map(([l, h]) => `  ${l.padEnd(width)}  ${h}`),
    '',
    `exit: ${c.exit}`,
  ].join('\n');
}

export function overallHelp(commands: Record<string, CommandSpec>): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  return [
    'usage: sinkhole COMMAND [OPTIONS]',
    '',
    'commands:',
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`),
    '',
    ...Object.entries(commands).map(([n, c]) => `  ${commandUsage(n, c)}`),
    '  sinkhole --version',
    '',
    'sinkhole COMMAND --help describes each option.',
  ].join('\n');
}

function usageError(message: string): SinkholeError {
  return new SinkholeError('SH_USAGE', message);
}

export function parseCommandLine(argv: readonly string[], commands: Record<string, CommandSpec>): Parsed {
  const [command, ...rest] = argv;
  if (command === undefined) throw usageError('no command given; run "sinkhole --help" for the commands');
  if (command === '--version' || command === '-V' || command === 'version') return { kind: 'version' };
  if (command === '--help' || command === '-h' || command === 'help') {
    const about = rest[0];
    if (about === undefined) return { kind: 'help', text: overallHelp(commands) };
    const spec = commands[about];
    if (!spec) throw unknownCommand(about, commands);
    return { kind: 'help', text: commandHelp(about, spec) };
  }
  const spec = commands[command];
  if (!spec) throw unknownCommand(command, commands);
  const options = { ...spec.options, help: HELP };
  let parsed;
  try {
    parsed = parseArgs({
      args: [...rest],
      strict: true,
      allowPositionals: spec.args.length > 0,
      options: Object.fromEntries(
        Object.entries(options).map(([n, o]) => [n, { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.default !== undefined ? { default: o.default } : {}) }]),
      ) as ParseArgsConfig['options'],
    });
  } catch (e) {
    throw optionError(e as NodeJS.ErrnoException, command, spec);
  }
  const values = parsed.values as Values;
  if (values.help) return { kind: 'help', text: commandHelp(command, spec) };
  if (parsed.positionals.length !== spec.args.length) {
    const wanted = spec.args.map((a) => a.name).join(' ');
    throw usageError(`${command} takes ${wanted ? `exactly ${wanted}` : 'no arguments'}, got ${parsed.positionals.length ? parsed.positionals.map((p) => `"${p}"`).join(' ') : 'none'}; see "sinkhole ${command} --help"`);
  }
  return { kind: 'run', command, values, positionals: parsed.positionals };
}

function unknownCommand(word: string, commands: Record<string, CommandSpec>): SinkholeError {
  if (word.startsWith('-')) return usageError(`an option needs a command before it, as in "sinkhole serve ${word}"; run "sinkhole --help" for the commands`);
  const near = suggest(word, Object.keys(commands));
  return usageError(`unknown command "${word}"${near ? `; did you mean "${near}"?` : '.'} Commands: ${Object.keys(commands).join(', ')} (sinkhole --help)`);
}

function optionError(e: NodeJS.ErrnoException, command: string, spec: CommandSpec): SinkholeError {
  const names = Object.keys(spec.options);
  const known = names.length ? names.map((n) => `--${n}`).join(', ') : 'none besides --help';
  const given = /'([^']*)'/.exec(e.message)?.[1] ?? '';
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const bare = given.replace(/^-+/, '').split('=')[0]!;
      const near = suggest(bare, names);
      return usageError(`${command} has no option "${given}"${near ? `; did you mean "--${near}"?` : '.'} Its options: ${known} (sinkhole ${command} --help)`);
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // Node's own wording ("Option '-c, --config <value>' argument missing") names no fix.
      const missing = /^Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(e.message);
      const opt = missing && spec.options[missing[1]!.slice(2)];
      if (missing && opt) return usageError(`${command}: ${missing[1]} needs a value, as in "sinkhole ${command} ${missing[1]} ${opt.arg ?? 'VALUE'}" (sinkhole ${command} --help)`);
      return usageError(`${command}: ${e.message.split('\n')[0]!.replace(/\.$/, '')} (sinkhole ${command} --help)`);
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return usageError(`${command} takes no arguments, got ${given ? `"${given}"` : 'one'} (sinkhole ${command} --help)`);
    default:
      return usageError(`${command}: ${e.message.split('\n')[0]!} (sinkhole ${command} --help)`);
  }
}
