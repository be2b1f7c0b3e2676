/**
 * The gateway's one internal request and result. Every API shape translates into these and back;
 * nothing here knows about HTTP or about Ollama's wire format.
 */

export type Role = 'system' | 'user' | 'assistant' | 'tool';

export interface ToolCall {
  id: string;
  name: string;
  /** Parsed arguments. OpenAI carries them as a JSON string, Ollama as an object; the core keeps the object. */
  arguments: Record<string, unknown>;
}

export interface ToolSpec {
  name: string;
  description?: string;
  parameters?: Record<string, unknown>;
}

export interface ChatMessage {
  role: Role;
  content: string;
  /** Base64 images without the data-URL prefix. */
  images?: string[];
  toolCalls?: ToolCall[];
  /** For role `tool`: the name of the function whose result this is. */
  toolName?: string;
}

/** Sampling options; only the ones a caller gave are set, so Ollama's model defaults stay in force. */
export interface GenerationOptions {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: string[];
  presencePenalty?: number;
  frequencyPenalty?: number;
}

export type ChatInput =
  | { kind: 'messages'; messages: ChatMessage[] }
  /** A bare prompt (Covalid, legacy completions): served by Ollama's /api/generate. */
  | { kind: 'prompt'; prompt: string; suffix?: string };

export interface ChatRequest {
  /** The public model name the caller used (an alias or an Ollama model name). */
  model: string;
  input: ChatInput;
  options: GenerationOptions;
  /** `json`, or a JSON Schema object for structured output. */
  format?: 'json' | Record<string, unknown>;
  tools?: ToolSpec[];
  /** Thinking control for reasoning models; absent leaves Ollama's default. */
  think?: boolean | 'low' | 'medium' | 'high';
}

export type FinishReason = 'stop' | 'length' | 'tool_calls';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** What a request cost, in integer micro-credits (1 credit = 1,000,000 micro-credits). */
export interface Cost {
  inputMicro: number;
  outputMicro: number;
  totalMicro: number;
}

export interface Timings {
  /** Milliseconds from admission to the first content from Ollama. */
  timeToFirstTokenMs: number;
  /** Milliseconds from admission to the end. */
  totalMs: number;
}

/** One step of a streamed answer. */
export type ChatEvent =
  | { type: 'delta'; content: string; thinking?: string; toolCalls?: readonly ToolCall[] }
  | { type: 'done'; finishReason: FinishReason; usage: Usage; cost: Cost; timings: Timings };

/** A whole, non-streamed answer. */
export interface ChatResult {
  content: string;
  thinking: string;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  usage: Usage;
  cost: Cost;
  timings: Timings;
}

/** Who is calling: one key, and the organisation that owns it and pays for it. */
export interface Principal {
  keyId: number;
  clientKey: string;
  keyName: string;
  orgId: string;
  orgName: string;
  /** The key's and its organisation's limits, read from SQLite on every request; absent means none. */
  limits?: PrincipalLimits;
  /** Public model names this key may use; absent or null means every model. */
  allowedModels?: string[] | null;
  /** ISO time from which the key is refused; absent or null means never. */
  expiresAt?: string | null;
}

/** One holder's limits (null = none): requests and tokens per minute, credit allotments in micro-credits. */
export interface LimitSet {
  rpm: number | null;
  tpm: number | null;
  dailyMicro: number | null;
  monthlyMicro: number | null;
}

/** A key's own limits and its organisation's, which all the organisation's keys share. */
export interface PrincipalLimits {
  key: LimitSet;
  org: LimitSet;
}

/** A public model name and what serves it. */
export interface ModelEntry {
  name: string;
  ollamaModel: string;
  category: ModelCategory;
  inputMicroPer1k: number;
  outputMicroPer1k: number;
  /** Upper bound on output tokens used to reserve credits when a request sets none. */
  maxOutputTokens: number | null;
  /** tiktoken encoding for estimates; null means the default. */
  tokenizer: string | null;
  /** What an image adds to the prompt estimate (vision models differ by the thousand); null means IMAGE_TOKENS. */
  imageTokens: number | null;
  /** True for an entry of the model table; false for an Ollama model used under its own name. */
  configured: boolean;
}

export type ModelCategory = 'chat' | 'embedding' | 'moderation';
