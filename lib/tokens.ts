/**
 * Token counting with tiktoken, for what Ollama does not count for us: the prompt estimate used to
 * reserve credits, `/tokens`, and the output of a stream that was cut before Ollama's final counts.
 */
import { get_encoding, type Tiktoken, type TiktokenEncoding } from 'tiktoken';
import type { ChatInput, ToolSpec } from './types';

export const DEFAULT_ENCODING: TiktokenEncoding = 'cl100k_base';
const KNOWN_ENCODINGS: readonly TiktokenEncoding[] = ['cl100k_base', 'o200k_base', 'p50k_base', 'r50k_base', 'gpt2'];

const encoders = new Map<TiktokenEncoding, Tiktoken>();

export function isKnownEncoding(name: string): name is TiktokenEncoding {
  return (KNOWN_ENCODINGS as readonly string[]).includes(name);
}

function encoder(name: TiktokenEncoding): Tiktoken {
  let enc = encoders.get(name);
  if (!enc) {
    // Encoders are WASM objects that live for the whole process; building one takes tens of ms.
    enc = get_encoding(name);
    encoders.set(name, enc);
  }
  return enc;
}

/**
 * Builds the encoders these names need (the default for unknown ones) now rather than at first use:
 * building one blocks the event loop for a few hundred milliseconds, which at start-up holds up no
 * one, and in the first burst of requests after a restart holds up every request and stream.
 */
export function prepareEncoders(names: Iterable<string | null | undefined>): void {
  encoder(DEFAULT_ENCODING);
  for (const name of names) if (name && isKnownEncoding(name)) encoder(name);
}

/** The encoders built so far, by name. */
export function preparedEncoders(): TiktokenEncoding[] {
  return [...encoders.keys()];
}

export function countTokens(text: string, encoding: string = DEFAULT_ENCODING): number {
  if (text.length === 0) return 0;
  const name = isKnownEncoding(encoding) ? encoding : DEFAULT_ENCODING;
  const cacheable = text.length <= CACHEABLE_CHARS;
  const key = cacheable ? `${name}\u0000${text}` : '';
  const known = cacheable ? recentCounts.get(key) : undefined;
  if (known !== undefined) {
    // Refresh its place, so the oldest counts are the ones dropped.
    recentCounts.delete(key);
    recentCounts.set(key, known);
    return known;
  }
  // encode_ordinary treats "<|endoftext|>" in user text as plain text instead of throwing.
  const count = encoder(name).encode_ordinary(text).length;
  if (cacheable) remember(key, count);
  return count;
}

/**
 * Chat clients send the whole conversation again on every turn, so most messages have been counted
 * before; a call into tiktoken's WASM costs far more than a map look-up. Recent counts are kept up
 * to a bound on their total text, oldest dropped first.
 */
const CACHEABLE_CHARS = 32_768;
const MAX_CACHED_CHARS = 4_000_000;
const recentCounts = new Map<string, number>();
let cachedChars = 0;

function remember(key: string, count: number): void {
  recentCounts.set(key, count);
  cachedChars += key.length;
  for (const oldest of recentCounts.keys()) {
    if (cachedChars <= MAX_CACHED_CHARS) break;
    recentCounts.delete(oldest);
    cachedChars -= oldest.length;
  }
}

/** Chat templates add a few tokens per message (role markers); this keeps estimates on the safe side. */
const TOKENS_PER_MESSAGE = 4;

/**
 * What an image adds to a prompt, for the estimate (Ollama counts the real figure when it answers in
 * full): LLaVA spends 576 tokens an image, gemma3 256, Qwen2.5-VL a few hundred. The estimate is what a
 * limited balance reserves and tokens per minute hold, and what is billed when Ollama's own count is
 * missing, so a worst case (Llama 3.2 Vision, up to ~1,600 a tile) would refuse and overcharge the
 * common models; with it, such a model is charged at most its reservation. IMAGE_TOKENS sets it for a
 * gateway whose vision models spend more.
 */
export const TOKENS_PER_IMAGE = 768;

/**
 * The prompt as Ollama's chat template renders it, estimated: the messages' text, their tool calls'
 * arguments, the tool definitions (rendered into the prompt as JSON) and an allowance per image.
 */
export function countInputTokens(input: ChatInput, encoding?: string, tools?: readonly ToolSpec[], imageTokens = TOKENS_PER_IMAGE): number {
  if (input.kind === 'prompt') return countTokens(input.prompt, encoding) + countTokens(input.suffix ?? '', encoding);
  let total = 0;
  for (const message of input.messages) {
    total += TOKENS_PER_MESSAGE + countTokens(message.content, encoding);
    if (message.toolCalls) for (const call of message.toolCalls) total += countTokens(call.name + JSON.stringify(call.arguments), encoding);
    if (message.images) total += message.images.length * imageTokens;
  }
  if (tools && tools.length > 0) total += countTokens(JSON.stringify(tools), encoding);
  return total;
}
