/**
 * The ChatofAI envelope at `/api/v1/...`: the core routes (`chat/completions`, `models`, `tokens`,
 * `credits`, `moderate`) with Bearer auth, every reply wrapped as `{code, message, data, request_id}`.
 * `code` 0 with `message: "Success"` is success (HTTP 200); a failure keeps its HTTP status (401, 403,
 * 404, 500 as the document lists; 400, 405, 413, 429, 502, 503 likewise) with a non-zero code whose
 * first three digits are that status, and `data: null`. `request_id` is the `X-Request-Id` header.
 */
import { Router, type Response } from 'express';
import { GatewayError, type ErrorCode } from '../../lib/errors';
import { locals } from '../context';
import { errorHeaders, type ErrorFormat } from '../error-format';
import type { Services } from '../services';
import { mountAinowRoutes } from './ainow';
import { admitChat, completeChat } from './ainow/chat';
import { creditsData, moderateData, modelsData, tokensData } from './ainow/handlers';
import { newModerator } from './openai-moderations';
import { jsonBody } from './shared';
import { replyJson } from '../json-reply';

export const ENVELOPE_PREFIX = '/api/v1';

export function isEnvelopePath(path: string): boolean {
  return path === ENVELOPE_PREFIX || path.startsWith(`${ENVELOPE_PREFIX}/`);
}

/** Status × 100 + a variant, so a code names both the HTTP status and which failure it was. */
export const ENVELOPE_CODES: Readonly<Record<ErrorCode, number>> = {
  invalid_request: 40000,
  unauthenticated: 40100,
  forbidden: 40300,
  not_found: 40400,
  model_not_found: 40401,
  method_not_allowed: 40500,
  payload_too_large: 41300,
  rate_limited: 42900,
  insufficient_credits: 42901,
  quota_exceeded: 42902,
  internal: 50000,
  backend_unavailable: 50200,
  backend_error: 50201,
  overloaded: 50300,
};

export interface Envelope<T> {
  code: number;
  message: string;
  data: T | null;
  request_id: string;
}

export const envelopeErrorFormat: ErrorFormat = (err, requestId) => {
  const body: Envelope<null> = { code: ENVELOPE_CODES[err.code], message: err.message, data: null, request_id: requestId };
  return { status: err.status, body, headers: errorHeaders(err) };
};

function success<T>(res: Response, data: T): void {
  const body: Envelope<T> = { code: 0, message: 'Success', data, request_id: locals(res).requestId };
  replyJson(res, body);
}

export function envelopeRouter(services: Services): Router {
  const router = Router();
  const json = jsonBody(services);
  const moderator = newModerator(services);

  mountAinowRoutes(router, ENVELOPE_PREFIX, json, {
    '/models': async (req, res) => success(res, await modelsData(services, req, res, 'envelope.models')),
    '/chat/completions': async (req, res) => {
      const admitted = admitChat(services, req, res, 'envelope.chat');
      // The envelope is one JSON object per reply; a stream has no place in it.
      if (admitted.parsed.stream) {
        throw new GatewayError('invalid_request', 'Streaming is not available on the envelope API; send "stream": false or use /chat/completions.', { param: 'stream' });
      }
      success(res, await completeChat(services, admitted));
    },
    '/tokens': async (req, res) => success(res, await tokensData(services, req, res, 'envelope.tokens')),
    '/credits': (req, res) => success(res, creditsData(services, req, res, 'envelope.credits')),
    '/moderate': async (req, res) => success(res, await moderateData(services, moderator, req, res, 'envelope.moderate')),
  });
  // Unknown /api/v1 paths reach the app's JSON 404, which errorFormatFor renders as an envelope.
  return router;
}
