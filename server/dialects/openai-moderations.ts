/**
 * OpenAI's moderation shape, served by the local guard model (lib/moderation.ts):
 * `POST /v1/moderations` here, and the input parser and result renderer that ai-now's `/moderate`
 * and the envelope's `/api/v1/moderate` share.
 */
import { randomUUID } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import { GatewayError } from '../../lib/errors';
import { OPENAI_CATEGORIES, type OpenAiCategory } from '../../lib/moderation-categories';
import { Moderator, type Verdict } from '../../lib/moderation';
import { authenticateApiKey } from '../auth';
import { clientGone, locals } from '../context';
import type { Services } from '../services';
import { fieldsOf, jsonBody, refuseOtherMethods } from './shared';
import { replyJson } from '../json-reply';

export const MODERATIONS_PATH = '/v1/moderations';

/** Each input is one guard-model call; a bound keeps one request from occupying Ollama for minutes. */
export const MAX_MODERATION_INPUTS = 32;

/** The OpenAI moderation result object, plus the guard's own hazard codes as a non-standard extension. */
export interface ModerationResultBody {
  flagged: boolean;
  categories: Record<OpenAiCategory, boolean>;
  category_scores: Record<OpenAiCategory, number>;
  category_applied_input_types: Record<OpenAiCategory, string[]>;
  /** Outside `categories`, so clients that validate the 13 keys strictly are not upset by it. */
  llama_guard_categories: string[];
}

function invalid(message: string): GatewayError {
  return new GatewayError('invalid_request', message, { param: 'input' });
}

/** `input`: a string, an array of strings, or an array of `{type:"text", text}` parts. Images are refused. */
export function parseModerationInput(body: unknown): string[] {
  const input = fieldsOf(body).input;
  if (input === undefined || input === null) throw invalid("Missing required parameter: 'input'.");
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input) || input.length === 0) throw invalid("'input' must be a string or a non-empty array.");
  if (input.length > MAX_MODERATION_INPUTS) throw invalid(`'input' may hold at most ${MAX_MODERATION_INPUTS} items.`);
  return input.map((item: unknown, index) => {
    if (typeof item === 'string') return item;
    const part = fieldsOf(item);
    if (part.type === 'text' && typeof part.text === 'string') return part.text;
    if (part.type === 'image_url') throw invalid(`input[${index}]: the local guard model moderates text only; image inputs are not supported.`);
    throw invalid(`input[${index}] must be a string or a {"type": "text", "text": "…"} object.`);
  });
}

/** The optional `model` must be a string when given; it does not choose the guard (MODERATION_MODEL does). */
export function checkModerationModelParam(body: unknown): void {
  const model = fieldsOf(body).model ?? undefined; // null is as good as absent
  if (model !== undefined && typeof model !== 'string') {
    throw new GatewayError('invalid_request', "'model' must be a string.", { param: 'model' });
  }
}

/** All 13 keys in all three maps; scores are 1.0 for a set key (no logprobs from the guard), 0 otherwise. */
export function renderModerationResult(verdict: Verdict): ModerationResultBody {
  const map = <T>(value: (key: OpenAiCategory) => T) => Object.fromEntries(OPENAI_CATEGORIES.map((key) => [key, value(key)])) as Record<OpenAiCategory, T>;
  return {
    flagged: verdict.flagged,
    categories: map((key) => verdict.categories[key]),
    category_scores: map((key) => (verdict.categories[key] ? 1 : 0)),
    category_applied_input_types: map(() => ['text']),
    llama_guard_categories: verdict.hazards,
  };
}

/** Authenticates, parses and runs the guard over every input; shared by every shape that moderates. */
export async function runModeration(services: Services, moderator: Moderator, req: Request, res: Response, route: string): Promise<ModerationResultBody[]> {
  const ctx = locals(res);
  ctx.route = route;
  const principal = authenticateApiKey(services, req, res);
  checkModerationModelParam(req.body);
  const texts = parseModerationInput(req.body);
  ctx.model = moderator.model;
  const verdicts = await moderator.moderate({ principal, requestId: ctx.requestId, route, signal: clientGone(req, res) }, texts);
  return verdicts.map(renderModerationResult);
}

export function newModerator(services: Services): Moderator {
  return new Moderator(services.chat, services.store, services.config.MODERATION_MODEL);
}

export function openaiModerationsRouter(services: Services): Router {
  const router = Router();
  const json = jsonBody(services);
  const moderator = newModerator(services);

  router.post(MODERATIONS_PATH, json, async (req: Request, res: Response) => {
    const results = await runModeration(services, moderator, req, res, 'openai.moderations');
    replyJson(res, { id: `modr-${randomUUID().replaceAll('-', '')}`, model: moderator.model, results });
  });

  refuseOtherMethods(router, { [MODERATIONS_PATH]: 'POST' });
  return router;
}
