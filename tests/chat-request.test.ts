/**
 * The hand check for plain chat bodies (isPlainChatBody) stands in for zod's parse of the whole schema:
 * wherever it says yes, zod must accept the body and the request built from it must be the same.
 */
import { chatBodySchema, chatFromBody, isPlainChatBody, parseChatBody } from '../server/dialects/openai/chat-request';

/** A small deterministic generator, so a failure names a body that can be run again. */
function generator(seed: number) {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  return { next, pick };
}

const ODD_VALUES: unknown[] = [null, undefined, '', 'x', 0, -1, 1, 1.5, 2, 2.5, 3, 2 ** 60, true, false, [], ['a'], [1], {}, { a: 1 }];

function randomBody(g: ReturnType<typeof generator>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const fields = ['model', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'seed', 'presence_penalty', 'frequency_penalty', 'stop', 'n', 'tools', 'response_format', 'reasoning_effort', 'user', 'metadata'];
  for (const field of fields) {
    if (g.next() < 0.7) continue;
    body[field] = g.next() < 0.5 ? g.pick(ODD_VALUES) : g.pick(['llama', 1, 0.5, true, 'stop', ['a', 'b'], { include_usage: true }, 64, -2, 2]);
  }
  if (g.next() < 0.95) {
    const count = Math.floor(g.next() * 4);
    body.messages = Array.from({ length: count }, () => {
      const message: Record<string, unknown> = { role: g.pick(['system', 'developer', 'user', 'assistant', 'tool', 'bogus', 3]) };
      if (g.next() < 0.9) message.content = g.next() < 0.8 ? g.pick(['hi', '', 'two words', '😀']) : g.pick(ODD_VALUES);
      if (g.next() < 0.1) message.tool_calls = g.pick([null, [], [{ id: 'c', function: { name: 'f', arguments: '{}' } }], [{ id: 1 }]]);
      if (g.next() < 0.1) message.name = 'someone';
      return message;
    });
  } else if (g.next() < 0.5) {
    body.messages = g.pick(ODD_VALUES);
  }
  return body;
}

/** The result, or the error's message (a body both accept may still be refused later, e.g. n > 1). */
function attempt<T>(build: () => T): T | { error: string } {
  try {
    return build();
  } catch (err) {
    return { error: (err as Error).message };
  }
}

describe('isPlainChatBody', () => {
  test('takes the common bodies', () => {
    expect(isPlainChatBody({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })).toBe(true);
    expect(isPlainChatBody({ model: 'm', stream: true, max_tokens: 64, temperature: 0.2, stop: ['\n'], messages: [{ role: 'system', content: 's' }, { role: 'user', content: 'u' }, { role: 'assistant', content: 'a', tool_calls: null }] })).toBe(true);
  });

  test('leaves to zod what needs it', () => {
    expect(isPlainChatBody({ model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] })).toBe(false);
    expect(isPlainChatBody({ model: 'm', messages: [{ role: 'tool', content: 'r', tool_call_id: 'c' }] })).toBe(false);
    expect(isPlainChatBody({ model: 'm', messages: [{ role: 'user', content: 'hi' }], tools: [] })).toBe(false);
    expect(isPlainChatBody({ model: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 3 })).toBe(false);
    expect(isPlainChatBody({ model: null, messages: [{ role: 'user', content: 'hi' }] })).toBe(false);
    expect(isPlainChatBody({ model: 'm', messages: [{ role: 'assistant', content: 'a', tool_calls: [{ id: 1 }] }] })).toBe(false);
    expect(isPlainChatBody({ model: 'm', messages: [{ role: 'user', content: 'hi' }], seed: 2 ** 60 })).toBe(false);
  });

  test('on 20,000 random bodies: where it says yes, zod accepts too and the request built is the same', () => {
    const g = generator(11);
    let plain = 0;
    for (let i = 0; i < 20_000; i++) {
      const body = randomBody(g);
      if (!isPlainChatBody(body)) continue;
      plain++;
      const viaZod = chatBodySchema.safeParse(body);
      expect({ body, success: viaZod.success }).toEqual({ body, success: true });
      if (!viaZod.success) continue;
      const fast = attempt(() => chatFromBody(body, 'default-model'));
      const slow = attempt(() => chatFromBody(viaZod.data, 'default-model'));
      expect(fast).toEqual(slow);
      expect(attempt(() => parseChatBody(body, 'default-model'))).toEqual(slow);
    }
    expect(plain).toBeGreaterThan(100); // the hand check was exercised
  });
});
