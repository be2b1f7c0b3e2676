/**
 * One Ollama host. Generations go through undici's `dispatch()` on a keep-alive pool (the hot path,
 * answer-stream.ts); the rest (models, version, embeddings) through the official `ollama` client on
 * the same pool.
 *
 * Every generation is streamed from Ollama, even when the caller wants one JSON answer: Ollama then
 * reports progress line by line, so the core can bill exactly what was relayed when a client leaves.
 */
import { asAbortSignal, type CancelSignal } from '../abort';
import { Ollama, type ChatRequest as OllamaChatRequest, type GenerateRequest, type Message, type Options } from 'ollama';
import { Agent, fetch as undiciFetch } from 'undici';
import type { ChatMessage, GenerationOptions, ToolCall, ToolSpec } from '../types';
import type { BatchSource } from '../batch-source';
import { AnswerStream } from './answer-stream';
import { failureBeforeFirstByte, failureMidStream, OllamaResponseError } from './failures';
import type { Backend, BackendChatRequest, BackendChunk, BackendModel, EmbedResult } from './types';

export interface OllamaBackendOptions {
  /**
   * Longest wait for Ollama's response headers. Ollama sends none until the first token, i.e. after
   * a model load and the whole prompt evaluation, so undici's 5-minute default cuts healthy requests.
   */
  headersTimeoutMs: number;
  /** Longest silence between two lines of a streamed answer. */
  bodyTimeoutMs: number;
  connectTimeoutMs: number;
}

export const DEFAULT_OLLAMA_BACKEND_OPTIONS: OllamaBackendOptions = {
  headersTimeoutMs: 30 * 60_000,
  bodyTimeoutMs: 10 * 60_000,
  connectTimeoutMs: 10_000,
};

type FetchLike = typeof fetch;

const JSON_HEADERS = { 'content-type': 'application/json' } as const;

/** What a native NDJSON line may carry beyond ollama-js's types (tool-call ids, generate's `response`). */
interface RawLine {
  message?: { content?: string; thinking?: string; tool_calls?: RawToolCall[] };
  response?: string;
  thinking?: string;
  done?: boolean;
  done_reason?: string;
  prompt_eval_count?: number;
  eval_count?: number;
}

interface RawToolCall {
  id?: string;
  function?: { name?: string; arguments?: Record<string, unknown> };
}

export class OllamaBackend implements Backend {
  readonly url: string;
  private readonly agent: Agent;
  private readonly origin: string;
  private readonly basePath: string;
  private readonly fetch: FetchLike;

  constructor(url: string, options: OllamaBackendOptions = DEFAULT_OLLAMA_BACKEND_OPTIONS) {
    this.url = url.replace(/\/+$/, '');
    // undici takes an origin and a path apart; an Ollama behind a reverse proxy may live under a path.
    const parsed = new URL(this.url);
    this.origin = parsed.origin;
    this.basePath = parsed.pathname.replace(/\/+$/, '');
    // One keep-alive pool per host: connection reuse is most of the proxy's latency budget.
    this.agent = new Agent({
      headersTimeout: options.headersTimeoutMs,
      bodyTimeout: options.bodyTimeoutMs,
      connect: { timeout: options.connectTimeoutMs },
      keepAliveTimeout: 30_000,
    });
    const agent = this.agent;
    // undici's fetch and the DOM fetch type describe the same function with different type packages;
    // the cast bridges the two declarations, not two behaviours.
    this.fetch = ((input: Parameters<typeof undiciFetch>[0], init?: Parameters<typeof undiciFetch>[1]) =>
      undiciFetch(input, { ...init, dispatcher: agent })) as unknown as FetchLike;
  }

  /** A client per request: ollama-js keeps every unfinished stream in a per-instance list, which would leak. */
  private client(signal?: AbortSignal): Ollama {
    const base = this.fetch;
    const fetchWithSignal: FetchLike = signal
      ? (input, init) => base(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, signal]) : signal })
      : base;
    return new Ollama({ host: this.url, fetch: fetchWithSignal });
  }

  async chat(request: BackendChatRequest): Promise<BatchSource<BackendChunk>> {
    const isChat = request.input.kind === 'messages';
    const body = isChat ? { ...this.chatBody(request), stream: true } : { ...this.generateBody(request), stream: true };
    // undici's dispatch() with our own handler: no Readable, async iterator or AbortController per
    // call, and no async step per line (answer-stream.ts says why that mattered).
    const answer = new AnswerStream<BackendChunk>({
      convert: (line) => toChunk(line as RawLine),
      isLast: (chunk) => chunk.done,
      signal: request.signal,
      midStream: failureMidStream,
    });
    this.agent.dispatch(
      {
        origin: this.origin,
        path: `${this.basePath}${isChat ? '/api/chat' : '/api/generate'}`,
        method: 'POST',
        headers: JSON_HEADERS,
        body: JSON.stringify(body),
      },
      answer,
    );
    try {
      await answer.ready();
    } catch (err) {
      answer.cancel();
      throw failureBeforeFirstByte(err, this.url, request.model);
    }
    return answer;
  }

  /**
   * Through our own fetch rather than ollama-js, whose error keeps only a message: whether an error
   * answer was Ollama's own `{"error"}` or a proxy's page decides whether the pool takes the host out.
   */
  async embed(model: string, input: string[], signal: CancelSignal): Promise<EmbedResult> {
    try {
      const res = await this.fetch(`${this.url}/api/embed`, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify({ model, input }), signal: asAbortSignal(signal) });
      const text = await res.text();
      if (!res.ok) throw embedFailure(OllamaResponseError.fromBody(text, res.status));
      const body = JSON.parse(text) as { embeddings?: unknown; prompt_eval_count?: unknown };
      if (!Array.isArray(body.embeddings)) throw new SyntaxError('no embeddings in the answer');
      const embeddings = body.embeddings as number[][];
      return typeof body.prompt_eval_count === 'number' && body.prompt_eval_count > 0 ? { embeddings, promptTokens: body.prompt_eval_count } : { embeddings };
    } catch (err) {
      throw failureBeforeFirstByte(err, this.url, model);
    }
  }

  async listModels(signal?: AbortSignal): Promise<BackendModel[]> {
    try {
      const res = await this.client(signal).list();
      return res.models.map((m) => {
        const raw = m as typeof m & { capabilities?: string[] };
        const model: BackendModel = { name: m.name, modifiedAt: new Date(m.modified_at).toISOString() };
        if (m.details?.family) model.family = m.details.family;
        if (Array.isArray(raw.capabilities)) model.capabilities = raw.capabilities;
        return model;
      });
    } catch (err) {
      throw failureBeforeFirstByte(err, this.url, '');
    }
  }

  async version(signal?: AbortSignal): Promise<string> {
    try {
      return (await this.client(signal).version()).version;
    } catch (err) {
      throw failureBeforeFirstByte(err, this.url, '');
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private chatBody(request: BackendChatRequest): OllamaChatRequest {
    const body: OllamaChatRequest = {
      model: request.model,
      messages: request.input.kind === 'messages' ? request.input.messages.map(toOllamaMessage) : [],
      options: toOllamaOptions(request.options),
    };
    if (request.format !== undefined) body.format = request.format;
    if (request.tools?.length) body.tools = request.tools.map(toOllamaTool);
    if (request.think !== undefined) body.think = request.think;
    return body;
  }

  private generateBody(request: BackendChatRequest): GenerateRequest {
    const input = request.input;
    const body: GenerateRequest = {
      model: request.model,
      prompt: input.kind === 'prompt' ? input.prompt : '',
      options: toOllamaOptions(request.options),
    };
    if (input.kind === 'prompt' && input.suffix !== undefined) body.suffix = input.suffix;
    if (request.format !== undefined) body.format = request.format;
    if (request.think !== undefined) body.think = request.think;
    return body;
  }
}

/** Shared by every line without tool calls (nearly all); frozen, since a chunk's list is only read. */
const NO_TOOL_CALLS: readonly ToolCall[] = Object.freeze([]);

function toChunk(line: RawLine): BackendChunk {
  const chunk: BackendChunk = {
    content: line.message?.content ?? line.response ?? '',
    thinking: line.message?.thinking ?? line.thinking ?? '',
    toolCalls: line.message?.tool_calls?.length ? line.message.tool_calls.map(fromOllamaToolCall) : NO_TOOL_CALLS,
    done: line.done === true,
  };
  if (line.done_reason !== undefined) chunk.doneReason = line.done_reason;
  if (typeof line.prompt_eval_count === 'number') chunk.promptEvalCount = line.prompt_eval_count;
  if (typeof line.eval_count === 'number') chunk.evalCount = line.eval_count;
  return chunk;
}

/**
 * Ollama's /api/embed answers 400 for whatever fails while embedding, a runner that crashed or ran out
 * of memory included ("do embedding request: … EOF"), not only for a bad request. The gateway built
 * the request itself, so only what the input decides is the caller's (too long for the model's
 * context, a model that does not embed); anything else is Ollama's own failure, ambiguous between the
 * host and the request like its 500s: retried on another host, a 502 when none serves it.
 */
const CALLERS_EMBED_400 = /context length|does not support|invalid input|missing request body/i;

function embedFailure(err: OllamaResponseError): OllamaResponseError {
  if (err.status_code !== 400 || !err.fromOllama || CALLERS_EMBED_400.test(err.error)) return err;
  return new OllamaResponseError(err.error, err.status_code, true, true);
}

let toolCallCounter = 0;

function fromOllamaToolCall(call: RawToolCall): ToolCall {
  return {
    // Older Ollama versions send no id; OpenAI clients need one to answer the call.
    id: call.id ?? `call_${Date.now().toString(36)}${(toolCallCounter++).toString(36)}`,
    name: call.function?.name ?? '',
    arguments: call.function?.arguments ?? {},
  };
}

function toOllamaMessage(message: ChatMessage): Message {
  const out: Message = { role: message.role, content: message.content };
  if (message.images?.length) out.images = message.images;
  if (message.toolCalls?.length) {
    out.tool_calls = message.toolCalls.map((call) => ({ function: { name: call.name, arguments: call.arguments } }));
  }
  if (message.toolName !== undefined) out.tool_name = message.toolName;
  return out;
}

function toOllamaTool(tool: ToolSpec): NonNullable<OllamaChatRequest['tools']>[number] {
  const fn: Record<string, unknown> = { name: tool.name };
  if (tool.description !== undefined) fn.description = tool.description;
  if (tool.parameters !== undefined) fn.parameters = tool.parameters;
  // ollama-js types `parameters` narrowly; a JSON Schema object is what Ollama actually accepts.
  return { type: 'function', function: fn as NonNullable<OllamaChatRequest['tools']>[number]['function'] };
}

/** Only the options the caller set, so the Modelfile's defaults stay in force for the rest. */
function toOllamaOptions(options: GenerationOptions): Partial<Options> {
  const out: Partial<Options> = {};
  if (options.maxTokens !== undefined) out.num_predict = options.maxTokens;
  if (options.temperature !== undefined) out.temperature = options.temperature;
  if (options.topP !== undefined) out.top_p = options.topP;
  if (options.topK !== undefined) out.top_k = options.topK;
  if (options.seed !== undefined) out.seed = options.seed;
  if (options.stop !== undefined) out.stop = options.stop;
  if (options.presencePenalty !== undefined) out.presence_penalty = options.presencePenalty;
  if (options.frequencyPenalty !== undefined) out.frequency_penalty = options.frequencyPenalty;
  return out;
}
