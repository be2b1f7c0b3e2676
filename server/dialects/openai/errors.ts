/**
 * OpenAI's error shape: `{error: {message, type, param, code}}`, all four keys always present (the spec
 * requires them; strict clients such as the AI SDK validate them). The type/code strings are the ones
 * OpenAI itself sends (see shared/docs/openai-conformance.md §3.2).
 */
import type { ErrorCode, GatewayError } from '../../../lib/errors';
import { errorHeaders, type ErrorFormat } from '../../error-format';

export interface OpenAIErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

/** Every gateway code decided once; `Record` makes a new code a compile error here. */
const SHAPES: Readonly<Record<ErrorCode, { type: string; code: string | null }>> = {
  invalid_request: { type: 'invalid_request_error', code: null },
  unauthenticated: { type: 'invalid_request_error', code: 'invalid_api_key' },
  forbidden: { type: 'permission_error', code: null },
  not_found: { type: 'invalid_request_error', code: null },
  model_not_found: { type: 'invalid_request_error', code: 'model_not_found' },
  method_not_allowed: { type: 'invalid_request_error', code: null },
  payload_too_large: { type: 'invalid_request_error', code: 'request_too_large' },
  rate_limited: { type: 'requests', code: 'rate_limit_exceeded' },
  insufficient_credits: { type: 'insufficient_quota', code: 'insufficient_quota' },
  quota_exceeded: { type: 'insufficient_quota', code: 'insufficient_quota' },
  backend_unavailable: { type: 'server_error', code: null },
  backend_error: { type: 'server_error', code: null },
  overloaded: { type: 'server_error', code: null },
  internal: { type: 'server_error', code: null },
};

export function openaiErrorObject(err: GatewayError): OpenAIErrorObject {
  const shape = SHAPES[err.code];
  // OpenAI tells token-per-minute limits from request-per-minute ones by the type.
  const type = err.code === 'rate_limited' && /token/i.test(err.message) ? 'tokens' : shape.type;
  return { message: err.message, type, param: err.param ?? null, code: shape.code };
}

export const openaiErrorFormat: ErrorFormat = (err) => {
  const body: Record<string, unknown> = { error: openaiErrorObject(err) };
  // AimiChat's daily-allotment fields sit next to `error` at the top level; OpenAI clients ignore them.
  if (err.quota) Object.assign(body, { message: err.message, ...err.quota });
  return { status: err.status, body, headers: errorHeaders(err) };
};
