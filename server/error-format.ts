/**
 * How an API shape writes an error. Every dialect provides one; the central error handler picks the
 * dialect by path, so even a malformed body or an unknown path answers in the caller's own format.
 */
import type { GatewayError } from '../lib/errors';

export interface ErrorReply {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

export type ErrorFormat = (err: GatewayError, requestId: string) => ErrorReply;

/** Headers every shape sends with an error: retry advice and whatever the error carries itself. */
export function errorHeaders(err: GatewayError): Record<string, string> {
  const headers: Record<string, string> = { ...err.headers };
  if (err.retryAfterSeconds !== undefined) {
    headers['Retry-After'] = String(Math.max(1, Math.ceil(err.retryAfterSeconds)));
    headers['retry-after-ms'] = String(Math.max(1, Math.round(err.retryAfterSeconds * 1000)));
  }
  // SDKs retry every 429 and 5xx by default; tell them when a retry cannot help (openai-node honours this).
  if (!err.retryable && err.status >= 400) headers['x-should-retry'] = 'false';
  return headers;
}

/** `{error: "message"}`: Covalid's shape, and the fallback for paths that belong to no API shape. */
export const plainErrorFormat: ErrorFormat = (err) => {
  const body: Record<string, unknown> = { error: err.message };
  if (err.code === 'unauthenticated') body.auth_required = true;
  if (err.quota) Object.assign(body, { error: 'Rate limit exceeded', message: err.message, ...err.quota });
  return { status: err.status, body, headers: errorHeaders(err) };
};
