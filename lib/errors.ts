/**
 * The one closed set of things that can go wrong in the gateway.
 *
 * The core raises a GatewayError with a code; each API shape (dialect) maps that code to its own
 * status and body. Keeping the codes closed means a new dialect has to decide every case once.
 */
export type ErrorCode =
  | 'invalid_request' // 400: the caller's input is wrong
  | 'unauthenticated' // 401: missing, unknown, revoked or expired credentials
  | 'forbidden' // 403: authenticated, but this key may not do this (e.g. model allow-list)
  | 'not_found' // 404: no such route or resource
  | 'model_not_found' // 404: no such model, at the gateway or on any Ollama host
  | 'method_not_allowed' // 405
  | 'payload_too_large' // 413
  | 'rate_limited' // 429: requests or tokens per minute; retrying later helps
  | 'insufficient_credits' // 429: balance cannot cover the request; retrying does not help
  | 'quota_exceeded' // 429: daily or monthly allotment spent; retrying before the reset does not help
  | 'backend_unavailable' // 502: Ollama unreachable
  | 'backend_error' // 502: Ollama answered with an error or garbage, or broke mid-answer
  | 'overloaded' // 503: Ollama or the gateway's queue is full
  | 'internal'; // 500: a bug

export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  invalid_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  model_not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  rate_limited: 429,
  insufficient_credits: 429,
  quota_exceeded: 429,
  backend_unavailable: 502,
  backend_error: 502,
  overloaded: 503,
  internal: 500,
};

/** AimiChat's body fields for a spent allotment: `{limit, used, resetAt}` at the top level. */
export interface QuotaDetails {
  limit: number;
  used: number;
  resetAt: string;
}

export interface GatewayErrorOptions {
  /** The request field at fault, for OpenAI's `param`. */
  param?: string;
  /** Seconds after which a retry may succeed; rendered as `Retry-After`. */
  retryAfterSeconds?: number;
  quota?: QuotaDetails;
  /** Extra response headers, e.g. `Allow` for 405 or rate-limit headers on a 429. */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly param: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly quota: QuotaDetails | undefined;
  readonly headers: Record<string, string>;
  /** Set once the core has written this failure to the usage log, so the HTTP edge does not again. */
  recorded = false;

  constructor(code: ErrorCode, message: string, options: GatewayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.param = options.param;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.quota = options.quota;
    this.headers = options.headers ?? {};
  }

  get status(): number {
    return STATUS_BY_CODE[this.code];
  }

  /** Whether an SDK retrying this exact request could ever succeed (drives `x-should-retry`). */
  get retryable(): boolean {
    return this.code === 'rate_limited' || this.code === 'overloaded' || this.code === 'backend_unavailable';
  }
}

/** Anything thrown becomes a GatewayError; unknown values become `internal` and keep the original as cause. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('internal', 'The gateway had an internal error.', { cause: err });
}
