/**
 * ai-now's `POST /chat/completions`: the OpenAI request and reply (parsed and rendered by the OpenAI
 * dialect's own functions), plus ai-now's usage fields — tokens, their cost in credits, time taken and
 * speed — on the reply, and as one extra stats event before `data: [DONE]` when streaming.
 */
import type { Request, Response } from 'express';
import { microToCredits } from '../../../lib/pricing';
import type { Cost, Timings, Usage } from '../../../lib/types';
import { authenticateApiKey } from '../../auth';
import { clientGone, locals } from '../../context';
import type { Services } from '../../services';
import { parseChatBody, type ParsedChat } from '../openai/chat-request';
import { renderChatCompletion } from '../openai/chat-response';
import { chatChunkRenderer } from '../openai/chat-stream';
import { relayAsSse, type StreamRenderer } from '../openai/stream-relay';
import type { CallContext } from '../../../lib/chat';
import type { Principal } from '../../../lib/types';
import { replyJson } from '../../json-reply';

export interface AinowStats {
  input_tokens: number;
  output_tokens: number;
  /** Credits, at the model's prices (what was charged; 0 for unpriced models). */
  input_tokens_cost: number;
  output_tokens_cost: number;
  total_tokens_cost: number;
  /** Seconds from admission to the end of the answer. */
  total_time_taken: number;
  /** Output tokens over `total_time_taken`. */
  tokens_per_second: number;
}

const round = (value: number, digits: number): number => Number(value.toFixed(digits));

export function statsOf(usage: Usage, cost: Cost, timings: Timings): AinowStats {
  const seconds = timings.totalMs / 1000;
  return {
    input_tokens: usage.promptTokens,
    output_tokens: usage.completionTokens,
    input_tokens_cost: microToCredits(cost.inputMicro),
    output_tokens_cost: microToCredits(cost.outputMicro),
    total_tokens_cost: microToCredits(cost.totalMicro),
    total_time_taken: round(seconds, 3),
    tokens_per_second: seconds > 0 ? round(usage.completionTokens / seconds, 2) : 0,
  };
}

/** The OpenAI chunks, then ai-now's stats event (it has no `choices`: the /v1 routes never send it). */
function withStatsEvent(inner: StreamRenderer): StreamRenderer {
  return {
    start: () => inner.start(),
    delta: (event) => inner.delta(event),
    done: (event) => [
      ...inner.done(event),
      { ...statsOf(event.usage, event.cost, event.timings), time_to_first_data: round(event.timings.timeToFirstTokenMs / 1000, 3) },
    ],
  };
}

interface Admitted {
  parsed: ParsedChat;
  principal: Principal;
  call: CallContext;
}

/** Everything that can refuse the request, in order: auth, then the body. The model and credits are the core's. */
export function admitChat(services: Services, req: Request, res: Response, route: string): Admitted {
  const ctx = locals(res);
  ctx.route = route;
  const principal = authenticateApiKey(services, req, res);
  const parsed = parseChatBody(req.body, services.config.DEFAULT_MODEL);
  ctx.model = parsed.request.model;
  return { parsed, principal, call: { principal, requestId: ctx.requestId, route, signal: clientGone(req, res) } };
}

/** The whole reply as one object (the non-streamed ai-now reply, and the envelope's `data`). */
export async function completeChat(services: Services, admitted: Admitted): Promise<Record<string, unknown>> {
  const { parsed, principal, call } = admitted;
  const { result } = await services.chat.complete(call, parsed.request);
  return { ...renderChatCompletion(result, parsed.request.model, principal.orgId), ...statsOf(result.usage, result.cost, result.timings) };
}

export async function ainowChat(services: Services, req: Request, res: Response): Promise<void> {
  const admitted = admitChat(services, req, res, 'ainow.chat');
  const { parsed, principal, call } = admitted;
  if (!parsed.stream) return void replyJson(res, await completeChat(services, admitted));
  // open() refuses (model, credits, Ollama down) before any header is written.
  const renderer = withStatsEvent(chatChunkRenderer(parsed.request.model, parsed.includeUsage, principal.orgId));
  await relayAsSse(res, services.chat.open(call, parsed.request), call.signal, renderer, {
    keepAliveMs: services.config.SSE_KEEP_ALIVE_MS,
    headerGraceMs: services.config.SSE_HEADER_GRACE_MS,
    stallMs: services.config.SSE_STALL_MS,
  });
}
