/**
 * `GET /v1/models` and `GET /v1/models/{id}`: the model table's aliases and Ollama's own models, as
 * OpenAI `model` objects; for a key with an allow-list, the models it may use. Secton's `?category=`
 * filter and `?sort=name` are honoured.
 */
import { sameModel } from '../../../lib/backends/pool';
import { GatewayError } from '../../../lib/errors';
import type { ModelEntry, Principal } from '../../../lib/types';
import type { Services } from '../../services';
import { badParam } from './validation';

const CATEGORIES = ['chat', 'embedding', 'moderation'] as const;

export interface OpenAIModel {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/** Aliases have no date of their own; they take their Ollama model's, or the gateway's start. */
const STARTED_AT = Math.floor(Date.now() / 1000);

/** The models this key may use (its allow-list, if it has one), with their dates. */
async function allModels(services: Services, principal: Principal): Promise<Array<ModelEntry & { created: number }>> {
  const [entries, pulled] = await Promise.all([services.catalog.list(), services.pool.models().catch(() => [])]);
  const seconds = (iso: string | undefined) => (iso ? Math.floor(Date.parse(iso) / 1000) : NaN);
  return entries.filter((m) => services.catalog.allows(principal.allowedModels, m)).map((m) => {
    const own = pulled.find((p) => sameModel(p.name, m.ollamaModel));
    const created = seconds(m.createdAt ?? own?.modifiedAt);
    return { ...m, created: Number.isFinite(created) ? created : STARTED_AT };
  });
}

function toOpenAIModel(m: ModelEntry & { created: number }): OpenAIModel {
  return { id: m.name, object: 'model', created: m.created, owned_by: m.configured ? 'gateway' : 'ollama' };
}

function queryString(value: unknown, param: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw badParam(param, `'${param}' must be given once, as a string.`);
  return value;
}

export async function listModels(services: Services, principal: Principal, query: Record<string, unknown>): Promise<{ object: 'list'; data: OpenAIModel[] }> {
  const category = queryString(query['category'], 'category');
  if (category !== undefined && !(CATEGORIES as readonly string[]).includes(category)) {
    throw badParam('category', `Invalid value for 'category': expected one of ${CATEGORIES.join(', ')}.`);
  }
  const sort = queryString(query['sort'], 'sort');
  if (sort !== undefined && sort !== 'name') throw badParam('sort', "Invalid value for 'sort': only 'name' is supported.");
  let models = await allModels(services, principal);
  if (category) models = models.filter((m) => m.category === category);
  if (sort === 'name') models = [...models].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { object: 'list', data: models.map(toOpenAIModel) };
}

export async function retrieveModel(services: Services, principal: Principal, id: string): Promise<OpenAIModel> {
  const models = await allModels(services, principal);
  const found = models.find((m) => m.name === id) ?? models.find((m) => sameModel(m.name, id));
  if (!found) throw new GatewayError('model_not_found', `The model '${id}' does not exist.`, { param: 'model' });
  return toOpenAIModel(found);
}
