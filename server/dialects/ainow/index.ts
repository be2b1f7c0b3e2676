/**
 * The ai-now multi-model API at the root paths: `GET /models`, `POST /chat/completions`,
 * `POST /tokens`, `GET /credits`, `POST /moderate`, with `Authorization: Bearer` (or the other
 * api_key places). Its chat reply is OpenAI's, so its errors are OpenAI error objects too: an OpenAI
 * SDK pointed at the root gets its usual error classes.
 */
import { Router, type RequestHandler } from 'express';
import type { ErrorFormat } from '../../error-format';
import type { Services } from '../../services';
import { openaiErrorFormat } from '../openai/errors';
import { newModerator } from '../openai-moderations';
import { jsonBody, refuseOtherMethods } from '../shared';
import { ainowChat } from './chat';
import { creditsData, moderateData, modelsData, tokensData } from './handlers';
import { replyJson } from '../../json-reply';

export const AINOW_ROUTES = {
  '/models': 'GET',
  '/chat/completions': 'POST',
  '/tokens': 'POST',
  '/credits': 'GET',
  '/moderate': 'POST',
} as const;

export type AinowPath = keyof typeof AINOW_ROUTES;

export function isAinowPath(path: string): boolean {
  return Object.hasOwn(AINOW_ROUTES, path);
}

export const ainowErrorFormat: ErrorFormat = openaiErrorFormat;

/**
 * The ai-now routes under `prefix`, each with its method from AINOW_ROUTES (a JSON body on POST) and a
 * 405 for any other method. Both ai-now and the envelope mount them: the `Record` makes a route added
 * to the table a compile error in each until it has a handler there.
 */
export function mountAinowRoutes(router: Router, prefix: string, json: RequestHandler, handlers: Readonly<Record<AinowPath, RequestHandler>>): void {
  for (const path of Object.keys(AINOW_ROUTES) as AinowPath[]) {
    if (AINOW_ROUTES[path] === 'GET') router.get(`${prefix}${path}`, handlers[path]);
    else router.post(`${prefix}${path}`, json, handlers[path]);
  }
  refuseOtherMethods(router, AINOW_ROUTES, prefix);
}

export function ainowRouter(services: Services): Router {
  const router = Router();
  const json = jsonBody(services);
  const moderator = newModerator(services);

  mountAinowRoutes(router, '', json, {
    '/models': async (req, res) => void replyJson(res, await modelsData(services, req, res, 'ainow.models')),
    '/chat/completions': (req, res) => ainowChat(services, req, res),
    '/tokens': async (req, res) => void replyJson(res, await tokensData(services, req, res, 'ainow.tokens')),
    '/credits': (req, res) => void replyJson(res, creditsData(services, req, res, 'ainow.credits')),
    '/moderate': async (req, res) => void replyJson(res, await moderateData(services, moderator, req, res, 'ainow.moderate')),
  });
  return router;
}
