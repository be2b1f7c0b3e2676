/**
 * Ollama's commonest line, read without JSON.parse: one token of a streamed answer and nothing else.
 *
 *   {"model":"M","created_at":"T","message":{"role":"assistant","content":"C"},"done":false}
 *   {"model":"M","created_at":"T","message":{"role":"assistant","content":"","thinking":"C"},"done":false}
 *   {"model":"M","created_at":"T","response":"C","done":false}
 *
 * A long answer is hundreds of these, and JSON.parse of each (~0.75 µs, and six objects for the GC)
 * was the largest single cost of relaying a stream (bench/README.md, seventh session); one match of
 * these patterns costs ~0.14 µs. Ollama writes them with Go's encoding/json, always in this field order.
 * A string with no backslash and no control character has no escapes and is its own value, so a
 * match is exactly what JSON.parse would return. Anything else (escapes, tool calls, logprobs, a
 * `\r`, another field order) does not match and goes to JSON.parse.
 */

/** A JSON string's characters when it needs no unescaping: no quote, backslash or control character. */
const PLAIN = '([^"\\\\\\u0000-\\u001f]*)';

const CHAT_TOKEN = new RegExp(
  `^\\{"model":"${PLAIN}","created_at":"${PLAIN}","message":\\{"role":"assistant","content":"${PLAIN}"(?:,"thinking":"${PLAIN}")?\\},"done":false\\}$`,
);
const GENERATE_TOKEN = new RegExp(`^\\{"model":"${PLAIN}","created_at":"${PLAIN}","response":"${PLAIN}","done":false\\}$`);

/** The parsed line when it is a plain token line, else undefined (parse it in full). */
export function readTokenLine(line: string): object | undefined {
  const chat = CHAT_TOKEN.exec(line);
  if (chat) {
    const [, model, createdAt, content, thinking] = chat;
    const message = thinking === undefined ? { role: 'assistant', content } : { role: 'assistant', content, thinking };
    return { model, created_at: createdAt, message, done: false };
  }
  const generate = GENERATE_TOKEN.exec(line);
  if (generate) {
    const [, model, createdAt, response] = generate;
    return { model, created_at: createdAt, response, done: false };
  }
  return undefined;
}
