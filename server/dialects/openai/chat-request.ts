/**
 * `POST /v1/chat/completions` body → the core ChatRequest. Faithful to Ollama's native /api/chat:
 * sampling options are passed only when the caller gave them (Ollama's own /v1 layer forces
 * temperature and top_p to 1, overriding the Modelfile), `developer` becomes `system`, content parts
 * are flattened, tool-call arguments go from JSON strings to objects.
 * Unknown fields are accepted and ignored: clients keep adding new ones.
 */
import { z } from 'zod';
import type { ChatMessage, ChatRequest, GenerationOptions, ToolCall, ToolSpec } from '../../../lib/types';
import { isJsonObject } from '../shared';
import { badParam, parseOrThrow, stopList } from './validation';

const textPart = z.object({ type: z.literal('text'), text: z.string() });
const imagePart = z.object({
  type: z.literal('image_url'),
  image_url: z.union([z.string(), z.object({ url: z.string(), detail: z.string().nullish() })]),
});
const refusalPart = z.object({ type: z.literal('refusal'), refusal: z.string() });

const textContent = z.union([z.string(), z.array(textPart)]);
/** Parts are checked one by one in userMessage, so an unsupported type gets a message that names it. */
const userContent = z.union([z.string(), z.array(z.looseObject({ type: z.string() }))]);
const userPart = z.discriminatedUnion('type', [textPart, imagePart]);
const assistantContent = z.union([z.string(), z.array(z.discriminatedUnion('type', [textPart, refusalPart]))]).nullish();

const toolCallSchema = z.object({
  id: z.string(),
  type: z.literal('function').optional(),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const messageSchema = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: textContent }),
  z.object({ role: z.literal('developer'), content: textContent }),
  z.object({ role: z.literal('user'), content: userContent }),
  z.object({ role: z.literal('assistant'), content: assistantContent, tool_calls: z.array(toolCallSchema).nullish() }),
  z.object({ role: z.literal('tool'), content: textContent, tool_call_id: z.string() }),
]);

const toolSchema = z.object({
  type: z.literal('function'),
  function: z.object({
    name: z.string().min(1),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
});

const responseFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: z.string(),
      description: z.string().nullish(),
      schema: z.record(z.string(), z.unknown()).nullish(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

/** Fields shared with the legacy completions endpoint. */
export const samplingFields = {
  model: z.string().min(1).optional(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  stop: z.union([z.string(), z.array(z.string())]).nullish(),
  n: z.number().int().min(1).nullish(),
};

export const chatBodySchema = z.object({
  ...samplingFields,
  messages: z.array(messageSchema).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  response_format: responseFormatSchema.nullish(),
  tools: z.array(toolSchema).nullish(),
  tool_choice: z.unknown().optional(),
  reasoning_effort: z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh']).nullish(),
});

export type ChatBody = z.infer<typeof chatBodySchema>;
type SamplingBody = Pick<ChatBody, keyof typeof samplingFields>;

export interface ParsedStreamMode {
  stream: boolean;
  includeUsage: boolean;
}

export interface ParsedChat extends ParsedStreamMode {
  request: ChatRequest;
}

/** The checks and options both OpenAI generation endpoints share. */
export function streamModeOf(body: SamplingBody): ParsedStreamMode {
  if (body.n !== null && body.n !== undefined && body.n > 1) throw badParam('n', 'Only n=1 is supported: the gateway returns one choice.');
  const stream = body.stream === true;
  if (body.stream_options && !stream) {
    throw badParam('stream_options', "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
  }
  return { stream, includeUsage: stream && body.stream_options?.include_usage === true };
}

export function optionsOf(body: SamplingBody, maxTokens: number | null | undefined): GenerationOptions {
  const options: GenerationOptions = {};
  if (maxTokens !== null && maxTokens !== undefined) options.maxTokens = maxTokens;
  if (body.temperature !== null && body.temperature !== undefined) options.temperature = body.temperature;
  if (body.top_p !== null && body.top_p !== undefined) options.topP = body.top_p;
  if (body.seed !== null && body.seed !== undefined) options.seed = body.seed;
  if (body.presence_penalty !== null && body.presence_penalty !== undefined) options.presencePenalty = body.presence_penalty;
  if (body.frequency_penalty !== null && body.frequency_penalty !== undefined) options.frequencyPenalty = body.frequency_penalty;
  const stop = stopList(body.stop);
  if (stop) options.stop = stop;
  return options;
}

/** Image data URLs Ollama accepts; the base64 payload is what its `images` field takes. */
const DATA_URL = /^data:image\/(?:jpeg|jpg|png|webp|gif);base64,([A-Za-z0-9+/=\s]+)$/;

function flattenText(content: string | Array<{ type: 'text'; text: string } | { type: 'refusal'; refusal: string }> | null | undefined): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((part) => (part.type === 'text' ? part.text : part.refusal)).join('\n');
}

function userMessage(content: z.infer<typeof userContent>, index: number): ChatMessage {
  if (typeof content === 'string') return { role: 'user', content };
  const texts: string[] = [];
  const images: string[] = [];
  content.forEach((raw, j) => {
    if (raw.type !== 'text' && raw.type !== 'image_url') {
      throw badParam(`messages[${index}].content[${j}].type`, `Content parts of type '${raw.type}' are not supported; use 'text' or 'image_url'.`);
    }
    const part = parseOrThrow(userPart, raw, `messages[${index}].content[${j}]`);
    if (part.type === 'text') return void texts.push(part.text);
    const url = typeof part.image_url === 'string' ? part.image_url : part.image_url.url;
    const param = `messages[${index}].content[${j}].image_url`;
    if (/^https?:\/\//i.test(url)) {
      throw badParam(param, 'Image URLs are not supported; send the image inline as a base64 data URL (data:image/png;base64,…).');
    }
    const match = DATA_URL.exec(url);
    if (!match?.[1]) throw badParam(param, 'Expected a base64 data URL of a JPEG, PNG, WebP or GIF image.');
    images.push(match[1].replace(/\s+/g, ''));
  });
  const message: ChatMessage = { role: 'user', content: texts.join('\n') };
  if (images.length) message.images = images;
  return message;
}

function parseArguments(text: string, param: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    throw badParam(param, 'Tool call arguments must be a JSON object encoded as a string.');
  }
  if (!isJsonObject(value)) throw badParam(param, 'Tool call arguments must be a JSON object encoded as a string.');
  return value;
}

function messagesOf(body: ChatBody): ChatMessage[] {
  // Tool results name their call by id; Ollama wants the function's name, found in earlier assistant calls.
  const toolNames = new Map<string, string>();
  return body.messages.map((m, i): ChatMessage => {
    switch (m.role) {
      case 'system':
      case 'developer':
        return { role: 'system', content: flattenText(m.content) };
      case 'user':
        return userMessage(m.content, i);
      case 'assistant': {
        const message: ChatMessage = { role: 'assistant', content: flattenText(m.content) };
        if (m.tool_calls?.length) {
          message.toolCalls = m.tool_calls.map((call, j): ToolCall => {
            toolNames.set(call.id, call.function.name);
            return { id: call.id, name: call.function.name, arguments: parseArguments(call.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`) };
          });
        }
        return message;
      }
      case 'tool': {
        const name = toolNames.get(m.tool_call_id);
        if (name === undefined) {
          throw badParam(`messages[${i}].tool_call_id`, `No earlier assistant message has a tool call with id '${m.tool_call_id}'.`);
        }
        return { role: 'tool', content: flattenText(m.content), toolName: name };
      }
    }
  });
}

function toolsOf(body: ChatBody): ToolSpec[] | undefined {
  // Ollama ignores tool_choice; "none" is honoured by not offering the tools at all.
  if (!body.tools?.length || body.tool_choice === 'none') return undefined;
  return body.tools.map((t) => {
    const spec: ToolSpec = { name: t.function.name };
    if (t.function.description) spec.description = t.function.description;
    if (t.function.parameters) spec.parameters = t.function.parameters;
    return spec;
  });
}

const THINK_BY_EFFORT = { none: false, minimal: 'low', low: 'low', medium: 'medium', high: 'high', xhigh: 'high' } as const;

export function parseChatBody(raw: unknown, defaultModel: string): ParsedChat {
  return chatFromBody(isPlainChatBody(raw) ? raw : parseOrThrow(chatBodySchema, raw), defaultModel);
}

/** The core request from a body that passed chatBodySchema (or the hand check that stands for it). */
export function chatFromBody(body: ChatBody, defaultModel: string): ParsedChat {
  const mode = streamModeOf(body);
  const request: ChatRequest = {
    // AimiChat's documented requests carry no model; OpenAI clients always send one.
    model: body.model ?? defaultModel,
    input: { kind: 'messages', messages: messagesOf(body) },
    options: optionsOf(body, body.max_completion_tokens ?? body.max_tokens),
  };
  const format = body.response_format;
  if (format?.type === 'json_object') request.format = 'json';
  if (format?.type === 'json_schema') request.format = format.json_schema.schema ?? 'json';
  const tools = toolsOf(body);
  if (tools) request.tools = tools;
  if (body.reasoning_effort) request.think = THINK_BY_EFFORT[body.reasoning_effort];
  return { request, ...mode };
}

const isNullish = (value: unknown): value is null | undefined => value === null || value === undefined;
/** JSON numbers are finite; zod's int() is a safe integer. */
const optionalInteger = (value: unknown, min: number): boolean => isNullish(value) || (Number.isSafeInteger(value) && (value as number) >= min);
const optionalNumber = (value: unknown, min: number, max: number): boolean => isNullish(value) || (typeof value === 'number' && value >= min && value <= max);
const PLAIN_ROLES = new Set(['system', 'developer', 'user', 'assistant']);

/**
 * The commonest body — text messages and sampling options, nothing else — checked by hand: zod's
 * parse of the whole schema was ~10 µs of every request (`npm run bench:profile`). True only where
 * chatBodySchema accepts the body and would read the same values from it (its result differs only
 * by dropping keys nothing reads), so the body itself can stand for the parse. Everything else
 * (tools, images as parts, response formats, a value out of range) goes to zod, which also words the
 * error; tests/chat-request.test.ts compares the two on thousands of bodies.
 */
export function isPlainChatBody(raw: unknown): raw is ChatBody {
  if (!isJsonObject(raw)) return false;
  const body = raw;
  if (body.model !== undefined && (typeof body.model !== 'string' || body.model === '')) return false;
  if (!isNullish(body.stream) && typeof body.stream !== 'boolean') return false;
  if (!isNullish(body.stream_options) || body.response_format !== undefined || body.tools !== undefined) return false;
  if (body.tool_choice !== undefined || body.reasoning_effort !== undefined) return false;
  if (!optionalInteger(body.max_tokens, 1) || !optionalInteger(body.max_completion_tokens, 1) || !optionalInteger(body.n, 1)) return false;
  if (!optionalInteger(body.seed, Number.MIN_SAFE_INTEGER)) return false;
  if (!optionalNumber(body.temperature, 0, 2) || !optionalNumber(body.top_p, 0, 1)) return false;
  if (!optionalNumber(body.presence_penalty, -2, 2) || !optionalNumber(body.frequency_penalty, -2, 2)) return false;
  const stop = body.stop;
  if (!isNullish(stop) && typeof stop !== 'string' && !(Array.isArray(stop) && stop.every((s) => typeof s === 'string'))) return false;
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) return false;
  for (const message of messages) {
    if (!isJsonObject(message) || typeof message.content !== 'string' || !PLAIN_ROLES.has(message.role as string)) return false;
    if (message.role === 'assistant' && !isNullish(message.tool_calls)) return false;
  }
  return true;
}
