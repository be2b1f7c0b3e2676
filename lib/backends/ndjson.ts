/**
 * Ollama's streamed answers are NDJSON: one JSON object per line, lines split anywhere across socket
 * reads (inside a multi-byte character too), the last line possibly without its newline, and an
 * `{"error": "..."}` line where something failed after the stream began.
 */

/** An `{"error"}` line inside a streamed answer: Ollama failed after it had sent its headers. */
export class OllamaStreamError extends Error {
  override name = 'OllamaStreamError';
}

const NEWLINE = 0x0a;

/**
 * Longest line accepted. Ollama's largest is a final `/api/generate` line with its `context` (a token
 * id per context position: under a megabyte at 128 K context); a stream without newlines must not
 * grow the buffer until the process runs out of memory.
 */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

/**
 * Parsed lines from raw body chunks. Lines are cut on the newline byte and decoded whole, so a
 * character split across two reads is never decoded in halves. Blank lines are skipped.
 */
export async function* ndjsonLines<T extends object>(body: AsyncIterable<Uint8Array>): AsyncGenerator<T> {
  let pending: Buffer | null = null;
  for await (const raw of body) {
    const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    let start = 0;
    let newline = chunk.indexOf(NEWLINE);
    while (newline !== -1) {
      const piece = chunk.subarray(start, newline);
      const line: Buffer = pending ? Buffer.concat([pending, piece]) : piece;
      pending = null;
      const parsed = parseLine<T>(line);
      if (parsed) yield parsed;
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      pending = pending ? Buffer.concat([pending, rest]) : rest;
      if (pending.length > MAX_LINE_BYTES) throw new SyntaxError(`Ollama sent a line longer than ${MAX_LINE_BYTES} bytes without a newline.`);
    }
  }
  if (pending) {
    const parsed = parseLine<T>(pending);
    if (parsed) yield parsed;
  }
}

function parseLine<T extends object>(line: Buffer): T | null {
  const text = line.toString('utf8').trim();
  if (text === '') return null;
  const value: unknown = JSON.parse(text); // a SyntaxError here is "Ollama sent garbage"
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SyntaxError(`Ollama sent a line that is not a JSON object: ${text.slice(0, 120)}`);
  }
  const error = (value as { error?: unknown }).error;
  if (error !== undefined) throw new OllamaStreamError(typeof error === 'string' ? error : JSON.stringify(error));
  return value as T;
}
