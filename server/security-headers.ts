/**
 * Security headers for an API that serves JSON and event streams, never pages: nothing it sends may
 * be sniffed into HTML, framed, or run as script, and no referrer leaves with a link from it. One
 * fixed set, built once and set in one call: helmet's chain of thirteen middlewares did the same with
 * headers meant for HTML sites, at about 0.04 ms of CPU per request (bench/README.md).
 */
// No Strict-Transport-Security: the gateway speaks plain HTTP on a LAN; HSTS belongs to whatever
// terminates TLS in front of it, which knows whether every name it answers for will stay on HTTPS.
const headers = new Map<string, string>([
  // Nothing here is a document: no source of any kind, and no page may frame a reply.
  ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'"],
  ['X-Content-Type-Options', 'nosniff'],
  // For browsers too old for frame-ancestors.
  ['X-Frame-Options', 'DENY'],
  ['Referrer-Policy', 'no-referrer'],
  ['Cross-Origin-Resource-Policy', 'same-origin'],
  ['Cross-Origin-Opener-Policy', 'same-origin'],
]);

/** Set on every reply by the edge middleware (server/edge.ts). */
export const SECURITY_HEADERS: ReadonlyMap<string, string> = headers;
