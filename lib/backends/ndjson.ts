/**
 * Ollama's streamed answers are NDJSON: one JSON object per line, lines split anywhere across socket
 * reads (inside a multi-byte character too), the last line possibly without its newline, and an
 * `{"error": "..."}` line where something failed after the stream began.
 */
import { readTokenLine } from './token-line';

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
 * Cuts raw body chunks into parsed lines, pushed as each read arrives (no stream or async layer per
 * line: a read usually holds several of Ollama's lines, and the answer's consumer takes them as one
 * batch). Lines are cut on the newline byte and decoded whole, so a character split across two reads
 * is never decoded in halves. Blank lines are skipped.
 */
export class NdjsonSplitter {
  private pending: Buffer | null = null;

  /**
   * Appends to `out` every line `chunk` completes. Throws on a line that is not a JSON object or is
   * an `{"error"}` line; the lines before it are in `out` by then, so they can still be delivered first.
   */
  push(chunk: Buffer, out: object[]): void {
    let start = 0;
    let newline = chunk.indexOf(NEWLINE);
    while (newline !== -1) {
      let text: string;
      if (this.pending) {
        text = Buffer.concat([this.pending, chunk.subarray(start, newline)]).toString('utf8');
        this.pending = null;
      } else {
        text = chunk.toString('utf8', start, newline); // no Buffer view per line
      }
      const parsed = parseLine(text);
      if (parsed) out.push(parsed);
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      // The read's buffer may be reused by the socket: keep a copy of the unfinished line, not a view.
      this.pending = this.pending ? Buffer.concat([this.pending, rest]) : Buffer.from(rest);
      if (this.pending.length > MAX_LINE_BYTES) throw new SyntaxError(`Ollama sent a line longer than ${MAX_LINE_BYTES} bytes without a newline.`);
    }
  }

  /** The body ended: appends its last line if it had no newline. */
  end(out: object[]): void {
    const rest = this.pending;
    this.pending = null;
    if (!rest) return;
    const parsed = parseLine(rest.toString('utf8'));
    if (parsed) out.push(parsed);
  }
}

function parseLine(line: string): object | null {
  // Ollama's lines start with their object; JSON.parse itself skips a trailing \r or spaces. Anything
  // else is trimmed first (a blank line is skipped).
  const text = line.charCodeAt(0) === 0x7b ? line : line.trim();
  if (text === '') return null;
  const token = readTokenLine(text); // most lines: one token, read without JSON.parse
  if (token) return token;
  const value: unknown = JSON.parse(text); // a SyntaxError here is "Ollama sent garbage"
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SyntaxError(`Ollama sent a line that is not a JSON object: ${text.slice(0, 120)}`);
  }
  const error = (value as { error?: unknown }).error;
  if (error !== undefined) throw new OllamaStreamError(typeof error === 'string' ? error : JSON.stringify(error));
  return value;
}
