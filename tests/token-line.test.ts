/**
 * The token-line fast path must return exactly what JSON.parse would, and must be taken for the plain
 * token lines it exists for (else the relay silently pays for a full parse again).
 */
import { NdjsonSplitter } from '../lib/backends/ndjson';
import { readTokenLine } from '../lib/backends/token-line';

const createdAt = '2026-11-24T00:10:00.123456789Z';
const chatLine = (content: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: 'llama3.2', created_at: createdAt, message: { role: 'assistant', content, ...extra }, done: false });
const generateLine = (response: string) => JSON.stringify({ model: 'llama3.2:latest', created_at: createdAt, response, done: false });

describe('readTokenLine', () => {
  test.each([
    ['a chat token', chatLine(' The')],
    ['an empty chat token', chatLine('')],
    ['a chat token with non-ASCII text', chatLine(' né 🦙 日本')],
    ['a thinking token', chatLine('', { thinking: ' hmm' })],
    ['a generate token', generateLine(' The')],
    ['a model name with a registry path and tag', JSON.stringify({ model: 'hf.co/org/model:Q4_K_M', created_at: createdAt, response: 'x', done: false })],
  ])('%s is read without JSON.parse, as JSON.parse reads it', (_name, line) => {
    const fast = readTokenLine(line);
    expect(fast).toBeDefined();
    expect(fast).toEqual(JSON.parse(line));
  });

  test.each([
    ['an escaped quote', chatLine('say "hi"')],
    ['an escaped newline', chatLine('line\nbreak')],
    ["Go's HTML escapes", chatLine('a \\u003c b').replace('\\\\u003c', '\\u003c')],
    ['tool calls', chatLine('', { tool_calls: [{ function: { name: 'f', arguments: {} } }] })],
    ['images', chatLine('x', { images: null })],
    ['the final line', JSON.stringify({ model: 'm', created_at: createdAt, message: { role: 'assistant', content: '' }, done_reason: 'stop', done: true, eval_count: 3 })],
    ['logprobs', JSON.stringify({ model: 'm', created_at: createdAt, message: { role: 'assistant', content: 'x' }, done: false, logprobs: [] })],
    ['a trailing carriage return', `${chatLine('x')}\r`],
    ['another field order', JSON.stringify({ created_at: createdAt, model: 'm', response: 'x', done: false })],
    ['a role other than assistant', chatLine('x').replace('"assistant"', '"user"')],
  ])('%s is left to JSON.parse', (_name, line) => {
    expect(readTokenLine(line)).toBeUndefined();
  });

  test('a raw control character (invalid JSON) is not accepted by the fast path either', () => {
    const line = chatLine('x').replace('"x"', '"a\u0001b"');
    expect(() => JSON.parse(line)).toThrow(SyntaxError);
    expect(readTokenLine(line)).toBeUndefined();
    expect(() => new NdjsonSplitter().push(Buffer.from(`${line}\n`), [])).toThrow(SyntaxError);
  });

  test('random lines: whatever the fast path returns equals JSON.parse', () => {
    const alphabet = ['a', ' ', '"', '\\', '\n', '\u0001', 'é', '🦙', '<', '{', '}', ',', ':', '/'];
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const text = () => Array.from({ length: Math.floor(random() * 8) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
    let taken = 0;
    for (let i = 0; i < 2000; i++) {
      const line = random() < 0.5 ? chatLine(text(), random() < 0.3 ? { thinking: text() } : {}) : generateLine(text());
      const fast = readTokenLine(line);
      if (fast !== undefined) {
        taken++;
        expect(fast).toEqual(JSON.parse(line));
      } else {
        expect(line.includes('\\')).toBe(true); // only lines with escapes go the slow way
      }
    }
    expect(taken).toBeGreaterThan(100);
  });
});
