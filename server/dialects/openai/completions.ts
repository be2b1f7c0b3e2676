/**
 * Legacy `POST /v1/completions`: a bare prompt served by Ollama's /api/generate, streamed or not,
 * as `text_completion` objects.
 */
import { z } from 'zod';
import type { ChatRequest, ChatResult } from '../../../lib/types';
import { optionsOf, samplingFields, streamModeOf, type ParsedStreamMode } from './chat-request';
import { usageOf } from './chat-response';
import { openaiId, SYSTEM_FINGERPRINT, unixSeconds } from './ids';
import type { StreamRenderer } from './stream-relay';
import { badParam, parseOrThrow } from './validation';

const completionBodySchema = z.object({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string())]),
  suffix: z.string().nullish(),
  echo: z.boolean().nullish(),
  best_of: z.number().int().min(1).nullish(),
  logprobs: z.number().int().nullish(),
});

export interface ParsedCompletion extends ParsedStreamMode {
  request: ChatRequest;
}

export function parseCompletionBody(raw: unknown, defaultModel: string): ParsedCompletion {
  const body = parseOrThrow(completionBodySchema, raw);
  const mode = streamModeOf(body);
  if (body.echo === true) throw badParam('echo', "'echo' is not supported.");
  if (body.best_of !== null && body.best_of !== undefined && body.best_of > 1) throw badParam('best_of', 'Only best_of=1 is supported.');
  let prompt: string;
  if (typeof body.prompt === 'string') prompt = body.prompt;
  else if (body.prompt.length === 1 && body.prompt[0] !== undefined) prompt = body.prompt[0];
  else throw badParam('prompt', 'Only one prompt per request is supported.');
  const input: ChatRequest['input'] = { kind: 'prompt', prompt };
  if (body.suffix) input.suffix = body.suffix;
  // No default of 16 for max_tokens: the gateway never forces an option the caller did not give.
  return { request: { model: body.model ?? defaultModel, input, options: optionsOf(body, body.max_tokens) }, ...mode };
}

export function renderCompletion(result: ChatResult, model: string): Record<string, unknown> {
  return {
    id: openaiId('cmpl-'),
    object: 'text_completion',
    created: unixSeconds(),
    model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: [{ text: result.content, index: 0, logprobs: null, finish_reason: result.finishReason }],
    usage: usageOf(result.usage),
  };
}

/** Each streamed chunk has the same shape as the whole reply. */
export function completionChunkRenderer(model: string, includeUsage: boolean): StreamRenderer {
  const id = openaiId('cmpl-');
  const created = unixSeconds();
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
    id,
    object: 'text_completion',
    created,
    model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices,
    ...(includeUsage && { usage: null }),
    ...extra,
  });
  const choice = (text: string, finishReason: string | null = null) => ({ text, index: 0, logprobs: null, finish_reason: finishReason });
  return {
    start: () => [],
    delta: (event) => (event.content ? [chunk([choice(event.content)])] : []),
    done: (event) => {
      const out: unknown[] = [chunk([choice('', event.finishReason)])];
      if (includeUsage) out.push(chunk([], { usage: usageOf(event.usage) }));
      return out;
    },
  };
}
