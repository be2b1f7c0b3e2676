/**
 * Chat events → `chat.completion.chunk` objects: a role delta first, content and tool-call deltas,
 * a separate finish chunk with `delta: {}`, then (with `include_usage`) a usage chunk with
 * `choices: []`. Every chunk carries the same id, created and model.
 */
import { JsonText } from '../../sse';
import { openaiId, SYSTEM_FINGERPRINT, unixSeconds } from './ids';
import { toOpenAIToolCall, usageOf } from './chat-response';
import type { StreamRenderer } from './stream-relay';

export function chatChunkRenderer(model: string, includeUsage: boolean, orgId: string): StreamRenderer {
  const id = openaiId('chatcmpl-');
  const created = unixSeconds();
  let toolCallIndex = 0;
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    system_fingerprint: SYSTEM_FINGERPRINT,
    choices,
    ...(includeUsage && { usage: null }),
    organization_id: orgId,
    ...extra,
  });
  const choice = (delta: Record<string, unknown>, finishReason: string | null = null) => ({ index: 0, delta, logprobs: null, finish_reason: finishReason });
  const contentChunk = contentTemplate((content) => chunk([choice({ content })]));

  return {
    start: () => [chunk([choice({ role: 'assistant', content: '' })])],
    delta: (event) => {
      const out: unknown[] = [];
      if (event.thinking) out.push(chunk([choice({ reasoning: event.thinking })]));
      if (event.content) out.push(contentChunk(event.content));
      if (event.toolCalls?.length) {
        // Ollama sends each call whole, so id, type, name and the full arguments go in one delta.
        const calls = event.toolCalls.map((call) => ({ index: toolCallIndex++, ...toOpenAIToolCall(call) }));
        out.push(chunk([choice({ tool_calls: calls })]));
      }
      return out;
    },
    done: (event) => {
      const finishReason = toolCallIndex > 0 && event.finishReason === 'stop' ? 'tool_calls' : event.finishReason;
      const out: unknown[] = [chunk([choice({}, finishReason)])];
      if (includeUsage) out.push(chunk([], { usage: usageOf(event.usage) }));
      return out;
    },
  };
}

/** Marks where the content goes; a control character no id, model name or organisation id holds. */
const SLOT = '\u0000content\u0000';

/**
 * A content delta's JSON from a template: the chunk serialised once around a marker, the marker's
 * place filled with each token's JSON string. The text is the same as serialising the chunk object.
 */
export function contentTemplate(build: (content: string) => unknown): (content: string) => unknown {
  const parts = JSON.stringify(build(SLOT)).split(JSON.stringify(SLOT));
  if (parts.length !== 2) return build; // the marker appeared elsewhere: no template, the object as is
  const [before, after] = parts as [string, string];
  return (content) => new JsonText(before + JSON.stringify(content) + after);
}
