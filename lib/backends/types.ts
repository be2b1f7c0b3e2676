/**
 * What the core needs from an inference host. The Ollama implementation is the real one; tests run
 * it against the Ollama test double rather than swapping this interface out.
 */
import type { CancelSignal } from '../abort';
import type { BatchSource } from '../batch-source';
import type { ChatInput, ChatRequest, ToolCall } from '../types';

export interface BackendChatRequest {
  /** The Ollama model name (aliases are already resolved). */
  model: string;
  input: ChatInput;
  options: ChatRequest['options'];
  format?: ChatRequest['format'];
  tools?: ChatRequest['tools'];
  think?: ChatRequest['think'];
  signal: CancelSignal;
}

/** One parsed NDJSON line of Ollama's answer. */
export interface BackendChunk {
  content: string;
  thinking: string;
  toolCalls: readonly ToolCall[];
  done: boolean;
  /** Only on the final chunk; Ollama omits zero counts, hence optional. */
  doneReason?: string;
  promptEvalCount?: number;
  evalCount?: number;
}

export interface BackendModel {
  /** `name:tag`, as /api/tags lists it. */
  name: string;
  modifiedAt: string;
  family?: string;
  /** Ollama's declared capabilities, when the host reports them (completion, embedding, vision…). */
  capabilities?: string[];
}

export interface EmbedResult {
  embeddings: number[][];
  promptTokens?: number;
}

export interface Backend {
  /** The base URL, used as the host's name in health output, logs and metrics. */
  readonly url: string;
  /**
   * Streams the answer as batches of chunks: each batch is every line that arrived since the consumer
   * last read (at Ollama's pace, one per token; in a burst, many). The promise settles when Ollama's
   * first line arrives (that is when it sends headers). Cancelling before the final line stops Ollama.
   */
  chat(request: BackendChatRequest): Promise<BatchSource<BackendChunk>>;
  embed(model: string, input: string[], signal: CancelSignal): Promise<EmbedResult>;
  listModels(signal?: AbortSignal): Promise<BackendModel[]>;
  version(signal?: AbortSignal): Promise<string>;
}
