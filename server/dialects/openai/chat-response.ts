/**
 * The core's ChatResult → OpenAI's `chat.completion` object (plus Secton's `organization_id`).
 */
import type { ChatResult, ToolCall, Usage } from '../../../lib/types';
import { openaiId, SYSTEM_FINGERPRINT, unixSeconds } from './ids';

export interface OpenAIToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** Ollama carries arguments as an object; OpenAI clients expect the JSON text. */
export function toOpenAIToolCall(call: ToolCall): OpenAIToolCall {
  return { id: call.id, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments) } };
}

export function usageOf(usage: Usage): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  return { prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens, total_tokens: usage.promptTokens + usage.completionTokens };
}

export function renderChatCompletion(result: ChatResult, model: string, orgId: string): Record<string, unknown> {
  const message: Record<string, unknown> = {
    role: 'assistant',
    // A reply made only of tool calls has `content: null`, as OpenAI's own.
    content: result.content === '' && result.toolCalls.length > 0 ? null : result.content,
    refusal: null,
  };
  if (result.toolCalls.length) message.tool_calls = result.toolCalls.map(toOpenAIToolCall);
  // Thinking models: Ollama's own /v1 layer names this `reasoning`; OpenAI clients ignore it.
  if (result.thinking) message.reasoning = result.thinking;
  return {
    id: openaiId('chatcmpl-'),
    object: 'chat.completion',
    created: unixSeconds(),
    model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices: [{ index: 0, message, logprobs: null, finish_reason: result.finishReason }],
    usage: usageOf(result.usage),
    organization_id: orgId,
  };
}
