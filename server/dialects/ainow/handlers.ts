/**
 * ai-now's small routes as functions from the request to the reply's data: `GET /models`,
 * `POST /tokens`, `GET /credits`, `POST /moderate`. The ai-now router sends the data as it is; the
 * ChatofAI envelope wraps the same data in `{code, message, data, request_id}`.
 */
import type { Request, Response } from 'express';
import { GatewayError } from '../../../lib/errors';
import type { Moderator } from '../../../lib/moderation';
import { microToCredits } from '../../../lib/pricing';
import { countTokens } from '../../../lib/tokens';
import { authenticateApiKey } from '../../auth';
import { locals } from '../../context';
import type { Services } from '../../services';
import { runModeration, type ModerationResultBody } from '../openai-moderations';
import { fieldsOf } from '../shared';

export interface AinowModel {
  id: string;
  /** Credits per 1,000 prompt tokens. */
  inputCost: number;
  /** Credits per 1,000 completion tokens. */
  outputCost: number;
}

/**
 * Every public model with its prices: the model table's aliases, then Ollama's own models at 0; for a
 * key with an allow-list, the models it may use.
 */
export async function modelsData(services: Services, req: Request, res: Response, route: string): Promise<{ data: AinowModel[] }> {
  locals(res).route = route;
  const principal = authenticateApiKey(services, req, res);
  const models = (await services.catalog.list()).filter((m) => services.catalog.allows(principal.allowedModels, m));
  return {
    data: models.map((m) => ({ id: m.name, inputCost: microToCredits(m.inputMicroPer1k), outputCost: microToCredits(m.outputMicroPer1k) })),
  };
}

/**
 * `{text, model?}` → `{tokens}` counted with tiktoken; a model picks its configured encoding, and must be
 * one the key's allow-list names, as for a chat. Free of charge.
 */
export async function tokensData(services: Services, req: Request, res: Response, route: string): Promise<{ tokens: number }> {
  locals(res).route = route;
  const principal = authenticateApiKey(services, req, res);
  const { text, model } = fieldsOf(req.body);
  if (typeof text !== 'string') throw new GatewayError('invalid_request', '"text" must be a string.', { param: 'text' });
  if (model !== undefined && (typeof model !== 'string' || model === '')) {
    throw new GatewayError('invalid_request', '"model" must be a non-empty string when given.', { param: 'model' });
  }
  const resolve = async (name: string) =>
    services.catalog.resolveAs(services.limits.assertModelAllowed(principal, name), principal.allowedModels, name);
  const encoding = model === undefined ? undefined : ((await resolve(model)).tokenizer ?? undefined);
  return { tokens: countTokens(text, encoding) };
}

/** The caller's organisation balance in credits; null when the organisation is unlimited. */
export function creditsData(services: Services, req: Request, res: Response, route: string): { credits: number | null } {
  locals(res).route = route;
  const principal = authenticateApiKey(services, req, res);
  const org = services.store.getOrg(principal.orgId);
  if (!org) throw new GatewayError('internal', `The organisation of key '${principal.keyName}' is missing.`);
  return { credits: org.balanceMicro === null ? null : microToCredits(org.balanceMicro) };
}

/** OpenAI-moderation-shaped results from the local guard model. */
export async function moderateData(services: Services, moderator: Moderator, req: Request, res: Response, route: string): Promise<{ results: ModerationResultBody[] }> {
  return { results: await runModeration(services, moderator, req, res, route) };
}
