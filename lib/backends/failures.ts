/**
 * Maps what can go wrong talking to Ollama onto the gateway's error codes:
 * unreachable or broken → 502, busy → 503, missing model → 404, a rejected request → 400.
 */
import { GatewayError } from '../errors';
import { OllamaStreamError } from './ndjson';

/** Shape of ollama-js's (unexported) ResponseError: a non-2xx answer before the stream began. */
interface ResponseErrorLike {
  name: 'ResponseError';
  error: string;
  status_code: number;
}

/** The same failure from our own HTTP calls, shaped like ollama-js's so one classifier serves both. */
export class OllamaResponseError extends Error implements ResponseErrorLike {
  override readonly name = 'ResponseError';
  /**
   * Ollama's own failure, which may be the host's or the request's (see `isAmbiguousFailure`): its
   * 500s, and what the caller marks so (an embedding runner's failure, answered 400).
   */
  readonly ambiguous: boolean;

  constructor(
    readonly error: string,
    readonly status_code: number,
    /** The body was Ollama's own `{"error": "..."}`, not some other server's page. */
    readonly fromOllama = false,
    ambiguous?: boolean,
  ) {
    super(error);
    this.ambiguous = ambiguous ?? (fromOllama && status_code === 500);
  }

  /** Reads an error answer's body: Ollama's `{"error": "..."}`, else the start of whatever came (a proxy's page). */
  static fromBody(body: string, status: number): OllamaResponseError {
    try {
      const parsed = JSON.parse(body) as { error?: unknown };
      if (typeof parsed.error === 'string') return new OllamaResponseError(parsed.error, status, true);
    } catch {
      // not JSON: fall through to the raw text
    }
    const text = body.trim().slice(0, 200);
    return new OllamaResponseError(text === '' ? `HTTP ${status}` : text, status);
  }
}

/**
 * Ollama's own 500 before its first token. Since Ollama 0.12.6 an error before any byte is a real
 * status, so this is either the host (a model that fails to load, a runner that died) or this request
 * (a tool call the model made that Ollama could not parse, any error at the first token). Only another
 * host can tell: the pool retries it there and takes this host out only if the other one serves it.
 */
export function isAmbiguousFailure(err: unknown): boolean {
  const cause = err instanceof GatewayError ? err.cause : undefined;
  return cause instanceof OllamaResponseError && cause.ambiguous;
}

function isResponseError(err: unknown): err is ResponseErrorLike {
  return err instanceof Error && err.name === 'ResponseError' && typeof (err as Partial<ResponseErrorLike>).status_code === 'number';
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError');
}

/** Seconds a client is told to wait when Ollama says it is busy. */
export const BUSY_RETRY_AFTER_SECONDS = 2;

/**
 * Classifies a failure that happened before Ollama sent its first line.
 * `model` is the Ollama model name, used to say what to pull.
 */
export function failureBeforeFirstByte(err: unknown, backendUrl: string, model: string): GatewayError {
  if (err instanceof GatewayError) return err;
  if (isResponseError(err)) {
    const status = err.status_code;
    const message = err.error;
    if (status === 404) {
      return new GatewayError('model_not_found', `Ollama at ${backendUrl} has no model '${model}'; run \`ollama pull ${model}\` there.`, { cause: err });
    }
    if (status === 429 || status === 503) {
      return new GatewayError('overloaded', `Ollama is busy: ${message}`, { retryAfterSeconds: BUSY_RETRY_AFTER_SECONDS, cause: err });
    }
    if (status === 400 && !(err instanceof OllamaResponseError && err.ambiguous)) {
      return new GatewayError('invalid_request', `Ollama rejected the request: ${message}`, { cause: err });
    }
    return new GatewayError('backend_error', `Ollama answered ${status}: ${message}`, { cause: err });
  }
  // It answered, but with an `{"error"}` line in place of the first token (this request failed: the pool
  // neither retries it nor cools the host, see pool.ts), or with something that is not JSON (a proxy's
  // page: a broken host, not an unreachable one).
  if (err instanceof OllamaStreamError) return new GatewayError('backend_error', `Ollama failed: ${err.message}`, { cause: err });
  if (err instanceof SyntaxError) return new GatewayError('backend_error', `Ollama answered something that is not JSON: ${err.message}`, { cause: err });
  return new GatewayError('backend_unavailable', `Ollama at ${backendUrl} is unreachable: ${describe(err)}`, { cause: err });
}

/** Classifies a failure after the stream began: an `{"error"}` line, a cut connection, or garbage. */
export function failureMidStream(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('backend_error', `Ollama failed mid-answer: ${describe(err)}`, { cause: err });
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // undici reports "fetch failed" with the socket error as its cause; the cause is the useful part.
  const cause = err.cause;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code ? `${cause.message} (${code})` : cause.message;
  }
  return err.message;
}
