/**
 * The ai-now multi-model API at the root paths: `GET /models`, `POST /chat/completions`,
 * `POST /tokens`, `GET /credits`, `POST /moderate`, with `Authorization: Bearer` (or the other
 * api_key places). Its chat reply is OpenAI's, so its errors are OpenAI error objects too: an OpenAI
 * SDK pointed at the root gets its usual error classes.
 */
import express, { Router, type Request, type Response } from 'express';
import { GatewayError } from '../../../lib/errors';
import type { ErrorFormat } from '../../error-format';
import type { Services } from '../../services';
import { openaiErrorFormat } from '../openai/errors';
import { newModerator } from '../openai-moderations';
import { ainowChat } from './chat';
import { creditsData, moderateData, modelsData, tokensData } from './handlers';

export const AINOW_ROUTES = {
  '/models': 'GET',
  '/chat/completions': 'POST',
  '/tokens': 'POST',
  '/credits': 'GET',
  '/moderate': 'POST',
} as const;

export function isAinowPath(path: string): boolean {
  return Object.hasOwn(AINOW_ROUTES, path);
}

export const ainowErrorFormat: ErrorFormat = openaiErrorFormat;

export function ainowRouter(services: Services): Router {
  const router = Router();
  const json = express.json({ limit: services.config.BODY_LIMIT, type: () => true });
  const moderator = newModerator(services);

  router.get('/models', async (req: Request, res: Response) => void res.json(await modelsData(services, req, res, 'ainow.models')));
  router.post('/chat/completions', json, (req: Request, res: Response) => ainowChat(services, req, res));
  router.post('/tokens', json, async (req: Request, res: Response) => void res.json(await tokensData(services, req, res, 'ainow.tokens')));
  router.get('/credits', (req: Request, res: Response) => void res.json(creditsData(services, req, res, 'ainow.credits')));
  router.post('/moderate', json, async (req: Request, res: Response) => void res.json(await moderateData(services, moderator, req, res, 'ainow.moderate')));

  for (const [path, method] of Object.entries(AINOW_ROUTES)) {
    router.all(path, () => {
      throw new GatewayError('method_not_allowed', `Only ${method} is allowed on ${path}.`, { headers: { Allow: method } });
    });
  }
  return router;
}
