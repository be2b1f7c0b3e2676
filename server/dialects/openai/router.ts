/**
 * The OpenAI-style API under `/v1`: chat completions (streamed or not), legacy completions,
 * embeddings and models. Every route authenticates with the api_key (Bearer, X-API-Key or ?api_key=);
 * errors are OpenAI error objects (see errors.ts; app.ts routes `/v1` paths there).
 */
import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { CallContext } from '../../../lib/chat';
import type { ChatRequest } from '../../../lib/types';
import { authenticateApiKey } from '../../auth';
import { clientGone, locals } from '../../context';
import type { Services } from '../../services';
import { inOrder, jsonBody, type DirectRoutes } from '../shared';
import { parseChatBody } from './chat-request';
import { renderChatCompletion } from './chat-response';
import { chatChunkRenderer } from './chat-stream';
import { completionChunkRenderer, parseCompletionBody, renderCompletion } from './completions';
import { parseEmbeddingsBody, replyEmbeddings } from './embeddings';
import { listModels, retrieveModel } from './models';
import { relayAsSse, type StreamRenderer } from './stream-relay';
import { replyJson } from '../../json-reply';

export const OPENAI_PREFIX = '/v1';
const CHAT_PATH = `${OPENAI_PREFIX}/chat/completions`;


/** Auth, then the route label and the call context the core needs. */
function begin(services: Services, req: Request, res: Response, route: string): CallContext {
  const ctx = locals(res);
  ctx.route = route;
  const principal = authenticateApiKey(services, req, res);
  return { principal, requestId: ctx.requestId, route, signal: clientGone(req, res) };
}

/**
 * The router for every `/v1` route, and the hottest (chat completions) also as a handler app.ts calls
 * directly, without the router's walk.
 */
export function openaiRoutes(services: Services): { router: Router; direct: DirectRoutes } {
  const router = Router();
  const direct = new Map<string, RequestHandler>();
  const json = jsonBody(services);
  const keepAliveMs = services.config.SSE_KEEP_ALIVE_MS;
  const headerGraceMs = services.config.SSE_HEADER_GRACE_MS;
  const stallMs = services.config.SSE_STALL_MS;

  /** Streams through the core, or gathers the whole answer; everything that can refuse runs first. */
  async function generate(
    res: Response,
    call: CallContext,
    request: ChatRequest,
    stream: boolean,
    renderer: () => StreamRenderer,
    renderWhole: (result: Awaited<ReturnType<Services['chat']['complete']>>['result']) => unknown,
  ): Promise<void> {
    locals(res).model = request.model;
    if (!stream) {
      const { result } = await services.chat.complete(call, request);
      replyJson(res, renderWhole(result));
      return;
    }
    // open() resolves once Ollama sent its first line: auth, model, credits and Ollama's own
    // refusals (down, busy) become real HTTP statuses, unless the model takes long to load.
    await relayAsSse(res, services.chat.open(call, request), call.signal, renderer(), { keepAliveMs, headerGraceMs, stallMs });
  }

  const chat = async (req: Request, res: Response): Promise<void> => {
    const call = begin(services, req, res, 'openai.chat');
    const { request, stream, includeUsage } = parseChatBody(req.body, services.config.DEFAULT_MODEL);
    const orgId = call.principal.orgId;
    await generate(
      res,
      call,
      request,
      stream,
      () => chatChunkRenderer(request.model, includeUsage, orgId),
      (result) => renderChatCompletion(result, request.model, orgId),
    );
  };
  router.post(CHAT_PATH, json, chat);
  direct.set(`POST ${CHAT_PATH}`, inOrder(json, chat));

  router.post(`${OPENAI_PREFIX}/completions`, json, async (req, res) => {
    const call = begin(services, req, res, 'openai.completions');
    const { request, stream, includeUsage } = parseCompletionBody(req.body, services.config.DEFAULT_MODEL);
    await generate(
      res,
      call,
      request,
      stream,
      () => completionChunkRenderer(request.model, includeUsage),
      (result) => renderCompletion(result, request.model),
    );
  });

  router.post(`${OPENAI_PREFIX}/embeddings`, json, async (req, res) => {
    const call = begin(services, req, res, 'openai.embeddings');
    const parsed = parseEmbeddingsBody(req.body);
    locals(res).model = parsed.model;
    const result = await services.embeddings.embed(call, parsed.model, parsed.inputs);
    await replyEmbeddings(res, parsed.model, result.embeddings, parsed.encoding, result.promptTokens);
  });

  router.get(`${OPENAI_PREFIX}/models`, async (req, res) => {
    const { principal } = begin(services, req, res, 'openai.models');
    replyJson(res, await listModels(services, principal, req.query as Record<string, unknown>));
  });

  // Ids may hold slashes (`hf.co/user/model:tag`): the SDK sends them as %2F, curl users raw.
  router.get(`${OPENAI_PREFIX}/models/*id`, async (req, res) => {
    const { principal } = begin(services, req, res, 'openai.models');
    const segments = (req.params as Record<string, string[] | string>)['id'];
    const id = Array.isArray(segments) ? segments.join('/') : String(segments);
    replyJson(res, await retrieveModel(services, principal, id));
  });

  return { router, direct };
}
