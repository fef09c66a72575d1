// The sinkhole answer for a blocked name, per blocking.response (docs/design.md §4
// "Answers"). Record bytes are prepared once per policy generation; a blocked
// query costs one copy of its header and question plus these bytes.
import { CLASS_IN, EDE_BLOCKED, RCODE, TYPE } from '../dns/constants.js';
import { record } from '../dns/localRecord.js';
import { buildReply, optRecord } from '../dns/reply.js';
import type { Query } from '../dns/query.js';
import type { ResponseMode } from '../config/config.js';
import { addressBytes } from '../net/cidr.js';

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'ascii')])), Buffer.from([0])]);
}

/**
 * A synthetic SOA so clients cache the negative answer for `ttl` seconds
 * (RFC 2308 §3: the negative TTL is the SOA's MINIMUM, capped by its own TTL).
 * `.invalid` (RFC 6761 §6.4) makes plain that it is nobody's real zone.
 */
function soa(ttl: number): Buffer {
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32BE(1, 0); // serial
  fixed.writeUInt32BE(3600, 4); // refresh
  fixed.writeUInt32BE(600, 8); // retry
  fixed.writeUInt32BE(86400, 12); // expire
  fixed.writeUInt32BE(ttl, 16); // minimum = the negative TTL
  return record(TYPE.SOA, CLASS_IN, ttl, Buffer.concat([encodeName('sinkhole.invalid'), encodeName('blocked.sinkhole.invalid'), fixed]));
}


type Body = { bytes: Buffer; an: number; ns: number };

export class SinkholeResponder {
  private readonly rcode: number;
  private readonly nodata: Body | undefined;
  private readonly a: Body | undefined;
  private readonly aaaa: Body | undefined;
  /** Per list: the OPT with EDE 15 naming the list, without and with the DO bit. */
  private readonly opts = new Map<string, [Buffer, Buffer]>();

  constructor(mode: ResponseMode, readonly ttl: number) {
    const neg: Body = { bytes: soa(ttl), an: 0, ns: 1 };
    const answer = (type: number, addr: string | undefined, v4: boolean): Body | undefined =>
      addr === undefined ? undefined : { bytes: record(type, CLASS_IN, ttl, addressBytes(addr, v4)!), an: 1, ns: 0 };
    // null-ip is the custom answer 0.0.0.0 / :: (named so because a bare `null` is YAML's null).
    const m: ResponseMode = mode.kind === 'null-ip' ? { kind: 'custom', a: '0.0.0.0', aaaa: '::' } : mode;
    switch (m.kind) {
      case 'nxdomain':
        this.rcode = RCODE.NXDOMAIN;
        this.nodata = neg;
        break;
      case 'refused':
        this.rcode = RCODE.REFUSED;
        break;
      case 'nodata':
      case 'null-ip':
        this.rcode = RCODE.NOERROR;
        this.nodata = neg;
        break;
      case 'custom':
        this.rcode = RCODE.NOERROR;
        this.nodata = neg;
        this.a = answer(TYPE.A, m.a, true);
        this.aaaa = answer(TYPE.AAAA, m.aaaa, false);
        break;
    }
  }

  /** Every qtype of a blocked name gets the sinkhole answer: HTTPS/SVCB too, or clients would learn addresses from them. */
  reply(q: Query, list: string): Buffer {
    const body = q.qtype === TYPE.A ? (this.a ?? this.nodata) : q.qtype === TYPE.AAAA ? (this.aaaa ?? this.nodata) : this.nodata;
    return buildReply(q, this.rcode, body, q.edns ? this.opt(list, q.dnssecOk) : undefined);
  }

  private opt(list: string, dnssecOk: boolean): Buffer {
    let pair = this.opts.get(list);
    if (!pair) {
      // RFC 8914 §2: EXTRA-TEXT is for humans; it names the list so a user or admin can see why.
      const ede = { infoCode: EDE_BLOCKED, text: `blocked by sinkhole list "${list}"` };
      pair = [optRecord(false, 0, ede), optRecord(true, 0, ede)];
      this.opts.set(list, pair);
    }
    return pair[dnssecOk ? 1 : 0];
  }
}
