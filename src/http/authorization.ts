// What a client presents as listen.httpToken in its Authorization header. Scripts and Prometheus send
// `Bearer <token>` (RFC 6750); a browser sends only what it prompts for, HTTP Basic (RFC 7617), so the
// admin page can be opened by hand: any user name, the token as the password.

/** The token in a Bearer or Basic Authorization header; '' when there is none. */
export function presentedToken(header: string | undefined): string {
  if (!header) return '';
  const space = header.indexOf(' ');
  const scheme = header.slice(0, space).toLowerCase(); // RFC 7235 §2.1: the scheme is case-insensitive
  const rest = header.slice(space + 1).trim();
  if (scheme === 'bearer') return rest;
  if (scheme !== 'basic') return '';
  // user-id ":" password, base64; the user name is ignored, the password is the token.
  const decoded = Buffer.from(rest, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? '' : decoded.slice(colon + 1);
}

/** Sent with a 401: a browser prompts for Basic, a script sees that Bearer works too. */
export const CHALLENGE = 'Basic realm="sinkhole", charset="UTF-8", Bearer realm="sinkhole"';
