/**
 * The content-delta template of the OpenAI stream: byte for byte what serialising the chunk object
 * gives, whatever the token holds.
 */
import { chatChunkRenderer, contentTemplate } from '../server/dialects/openai/chat-stream';
import { JsonText } from '../server/sse';

const tricky = ['plain', 'quote " and \\ backslash', 'line\nbreak\ttab', '日本語 🎉 déjà', '</script><!--', '\u0000\u001f\u2028', ''];

test('a filled template is the same text as the serialised object', () => {
  const build = (content: string) => ({ id: 'chatcmpl-x', model: 'm "q"', choices: [{ index: 0, delta: { content }, finish_reason: null }], org: 'o' });
  const fill = contentTemplate(build);
  for (const content of tricky) {
    const out = fill(content);
    expect(out).toBeInstanceOf(JsonText);
    expect((out as JsonText).text).toBe(JSON.stringify(build(content)));
  }
});

test('when the marker shows up elsewhere there is no template: the object itself is returned', () => {
  const build = (content: string) => ({ a: content, b: content });
  expect(contentTemplate(build)('x')).toEqual({ a: 'x', b: 'x' });
});

test('the renderer sends content deltas through the template, with the stream\'s id, model and organisation', () => {
  const renderer = chatChunkRenderer('covalid-1.0', true, 'org_1');
  const [start] = renderer.start() as [Record<string, unknown>];
  const [delta] = renderer.delta({ type: 'delta', content: 'Hé "there"' });
  expect(delta).toBeInstanceOf(JsonText);
  expect(JSON.parse((delta as JsonText).text)).toEqual({
    ...start,
    choices: [{ index: 0, delta: { content: 'Hé "there"' }, logprobs: null, finish_reason: null }],
  });
});
