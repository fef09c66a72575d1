// sinkhole validate: the config, lists, exceptions and lease sources compile, or every problem at
// file:line:col; warnings for what is valid but probably not meant (docs/configuration.md).
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { PolicyError, type Problem } from '../errors.js';
import { buildGeneration, type Generation } from '../policy/generation.js';
import { lastGood } from '../state/lastGood.js';
import { loadIdentity } from '../identity/sources.js';
import { parseSelector } from '../net/mac.js';
import type { IdentityTable } from '../identity/table.js';
import { readHttpToken } from '../http/token.js';
import { exceptionWarnings } from '../policy/warnings.js';
import { policyHash } from '../policy/fingerprint.js';
import { shortPath, problemLine } from './output.js';

export function validate(configFile: string): number {
  try {
    const g = buildGeneration(configFile, 1);
    // Warnings: valid, but probably not what was meant. They do not fail validation, and serve runs.
    const warnings: Problem[] = [...exceptionWarnings(g, Date.now())];
    if (g.config.listen.httpToken) {
      try {
        readHttpToken(g.config.listen.httpToken);
      } catch (e) {
        warnings.push({ code: 'SH_HTTP_TOKEN', file: g.config.file, line: 1, col: 1, message: `warning: ${(e as Error).message}; serve will refuse to start` });
      }
    }
    const { table, problems } = loadIdentity(g.config.identity, Date.now());
    for (const p of problems) warnings.push({ ...p, message: `warning: ${p.message} (serve keeps watching this source)` });
    warnings.push(...deviceWarnings(g, table));
    for (const z of g.rpzZones) {
      if (!z.firstUnsupported) continue;
      const n = z.counts.nsdname + z.counts.nsip;
      warnings.push({
        code: 'SH_RPZ_UNSUPPORTED', file: z.file, ...z.firstUnsupported,
        message: `warning: RPZ "${z.name}": ${z.unsupported} record(s) are counted but not applied (${n} NSDNAME/NSIP trigger(s): a forwarder never sees the NS records of an answer's delegation; the first is a ${z.firstUnsupported.what})`,
      });
    }
    for (const w of warnings) process.stdout.write(`${problemLine(w)}\n`);
    const rules = [...g.ruleCounts].map(([l, n]) => `${l}=${n}`).join(' ') + g.rpzZones.map((z) => ` (rpz ${z.name} serial ${z.serial})`).join('');
    process.stdout.write(
      `${shortPath(g.config.file)}: ok (lists: ${rules || 'none'}; exceptions: ${g.exceptions.length}; lease sources: ${g.config.identity.leases.length}, ` +
        `devices: ${table.size}; policy ${policyHash(g)})${warnings.length ? `, ${warnings.length} warning(s)` : ''}\n`,
    );
    return 0;
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    for (const p of e.problems) process.stdout.write(`${problemLine(p)}\n`);
    // What a start-up with these files would do (issue 9). On stderr, so stdout stays one line per problem.
    const fallback = lastGood(configFile);
    if (fallback.kind === 'snapshot') {
      const m = fallback.manifest;
      process.stderr.write(
        `SH_POLICY_DEGRADED serve would start from the last good policy saved ${m.takenAt} (generation ${m.generation}, ${m.files.length} files in ${shortPath(fallback.dir)}) ` +
          `and report it on /readyz and sinkhole_policy_degraded until these files compile\n`,
      );
    } else if (!existsSync(configFile)) {
      process.stderr.write(`SH_STATE_NONE ${shortPath(resolve(configFile))} does not exist: serve would exit 2\n`);
    } else if (fallback.kind === 'none') {
      process.stderr.write(`SH_STATE_NONE ${fallback.reason}: serve would exit 2 until these files compile\n`);
    } else {
      process.stderr.write(`SH_STATE_INVALID ${fallback.reason}: serve would exit 2 until these files compile\n`);
    }
    return 1;
  }
}

/** An exception whose mac: or host: is in no lease source nor identity.static can never apply: say so. */
function deviceWarnings(g: Generation, table: IdentityTable): Problem[] {
  const out: Problem[] = [];
  for (const e of g.exceptions) {
    for (const ref of e.deviceRefs) {
      const sel = parseSelector(ref.client);
      if (typeof sel === 'string' || sel.kind === 'net') continue;
      const known = sel.kind === 'mac' ? table.knowsMac(sel.mac) : table.knowsHost(sel.host);
      if (!known) {
        const where = g.config.identity.leases.length ? 'in any lease file nor in identity.static' : 'in identity.static, and no identity.leases are configured';
        out.push({
          code: 'SH_EXCEPTION_DEVICE', file: e.source.file, line: ref.line, col: ref.col,
          message: `warning: exception ${e.id}: ${ref.client} is not ${where}; it applies to nothing until a device with it appears`,
        });
      }
    }
  }
  return out;
}
