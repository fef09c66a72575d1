// Operational log lines on stderr: one line per event, `level code message
// key=value...`, so they read well in journald and grep alike. Query and
// audit logs are separate JSON-line streams (querylog/).
import type { ErrorCode } from './errors.js';

/** Every warning and error names a code of the catalogue (errors.ts), which docs/errors.md documents: a new code cannot be logged before it is documented. */
export type Fields = Record<string, unknown>;

export interface Logger {
  info(message: string, fields?: Fields): void;
  warn(code: ErrorCode, message: string, fields?: Fields): void;
  error(code: ErrorCode, message: string, fields?: Fields): void;
}

function format(fields: Fields | undefined): string {
  if (!fields) return '';
  return Object.entries(fields)
    .map(([k, v]) => ` ${k}=${typeof v === 'string' && !/\s|"/.test(v) ? v : JSON.stringify(v)}`)
    .join('');
}

export function streamLogger(write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const line = (level: string, code: string, message: string, fields?: Fields): void =>
    write(`${new Date().toISOString()} ${level}${code ? ` ${code}` : ''} ${message}${format(fields)}\n`);
  return {
    info: (message, fields) => line('info', '', message, fields),
    warn: (code, message, fields) => line('warn', code, message, fields),
    error: (code, message, fields) => line('error', code, message, fields),
  };
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
