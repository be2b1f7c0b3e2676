/**
 * Token counting with tiktoken, for what Ollama does not count for us: the prompt estimate used to
 * reserve credits, `/tokens`, and the output of a stream that was cut before Ollama's final counts.
 */
import { get_encoding, type Tiktoken, type TiktokenEncoding } from 'tiktoken';
import type { ChatInput } from './types';

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

export function countTokens(text: string, encoding: string = DEFAULT_ENCODING): number {
  if (text.length === 0) return 0;
  const name = isKnownEncoding(encoding) ? encoding : DEFAULT_ENCODING;
  // encode_ordinary treats "<|endoftext|>" in user text as plain text instead of throwing.
  return encoder(name).encode_ordinary(text).length;
}

/** Chat templates add a few tokens per message (role markers); this keeps estimates on the safe side. */
const TOKENS_PER_MESSAGE = 4;

export function countInputTokens(input: ChatInput, encoding?: string): number {
  if (input.kind === 'prompt') return countTokens(input.prompt, encoding) + countTokens(input.suffix ?? '', encoding);
  let total = 0;
  for (const message of input.messages) total += TOKENS_PER_MESSAGE + countTokens(message.content, encoding);
  return total;
}
