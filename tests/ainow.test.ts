/**
 * The ai-now shape at the root paths, end to end: real HTTP, SQLite on disk, the Ollama test double.
 */
import { get_encoding } from 'tiktoken';
import { startHarness, postJson, type Harness } from './support/harness';

/** The `data:` payloads of an SSE body, in order. */
function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((frame) => frame.startsWith('data: '))
    .map((frame) => frame.slice('data: '.length));
}

const STATS_KEYS = ['input_tokens', 'input_tokens_cost', 'output_tokens', 'output_tokens_cost', 'tokens_per_second', 'total_time_taken', 'total_tokens_cost'];

describe('ai-now API', () => {
  let h: Harness;
  let auth: Record<string, string>;

  beforeAll(async () => {
    h = await startHarness();
    auth = { Authorization: `Bearer ${h.createKey('ainow-app').apiKey}` };
    // 0.002 credits per 1k input tokens, 0.003 per 1k output tokens (ai-now's own example prices).
    h.store.setModel({ name: 'Priced 1', ollamaModel: 'llama3.2', inputMicroPer1k: 2_000, outputMicroPer1k: 3_000 });
    h.store.setModel({ name: 'wide-tokenizer', ollamaModel: 'llama3.2', tokenizer: 'o200k_base' });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.double.requests.length = 0;
    h.double.queue.length = 0;
  });

  describe('GET /models', () => {
    test('lists every model with inputCost/outputCost in credits per 1k tokens', async () => {
      const res = await fetch(`${h.url}/models`, { headers: auth });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { data: Array<Record<string, unknown>> };
      expect(Object.keys(body)).toEqual(['data']);
      for (const m of body.data) expect(Object.keys(m)).toEqual(['id', 'inputCost', 'outputCost']);
      expect(body.data).toContainEqual({ id: 'Priced 1', inputCost: 0.002, outputCost: 0.003 });
      expect(body.data).toContainEqual({ id: 'covalid-1.0', inputCost: 0, outputCost: 0 });
      // Ollama's own models, at price zero.
      expect(body.data).toContainEqual({ id: 'qwen3:8b', inputCost: 0, outputCost: 0 });
    });
  });

  describe('POST /chat/completions', () => {
    test('non-streaming: the OpenAI reply plus tokens, costs in credits, time and speed', async () => {
      h.double.queue.push({ kind: 'reply', tokens: ['Paris', ' is', ' the', ' capital.'], promptEvalCount: 1_000, evalCount: 2_000 });
      const res = await postJson(`${h.url}/chat/completions`, { model: 'Priced 1', messages: [{ role: 'user', content: 'Capital of France?' }] }, auth);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        object: 'chat.completion',
        model: 'Priced 1',
        choices: [{ index: 0, message: { role: 'assistant', content: 'Paris is the capital.' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 1_000, completion_tokens: 2_000, total_tokens: 3_000 },
        input_tokens: 1_000,
        output_tokens: 2_000,
        input_tokens_cost: 0.002,
        output_tokens_cost: 0.006,
        total_tokens_cost: 0.008,
      });
      expect(res.body.id).toMatch(/^chatcmpl-/);
      expect(typeof res.body.total_time_taken).toBe('number');
      expect(res.body.total_time_taken).toBeGreaterThanOrEqual(0);
      expect(res.body.total_time_taken).toBeLessThan(5);
      const expectedSpeed = res.body.total_time_taken > 0 ? 2_000 / res.body.total_time_taken : 0;
      expect(res.body.tokens_per_second).toBeCloseTo(expectedSpeed, 0);
      expect(h.double.generations()[0]?.body).toMatchObject({ model: 'llama3.2', messages: [{ role: 'user', content: 'Capital of France?' }] });
    });

    test('streaming: OpenAI chunks, then one stats event, then [DONE]', async () => {
      h.double.queue.push({ kind: 'reply', tokens: ['The', ' capital', ' is Paris.'], promptEvalCount: 500, evalCount: 3 });
      const res = await postJson(`${h.url}/chat/completions`, { model: 'Priced 1', stream: true, messages: [{ role: 'user', content: 'Capital?' }] }, auth);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const data = sseData(res.text);
      expect(data[data.length - 1]).toBe('[DONE]');
      const events = data.slice(0, -1).map((d) => JSON.parse(d));
      const stats = events[events.length - 1];
      expect(Object.keys(stats).sort()).toEqual([...STATS_KEYS, 'time_to_first_data'].sort());
      expect(stats).toMatchObject({ input_tokens: 500, output_tokens: 3, input_tokens_cost: 0.001, output_tokens_cost: 0.000009, total_tokens_cost: 0.001009 });
      expect(stats.time_to_first_data).toBeGreaterThanOrEqual(0);
      expect(stats.time_to_first_data).toBeLessThanOrEqual(stats.total_time_taken);
      const chunks = events.slice(0, -1);
      expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
      expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('The capital is Paris.');
      expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('stop');
    });

    test('404 OpenAI error for an unknown model, before any byte of a stream', async () => {
      const res = await postJson(`${h.url}/chat/completions`, { model: 'nope', stream: true, messages: [{ role: 'user', content: 'x' }] }, auth);
      expect(res.status).toBe(404);
      expect(res.body.error).toMatchObject({ code: 'model_not_found', type: 'invalid_request_error' });
      expect(h.double.generations()).toHaveLength(0);
    });

    test('400 OpenAI error for a malformed body', async () => {
      const res = await postJson(`${h.url}/chat/completions`, '{"model":', auth);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ type: 'invalid_request_error', message: 'The request body is not valid JSON.' });
    });
  });

  describe('POST /tokens', () => {
    test("counts with tiktoken's cl100k_base by default", async () => {
      const text = 'Hello, wörld! Counting tokens 😀 with tiktoken.';
      const res = await postJson(`${h.url}/tokens`, { text }, auth);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ tokens: get_encoding('cl100k_base').encode(text).length });
    });

    test("a model's configured tokenizer is used", async () => {
      const text = 'Ünïcödé 東京 tokens differ between encodings';
      const cl100k = get_encoding('cl100k_base').encode(text).length;
      const o200k = get_encoding('o200k_base').encode(text).length;
      expect(o200k).not.toBe(cl100k); // the test would prove nothing otherwise
      const res = await postJson(`${h.url}/tokens`, { text, model: 'wide-tokenizer' }, auth);
      expect(res.body).toEqual({ tokens: o200k });
    });

    test('empty text is 0 tokens; missing or non-string text is a 400', async () => {
      expect((await postJson(`${h.url}/tokens`, { text: '' }, auth)).body).toEqual({ tokens: 0 });
      for (const body of [{}, { text: 42 }, { text: null }]) {
        const res = await postJson(`${h.url}/tokens`, body, auth);
        expect(res.status).toBe(400);
        expect(res.body.error).toMatchObject({ message: '"text" must be a string.', param: 'text', type: 'invalid_request_error' });
      }
    });

    test('an unknown model is a 404', async () => {
      const res = await postJson(`${h.url}/tokens`, { text: 'x', model: 'nope' }, auth);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('model_not_found');
    });
  });

  describe('GET /credits', () => {
    test('null for an unlimited organisation', async () => {
      const res = await fetch(`${h.url}/credits`, { headers: auth });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ credits: null });
    });

    test('the balance in credits for a limited one, after a paid request too', async () => {
      const key = h.createKey('ainow-limited', 2.5);
      const headers = { Authorization: `Bearer ${key.apiKey}` };
      expect(await (await fetch(`${h.url}/credits`, { headers })).json()).toEqual({ credits: 2.5 });
      h.double.queue.push({ kind: 'reply', tokens: ['ok'], promptEvalCount: 10, evalCount: 1 });
      const chat = await postJson(`${h.url}/chat/completions`, { model: 'Priced 1', messages: [{ role: 'user', content: 'hi' }] }, headers);
      expect(chat.body.total_tokens_cost).toBe(0.000023); // 10 × 2 + 1 × 3 micro-credits
      expect(await (await fetch(`${h.url}/credits`, { headers })).json()).toEqual({ credits: 2.499977 });
    });
  });

  describe('POST /moderate', () => {
    test('OpenAI-shaped results from the guard model', async () => {
      h.double.queue.push({ kind: 'reply', tokens: ['unsafe', '\nS1,S10'] });
      const res = await postJson(`${h.url}/moderate`, { input: 'something bad' }, auth);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body)).toEqual(['results']);
      expect(res.body.results).toHaveLength(1);
      expect(res.body.results[0]).toMatchObject({ flagged: true, categories: { violence: true, 'illicit/violent': true, hate: true, sexual: false } });
      expect(h.double.generations()[0]?.body).toMatchObject({ model: 'llama-guard3', messages: [{ role: 'user', content: 'something bad' }] });
    });
  });

  describe('auth and methods', () => {
    test.each([
      ['GET', '/models'],
      ['POST', '/chat/completions'],
      ['POST', '/tokens'],
      ['GET', '/credits'],
      ['POST', '/moderate'],
      // Served as Express matches routes (any case, a trailing slash), so refused in the same shape.
      ['GET', '/Models'],
      ['GET', '/models/'],
      ['POST', '/V1/chat/completions'],
    ])('401 OpenAI error on %s %s without a key or with a wrong one', async (method, path) => {
      const headerSets: Array<Record<string, string>> = [{}, { Authorization: 'Bearer nope' }];
      for (const headers of headerSets) {
        const res = await fetch(`${h.url}${path}`, {
          method,
          headers: { 'Content-Type': 'application/json', ...headers },
          ...(method === 'POST' && { body: JSON.stringify({ text: 'x', input: 'x', messages: [{ role: 'user', content: 'x' }] }) }),
        });
        expect(res.status).toBe(401);
        const body = (await res.json()) as { error: unknown };
        expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_api_key', param: null });
      }
      expect(h.double.generations()).toHaveLength(0);
    });

    test('X-API-Key and ?api_key= work too', async () => {
      const key = h.createKey('ainow-other-ways');
      expect((await fetch(`${h.url}/credits`, { headers: { 'X-API-Key': key.apiKey } })).status).toBe(200);
      expect((await fetch(`${h.url}/credits?api_key=${key.apiKey}`)).status).toBe(200);
    });

    test('405 with Allow for the wrong method', async () => {
      const res = await fetch(`${h.url}/tokens`, { headers: auth });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
      expect(await res.json()).toMatchObject({ error: { message: 'Only POST is allowed on /tokens.', type: 'invalid_request_error', param: null, code: null } });
      const credits = await fetch(`${h.url}/credits`, { method: 'POST', headers: auth });
      expect(credits.status).toBe(405);
      expect(credits.headers.get('allow')).toBe('GET');
      expect(await credits.json()).toMatchObject({ error: { message: 'Only GET is allowed on /credits.' } });
    });
  });
});
