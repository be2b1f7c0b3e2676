/**
 * Token counting: tiktoken's counts, the same whether or not a text was counted before.
 */
import { get_encoding } from 'tiktoken';
import { countInputTokens, countTokens, prepareEncoders, preparedEncoders, TOKENS_PER_IMAGE } from '../lib/tokens';

const reference = get_encoding('cl100k_base');
const tiktokenCount = (text: string) => reference.encode_ordinary(text).length;

describe('countTokens', () => {
  test('counts as tiktoken does, and a repeated text (a resent conversation) counts the same', () => {
    const text = 'Say something short about benchmarks.';
    const first = countTokens(text);
    expect(first).toBe(tiktokenCount(text));
    expect(countTokens(text)).toBe(first);
    expect(countTokens(text, 'gpt2')).toBe(countTokens(text, 'gpt2')); // each encoding has its own entries
    expect(countTokens('')).toBe(0);
  });

  test('"<|endoftext|>" in user text is plain text, not a special token or an error', () => {
    expect(countTokens('a <|endoftext|> b')).toBeGreaterThan(3);
  });

  test('a very long text is counted without being kept, and still counted right the second time', () => {
    const long = 'word '.repeat(20_000);
    const expected = tiktokenCount(long);
    expect(countTokens(long)).toBe(expected);
    expect(countTokens(long)).toBe(expected);
  });

  test('chat input adds a few tokens per message for the template', () => {
    const one = countTokens('hello');
    expect(countInputTokens({ kind: 'messages', messages: [{ role: 'user', content: 'hello' }] })).toBe(one + 4);
  });

  test('the estimate has what the template renders besides text: tool definitions, earlier tool calls, images', () => {
    const tools = [{ name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } }];
    const call = { id: 'call_1', name: 'get_weather', arguments: { city: 'Paris' } };
    const input = {
      kind: 'messages' as const,
      messages: [
        { role: 'user' as const, content: 'what is this?', images: ['aGVsbG8=', 'aGVsbG8='] },
        { role: 'assistant' as const, content: '', toolCalls: [call] },
      ],
    };
    expect(countInputTokens(input, undefined, tools)).toBe(
      countTokens('what is this?') + 4 + 2 * TOKENS_PER_IMAGE + 4 + countTokens(`get_weather${JSON.stringify({ city: 'Paris' })}`) + countTokens(JSON.stringify(tools)),
    );
  });
});

describe('prepareEncoders', () => {
  test('builds the default and every known encoder named, ignoring unknown and missing names', () => {
    prepareEncoders(['o200k_base', 'not-an-encoding', null, undefined, 'o200k_base']);
    const prepared = preparedEncoders();
    expect(prepared).toEqual(expect.arrayContaining(['cl100k_base', 'o200k_base']));
    expect(prepared).not.toContain('not-an-encoding');
    expect(new Set(prepared).size).toBe(prepared.length);
    // The prepared encoder is the one counting uses.
    expect(countTokens('hello world', 'o200k_base')).toBe(get_encoding('o200k_base').encode_ordinary('hello world').length);
  });
});
