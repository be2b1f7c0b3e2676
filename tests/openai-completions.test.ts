/**
 * Legacy `POST /v1/completions` through Ollama's /api/generate, streamed and not; and the SSE
 * writer's keep-alive comments.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import OpenAI from 'openai';
import { SseWriter } from '../server/sse';
import { startHarness, postJson, type Harness } from './support/harness';
import { tokenize } from './support/ollama-double';

describe('POST /v1/completions', () => {
  let h: Harness;
  let key: ReturnType<Harness['createKey']>;
  let client: OpenAI;
  const url = () => `${h.url}/v1/completions`;
  const bearer = () => ({ Authorization: `Bearer ${key.apiKey}` });

  beforeAll(async () => {
    h = await startHarness();
    key = h.createKey('legacy-app');
    client = new OpenAI({ apiKey: key.apiKey, baseURL: `${h.url}/v1`, maxRetries: 0 });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
    h.double.queue.length = 0;
  });

  test('a text_completion from /api/generate, with prompt, suffix and options as given', async () => {
    const res = await client.completions.create({ model: 'covalid-1.0', prompt: 'Once upon', suffix: 'The end.', max_tokens: 50, stop: '\n', temperature: 0.1 });
    expect(res.id).toMatch(/^cmpl-/);
    expect(res.object).toBe('text_completion');
    expect(res.model).toBe('covalid-1.0');
    expect(res.choices).toEqual([{ text: 'Echo: Once upon', index: 0, logprobs: null, finish_reason: 'stop' }]);
    const prompt = tokenize('Once upon').length + 1;
    const completion = tokenize('Echo: Once upon').length;
    expect(res.usage).toEqual({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });
    const sent = h.double.generations()[0];
    expect(sent?.path).toBe('/api/generate');
    expect(sent?.body).toMatchObject({ model: 'llama3.2', prompt: 'Once upon', suffix: 'The end.', stream: true, options: { num_predict: 50, stop: ['\n'], temperature: 0.1 } });
  });

  test('no max_tokens means no num_predict (the model\'s own default stays)', async () => {
    await postJson(url(), { model: 'covalid-1.0', prompt: 'x' }, bearer());
    expect(h.double.generations()[0]?.body?.options).toEqual({});
  });

  test('streaming: text chunks, a finish chunk, the usage chunk, [DONE]', async () => {
    h.double.queue.push({ kind: 'reply', tokens: ['a', 'é', '😀'] });
    const res = await postJson(url(), { model: 'covalid-1.0', prompt: 'x', stream: true, stream_options: { include_usage: true } }, bearer());
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const data = res.text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    expect(data[data.length - 1]).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as { object: string; choices: Array<{ text: string; finish_reason: string | null }>; usage: unknown });
    expect(chunks.every((c) => c.object === 'text_completion')).toBe(true);
    expect(chunks.slice(0, 3).map((c) => c.choices[0]?.text)).toEqual(['a', 'é', '😀']);
    expect(chunks[3]?.choices).toEqual([{ text: '', index: 0, logprobs: null, finish_reason: 'stop' }]);
    expect(chunks[4]?.choices).toEqual([]);
    expect(chunks[4]?.usage).toMatchObject({ completion_tokens: 3 });

    const stream = await client.completions.create({ model: 'covalid-1.0', prompt: 'streamed please', stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe('Echo: streamed please');
  });

  test.each([
    ['n', { n: 2 }],
    ['echo', { echo: true }],
    ['best_of', { best_of: 3 }],
    ['prompt', { prompt: ['a', 'b'] }],
    ['prompt', { prompt: 5 }],
    ['stream_options', { stream_options: { include_usage: true } }],
  ])('400 with param %s', async (param, extra) => {
    const res = await postJson(url(), { model: 'covalid-1.0', prompt: 'x', ...extra }, bearer());
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ type: 'invalid_request_error', param });
    expect(h.double.generations()).toHaveLength(0);
  });
});

describe('SseWriter keep-alive', () => {
  test('writes `: keep-alive` comments while silent, none while data flows', async () => {
    const app = express();
    app.get('/sse', (_req, res) => {
      const sse = new SseWriter(res, 50);
      sse.open();
      setTimeout(() => {
        sse.data({ n: 1 });
        sse.done();
      }, 180);
    });
    const server = http.createServer(app).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/sse`);
      expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      const text = await res.text();
      const events = text.split('\n\n').filter(Boolean);
      const comments = events.filter((e) => e === ': keep-alive');
      expect(comments.length).toBeGreaterThanOrEqual(2);
      expect(comments.length).toBeLessThanOrEqual(4);
      expect(events.slice(-2)).toEqual(['data: {"n":1}', 'data: [DONE]']);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
