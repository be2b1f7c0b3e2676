/**
 * The Covalid one-endpoint API: `POST /api/chat.php` with `X-Client-Key` + `X-Client-Secret`,
 * body `{prompt, model?}`, reply `{response, model, elapsed_ms, done, prompt_tokens, completion_tokens, total_tokens}`.
 */
import { Router, type Request, type Response } from 'express';
import { GatewayError } from '../../lib/errors';
import type { ChatRequest } from '../../lib/types';
import { authenticateClientPair } from '../auth';
import { clientGone, locals } from '../context';
import { plainErrorFormat, type ErrorFormat } from '../error-format';
import type { Services } from '../services';
import { fieldsOf, inOrder, jsonBody, refuseOtherMethods, type DirectRoutes } from './shared';
import { replyJson } from '../json-reply';

export const COVALID_PATH = '/api/chat.php';

/** Covalid errors are `{error: "…"}`, with `auth_required: true` on a 401. */
export const covalidErrorFormat: ErrorFormat = plainErrorFormat;

/** The body as the document defines it; the exact 400 text for a missing prompt is part of the API. */
export function parseCovalidBody(body: unknown, defaultModel: string): ChatRequest {
  const { prompt, model } = fieldsOf(body);
  if (prompt === undefined || prompt === null) throw new GatewayError('invalid_request', 'Missing "prompt" in request body.', { param: 'prompt' });
  if (typeof prompt !== 'string' || prompt.trim() === '') {
    throw new GatewayError('invalid_request', '"prompt" must be a non-empty string.', { param: 'prompt' });
  }
  if (model !== undefined && (typeof model !== 'string' || model.trim() === '')) {
    throw new GatewayError('invalid_request', '"model" must be a non-empty string when given.', { param: 'model' });
  }
  return { model: model ?? defaultModel, input: { kind: 'prompt', prompt }, options: {} };
}

/** The route's router (its 405 for other methods), and its POST as a handler app.ts calls directly. */
export function covalidRoutes(services: Services): { router: Router; direct: DirectRoutes } {
  const router = Router();
  const json = jsonBody(services);

  const chat = async (req: Request, res: Response): Promise<void> => {
    const ctx = locals(res);
    ctx.route = 'covalid.chat';
    const principal = authenticateClientPair(services, req, res);
    const request = parseCovalidBody(req.body, services.config.DEFAULT_MODEL);
    ctx.model = request.model;
    const started = Date.now();
    const { result } = await services.chat.complete(
      { principal, requestId: ctx.requestId, route: ctx.route, signal: clientGone(req, res) },
      request,
    );
    replyJson(res, {
      response: result.content,
      model: request.model,
      elapsed_ms: Date.now() - started,
      done: true,
      prompt_tokens: result.usage.promptTokens,
      completion_tokens: result.usage.completionTokens,
      total_tokens: result.usage.promptTokens + result.usage.completionTokens,
    });
  };
  router.post(COVALID_PATH, json, chat);
  refuseOtherMethods(router, { [COVALID_PATH]: 'POST' });
  return { router, direct: new Map([[`POST ${COVALID_PATH}`, inOrder(json, chat)]]) };
}
