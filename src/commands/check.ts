// sinkhole check NAME: what sinkhole answers a client for a name, and why, from the policy a running
// sinkhole serves (the last good one when the files on disk do not compile).
import { checkTarget } from '../checkTarget.js';
import { SinkholeError } from '../errors.js';
import { TYPE } from '../dns/constants.js';
import { covers, decide, type Generation } from '../policy/generation.js';
import type { RpzHit } from '../policy/rpz/evaluate.js';
import { loadIdentity } from '../identity/sources.js';
import { normalizeMac } from '../net/mac.js';
import { isActive, stateOf, type Exception } from '../policy/exceptions.js';
import { normalizeAddress, parseAddress } from '../net/cidr.js';
import { shortPath } from './output.js';
import { policyInForce, printNote } from './policyInForce.js';
import { exceptionJson, expiryText } from './exceptions.js';

function qtypeNumber(text: string): number {
  const upper = text.toUpperCase();
  const known = (TYPE as Record<string, number>)[upper];
  if (known !== undefined) return known;
  const m = /^TYPE(\d+)$/.exec(upper);
  if (m) return Number(m[1]);
  throw new SinkholeError('SH_USAGE', `unknown query type "${text}"; use a name like A, AAAA, HTTPS or TYPE65`);
}

/**
 * The RPZ rule that would apply (docs/rpz.md), after the lists: zones in order, the client's address,
 * the name, then `answer` as an address in the upstream's answer. Exceptions skip a zone, as in serve.
 */
function rpzVerdict(g: Generation, qname: string, client: string | undefined, answer: string | undefined, exceptions: readonly Exception[], at: number): RpzHit | undefined {
  const address = client === undefined ? undefined : parseAddress(client);
  const answers = answer === undefined ? [] : [{ text: answer, address: parseAddress(answer)! }];
  return g.rpz.explain(address, qname, answers).find((h) => h.zone.override !== 'disabled' && !exceptions.some((e) => isActive(e, at) && covers(e, h.zone.name, qname)));
}

function rpzJson(h: RpzHit): Record<string, unknown> {
  const action = h.zone.override === 'none' ? h.rule.action : h.zone.override;
  return {
    zone: h.zone.name, owner: h.rule.owner, trigger: h.rule.trigger, action, prefix: h.rule.prefix ?? null, address: h.address ?? null,
    serial: h.zone.serial, source: `${shortPath(h.zone.file)}:${h.rule.line}`,
  };
}

export function check(input: string, v: { config: string; client: string; type: string; at?: string; answer?: string; json: boolean }): number {
  const at = v.at === undefined ? Date.now() : Date.parse(v.at);
  if (Number.isNaN(at)) throw new SinkholeError('SH_USAGE', `--at expects an ISO 8601 time like 2026-12-31T23:59:59Z, got "${v.at}"`);
  const mac = normalizeMac(v.client.replace(/^mac:/, ''));
  if (!mac && !parseAddress(v.client)) throw new SinkholeError('SH_USAGE', `--client expects an IP address or a MAC address like aa:bb:cc:dd:ee:ff, got "${v.client}"`);
  qtypeNumber(v.type);
  if (v.answer !== undefined && !parseAddress(v.answer)) throw new SinkholeError('SH_USAGE', `--answer expects an IP address an answer would hold, like 192.0.2.1, got "${v.answer}"`);
  const target = checkTarget(input);
  const { g, note } = policyInForce(v.config);
  printNote(note, v.json);
  const qname = target.name;
  // The device as the lease files say at --at: by MAC, wherever it is; by IP, whoever holds it.
  const { table, history } = loadIdentity(g.config.identity, at);
  const device = mac ? table.byMac(mac) ?? table.relayed(mac) : history.deviceAt(normalizeAddress(v.client), at);
  const address = mac ? (device?.ip && table.lookup(device.ip, at) === device ? device.ip : undefined) : normalizeAddress(v.client);
  const client = address ?? mac!;
  const view = address === undefined ? g.clients.viewOfDevice(device!) : g.clients.viewOf(address, device);
  const d = view.allowed ? decide(g, qname, view, at) : undefined;
  // RPZ judges what the lists let through (stages/rpz.ts sits below the blocklist).
  const rpz = d && d.decision !== 'blocked' ? rpzVerdict(g, qname, address, v.answer, view.exceptions, at) : undefined;
  const rpzAction = rpz ? (rpz.zone.override === 'none' ? rpz.rule.action : rpz.zone.override) : undefined;
  const rewritten = rpzAction !== undefined && rpzAction !== 'passthru' && !(rpzAction === 'tcp-only');
  const decision = d ? (rewritten ? 'blocked' : d.decision) : 'refused';
  const source = d?.match ? `${shortPath(d.match.file)}:${d.match.line}` : null;
  const exception = d?.exception ? exceptionJson(d.exception, at) : null;
  // Blocked although the client has an exception for this: say which, and why it no longer applies.
  const lapsed = d?.decision === 'blocked' ? view.exceptions.filter((e) => !isActive(e, at) && covers(e, d.match.list, qname)) : [];
  if (v.json) {
    const out = {
      decision, name: qname, input: target.from ?? null, type: v.type.toUpperCase(), client, at: new Date(at).toISOString(),
      device: device ? { mac: device.mac || null, hostname: device.hostname || null, address: address ?? null } : null,
      list: d?.match?.list ?? null, rule: d?.match?.rule ?? null, source, exception, groups: view.groups,
      inactiveExceptions: lapsed.map((e) => exceptionJson(e, at)),
      rpz: rpz ? rpzJson(rpz) : null,
      policy: note ? 'last-good' : 'files',
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    const lines = [`${decision}: ${qname} ${v.type.toUpperCase()} from ${client} at ${new Date(at).toISOString()}`];
    if (target.from) lines.push(`  checked the host ${qname} of "${target.from}": DNS sees only the host`);
    if (device) lines.push(`  device: ${device.mac || '(no MAC)'}${device.hostname ? ` "${device.hostname}"` : ''}${address ? ` at ${address}` : ' (no current lease: address rules not applied)'}`);
    if (decision === 'refused') lines.push(`  client is outside clients.allowFrom: it gets REFUSED for every name`);
    if (d?.match) lines.push(`  list: ${d.match.list}  rule: ${d.match.rule}  source: ${source}`);
    if (d?.exception) {
      lines.push(`  exception: ${d.exception.id}  approved by: ${d.exception.approvedBy}  expires: ${expiryText(d.exception)}`, `  reason: ${d.exception.reason}`);
    }
    for (const e of lapsed) {
      const why = stateOf(e, at) === 'revoked' ? `revoked ${e.revoked} by ${e.revokedBy}` : `expired ${expiryText(e)}`;
      lines.push(`  exception ${e.id} no longer applies: ${why}`);
    }
    if (rpz) {
      const r = rpzJson(rpz);
      const by = rpz.rule.trigger === 'response-ip' ? `an answer holding ${rpz.address} (in ${rpz.rule.prefix})` : rpz.rule.trigger === 'client-ip' ? `the client's address (in ${rpz.rule.prefix})` : `the name (${rpz.rule.trigger})`;
      lines.push(`  rpz: ${r.zone}  owner: ${r.owner}  action: ${r.action}  serial: ${r.serial}  source: ${r.source}`, `  triggered by ${by}`);
      if (rpzAction === 'tcp-only') lines.push('  over UDP the client is told to retry over TCP, where the answer is not rewritten');
    }
    if (decision === 'allowed' && !rpz) lines.push(`  no enforced list matches; forwarded upstream${g.rpz.hasResponseIp && v.answer === undefined ? ' (RPZ response-IP rules apply to the answer: try --answer IP)' : ''}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return decision === 'blocked' || decision === 'refused' ? 1 : 0;
}
