// RFC 1035 §4.1.1 header fields and the codes this server uses.
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;
export const RCODE_NAME: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 16: 'BADVERS',
};

export const TYPE = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, HINFO: 13, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, DS: 43, RRSIG: 46,
  DNSKEY: 48, SVCB: 64, HTTPS: 65, IXFR: 251, AXFR: 252, ANY: 255,
} as const;
export const CLASS_IN = 1;
/** RFC 1035 §3.2.4: the CHAOS class, where version.bind and friends live. */
export const CLASS_CH = 3;
export const CLASS_ANY = 255;

/** RFC 1035 §4.2.1: a reply without EDNS must fit in 512 bytes. */
export const MIN_UDP_PAYLOAD = 512;
/**
 * The UDP payload size we advertise and the most we will send: 1232 is the
 * DNS Flag Day 2020 value, chosen to avoid IP fragmentation (RFC 9715).
 */
export const EDNS_UDP_PAYLOAD = 1232;
/** RFC 8914 §4.16: Extended DNS Error 15 "Blocked". */
export const EDE_BLOCKED = 15;
export const EDNS_OPTION_EDE = 15;

// Header byte 2: QR(1) OPCODE(4) AA(1) TC(1) RD(1); byte 3: RA(1) Z(1) AD(1) CD(1) RCODE(4).
export const FLAG_QR = 0x80;
export const FLAG_AA = 0x04;
export const FLAG_TC = 0x02;
export const FLAG_RD = 0x01;
export const FLAG_RA = 0x80;
export const FLAG_CD = 0x10;
